"""``trioweb --config``/``-y`` on the command line, and the twistd spellings kept for compatibility."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.polling import wait_until_sync
from tests.support.procs import ROOT, Process, curl, free_port, trioweb, trioweb_command, wait_for_port


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([trioweb_command(), *args], capture_output=True, text=True, timeout=timeout)


def config_file(tmp_path: Path, text: str, name: str = "site.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(("source", "expected"), [
    ("from trioweb.static import Data\nresource = Data(b'x', 'text/plain'\n", ":2: SyntaxError: "),
    ("from trioweb.resource import Resource\n\nresource = Resource()\nresource.putChild('x', Resource())\n",
     ":4: TypeError: "),
    ("greeting = 'hello'\n", ": defines neither 'resource' (the root Resource) nor 'site' (a Site)"),
])
def test_a_broken_config_is_one_line_naming_the_file_and_exit_2(tmp_path, source, expected):
    path = config_file(tmp_path, source)
    for option in ("--config", "-y"):
        result = run(option, str(path))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert lines == [lines[0]] and lines[0].startswith(f"Error: {path}") and expected in lines[0]
        assert "Traceback" not in result.stderr


def test_a_missing_config_file(tmp_path):
    result = run("--config", str(tmp_path / "nope.py"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: {tmp_path / 'nope.py'}: cannot read the configuration file: " \
                                    "No such file or directory"


def test_config_and_another_root_option_conflict(tmp_path):
    path = config_file(tmp_path, "from trioweb.resource import Resource\nresource = Resource()\n")
    result = run("--config", str(path), "--path", str(tmp_path))
    assert result.returncode == 2 and "choose the root: give one of them" in result.stderr


def test_listen_in_the_file_and_on_the_command_line_add_up(tmp_path):
    first, second = free_port(), free_port()
    path = config_file(tmp_path, f"""
        from trioweb.static import Data
        resource = Data(b"configured", "text/plain")
        listen = ["tcp:{first}:interface=127.0.0.1"]
    """)
    with trioweb("-y", str(path), "--listen", f"tcp:{second}:interface=127.0.0.1", port=second) as server:
        for port in (first, second):
            assert curl(f"http://127.0.0.1:{port}/").stdout == b"configured"
        assert server.stop() == 0


def test_the_command_lines_site_options_apply_to_a_resource_config(tmp_path):
    path = config_file(tmp_path, """
        from trioweb.resource import Resource
        class Fails(Resource):
            isLeaf = True
            def render_GET(self, request):
                raise RuntimeError("failure detail")
        resource = Fails()
    """)
    port = free_port()
    with trioweb("-y", str(path), "--display-tracebacks", "--add-header", "X-From: cli", port=port):
        page = curl("-si", f"http://127.0.0.1:{port}/").stdout
        assert page.startswith(b"HTTP/1.1 500") and b"failure detail" in page and b"X-From: cli" in page


def test_the_guides_notify_finish_example_as_written_points_to_the_porting_guide(tmp_path):
    """"Knowing When We're Not Wanted" as the guide's .rpy, its imports changed: the Deferred calls
    fail with a message pointing to the porting guide, not a bare 500."""
    config_file(tmp_path, """
        from trioweb.resource import Resource
        from trioweb import server

        class ExampleResource(Resource):
            def render_GET(self, request):
                request.write(b"hello world")
                d = request.notifyFinish()
                d.addCallback(lambda _: print("finished normally"))
                d.addErrback(print, "error")
                reactor.callLater(10, request.finish)  # noqa: F821 (the guide's; never reached)
                return server.NOT_DONE_YET

        resource = ExampleResource()
    """, name="not_wanted.rpy")
    port = free_port()
    with trioweb("--path", str(tmp_path), port=port) as server:
        page = curl("-si", f"http://127.0.0.1:{port}/not_wanted.rpy").stdout
        assert page.startswith(b"HTTP/1.1 500")
        assert b"request.notifyFinish() is awaitable, not a Deferred" in page
        assert b"see docs/porting.md, &#x27;Deferreds and the reactor&#x27;" in page
        assert "DeferredIdiomError" in server.output()


def test_short_options_of_twistd_web(tmp_path):
    (tmp_path / "main.html").write_bytes(b"the index")
    (tmp_path / "notes.unknownext").write_bytes(b"notes")
    log = tmp_path / "access.log"
    port = free_port()
    with trioweb("--path", str(tmp_path), "-i", "main.html", "-m", "text/plain", "-l", str(log),
                 port=port) as server:
        assert curl(f"http://127.0.0.1:{port}/").stdout == b"the index"
        assert b"Content-Type: text/plain" in curl("-I", f"http://127.0.0.1:{port}/notes.unknownext").stdout
        assert server.stop() == 0
    assert '"GET / HTTP/1.1" 200' in log.read_text()


def test_deprecated_port_and_no_op_flags_still_run_with_warnings():
    port = free_port()
    with trioweb("-p", f"tcp:{port}:interface=127.0.0.1", "--notracebacks", "-n", port=None) as server:
        wait_for_port(port, server.process)
        assert b"is running" in curl(f"http://127.0.0.1:{port}/").stdout
        assert server.stop() == 0
        output = server.output()
    assert f"--port is deprecated: use --listen tcp:{port}:interface=127.0.0.1" in output
    assert "--notracebacks is deprecated and does nothing" in output


def test_https_maps_to_an_ssl_endpoint(tmp_path):
    """Twisted's deprecated --https PORT with -c/-k: the ssl: string it stands for (the missing key
    fails before anything is bound, so no port is opened beyond loopback)."""
    key = tmp_path / "no:key.pem"
    result = run("--https", "8443", "-k", str(key), "-c", str(tmp_path / "cert.pem"))
    assert result.returncode == 1
    escaped = str(key).replace(":", "\\:")
    assert f"--https is deprecated: use --listen ssl:8443:privateKey={escaped}:certKey={tmp_path}/cert.pem" \
        in result.stderr
    assert "cannot load the TLS key or certificate" in result.stderr
    assert run("--https", "not-a-port").returncode == 2


def test_certificate_options_without_https_warn(tmp_path):
    port = free_port()
    with trioweb("-c", "mine.pem", port=port) as server:
        assert server.stop() == 0
    assert "-c/--certificate and -k/--privkey only apply to --https: ignored" in server.output()


def test_umask_applies_to_files_the_server_creates(tmp_path):
    port = free_port()
    pidfile, log = tmp_path / "web.pid", tmp_path / "access.log"
    with trioweb("--umask", "077", "--pidfile", str(pidfile), "--logfile", str(log), port=port) as server:
        assert stat.S_IMODE(pidfile.stat().st_mode) == 0o600
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert server.stop() == 0
    bad = run("--umask", "999")
    assert bad.returncode == 2 and "'999' is not an octal mode" in bad.stderr


def test_welcome_page_says_how_to_serve_a_directory_an_app_or_a_config():
    port = free_port()
    with trioweb(port=port):
        page = curl(f"http://127.0.0.1:{port}/").stdout
    for how in (b"trioweb --path", b"trioweb --wsgi", b"trioweb --asgi", b"trioweb --class", b"trioweb --config"):
        assert how in page


def test_help_names_the_config_option_and_its_twistd_spelling():
    helptext = run("--help").stdout
    assert "-y, --config, --python FILE.py" in helptext and "trioweb --config site.py" in helptext



def test_rundir_then_a_relative_config_by_twistds_long_name(tmp_path):
    config_file(tmp_path, "from trioweb.static import Data\nresource = Data(b'from rundir', 'text/plain')\n")
    port = free_port()
    with trioweb("-d", str(tmp_path), "--python", "site.py", port=port):
        assert curl(f"http://127.0.0.1:{port}/").stdout == b"from rundir"
    missing = run("--rundir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "cannot change to" in missing.stderr


def test_u_is_twistd_webs_short_user():
    port = free_port()
    with trioweb("-u", port=port):
        page = curl(f"http://127.0.0.1:{port}/").stdout
    assert b"<h1>Users</h1>" in page


def test_the_trio_form_of_not_wanted_in_the_porting_guide_runs(tmp_path):
    """The block of docs/porting.md, its ten seconds made short: it answers, then says it finished."""
    text = (ROOT / "docs" / "porting.md").read_text()
    block = text.split("```python\n# not_wanted.rpy, the trio way\n", 1)[1].split("```", 1)[0]
    assert "await trio.sleep(10)" in block
    (tmp_path / "not_wanted.rpy").write_text(block.replace("await trio.sleep(10)", "await trio.sleep(1)"))
    port = free_port()
    with trioweb("--path", str(tmp_path), port=port) as server:
        assert curl(f"http://127.0.0.1:{port}/not_wanted.rpy").stdout == b"hello world"
        wait_until_sync(lambda: "finished normally" in server.output())
        gone = subprocess.run(["curl", "-sS", "--max-time", "0.3", f"http://127.0.0.1:{port}/not_wanted.rpy"],
                              capture_output=True, timeout=10)
        assert gone.returncode != 0  # the client gave up before the end
        wait_until_sync(lambda: "error the client went away" in server.output())


def test_personal_with_a_config_that_sets_uid_is_a_usage_error(tmp_path):
    path = config_file(tmp_path, "from trioweb.resource import Resource\nresource = Resource()\nuid = 0\n")
    result = run("--personal", "--config", str(path), "--listen", f"unix:{tmp_path}/pb.sock")
    assert result.returncode == 2 and "a config file's uid/gid" in result.stderr


def test_the_script_of_docs_config_serves_a_config_file(tmp_path):
    text = (ROOT / "docs" / "config.md").read_text()
    script = "# serve_config.py" + text.split("```python\n# serve_config.py", 1)[1].split("```", 1)[0]
    (tmp_path / "serve_config.py").write_text(script)
    port = free_port()
    path = config_file(tmp_path, f"""
        from trioweb.static import Data
        resource = Data(b"served by a script", "text/plain")
        listen = ["tcp:{port}:interface=127.0.0.1"]
    """)
    with Process([sys.executable, str(tmp_path / "serve_config.py"), str(path)], port=port):
        assert curl(f"http://127.0.0.1:{port}/").stdout == b"served by a script"


@pytest.mark.parametrize("defines", ["resource", "site"])
def test_sighup_loads_the_config_file_afresh_and_keeps_the_old_tree_when_it_breaks(tmp_path, defines):
    source = "from trioweb.server import Site\nfrom trioweb.static import Data\nresource = Data({text!r}, 'text/plain')\n"
    if defines == "site":
        source += "site = Site(resource, logPath={log!r})\n"
    log = tmp_path / "access.log"
    path = config_file(tmp_path, source.format(text=b"first tree", log=str(log)))
    port = free_port()
    args = ("--config", str(path)) if defines == "site" else ("--config", str(path), "--logfile", str(log))
    fetched = []

    def fetch() -> bytes:
        fetched.append(curl(f"http://127.0.0.1:{port}/").stdout)
        return fetched[-1]

    with trioweb(*args, port=port) as server:
        assert fetch() == b"first tree"
        config_file(tmp_path, source.format(text=b"second tree", log=str(log)))
        server.process.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: fetch() == b"second tree", timeout=10)
        config_file(tmp_path, "from trioweb.static import Data\nresource = Data(b'broken'\n")
        server.process.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: "reload failed" in server.output(), timeout=10)
        assert fetch() == b"second tree"
        assert f"{path}:2: SyntaxError" in server.output()
        assert server.stop() == 0
    logged = log.read_text().splitlines()  # one log file kept across reloads, every request in it
    assert len(logged) == len(fetched) and all('"GET / HTTP/1.1" 200' in line for line in logged)
