"""A real nginx for tests, started on loopback with its config, pid file, logs
and temp paths in a temporary directory (nginx-light: ssl, proxy; the stream
module when Debian ships it as a loadable module)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.procs import Process

STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log info;
{user}
{modules}
events {{ worker_connections 256; }}
{blocks}
"""

HTTP_TEMPS = """\
    access_log {dir}/nginx-access.log;
    client_body_temp_path {dir}/nginx-body;
    proxy_temp_path {dir}/nginx-proxy;
    fastcgi_temp_path {dir}/nginx-fastcgi;
    uwsgi_temp_path {dir}/nginx-uwsgi;
    scgi_temp_path {dir}/nginx-scgi;
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx") or None


def has_stream_module() -> bool:
    return os.path.exists(STREAM_MODULE)


def start_nginx(directory: Path, *, http: str = "", stream: str = "", port: int) -> Process:
    """nginx serving the ``http {}`` and ``stream {}`` bodies given, until the Process is stopped."""
    blocks = ""
    if http:
        blocks += "http {\n" + HTTP_TEMPS.format(dir=directory) + http + "\n}\n"
    if stream:
        blocks += "stream {\n" + stream + "\n}\n"
    config = directory / "nginx.conf"
    config.write_text(CONFIG.format(
        dir=directory, blocks=blocks,
        user="user root;" if os.geteuid() == 0 else "",
        modules=f"load_module {STREAM_MODULE};" if stream else "",
    ))
    binary = nginx_binary()
    assert binary is not None
    checked = subprocess.run([binary, "-t", "-p", str(directory), "-c", str(config), "-e", str(directory / "e.log")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    return Process([binary, "-p", str(directory), "-c", str(config), "-e", str(directory / "e.log")], port=port)
