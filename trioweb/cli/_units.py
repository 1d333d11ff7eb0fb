"""``trioweb --personal --install-units``: the systemd user units of an on-demand personal server.

A socket unit listens on ``~/.trioweb-pb`` (mode 0666: the front runs as
another user) and starts the service on the first connection; the service
runs ``trioweb --personal ... --idle-exit SECONDS``, which exits when idle,
and systemd listens again. ``install_units`` writes both into
``$XDG_CONFIG_HOME/systemd/user`` (``~/.config/systemd/user``) and says
the command that enables them. A unit file already there with other
contents (the user's own edits) is left alone: a one-line error, exit 2;
one with the same contents is written again (running it twice is harmless).
The same units, for ``/opt/trioweb``, are ``examples/distrib/systemd/
trioweb-personal-ondemand.*`` (a test keeps the two equal).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

from trioweb.cli._distrib_options import SetupError

SOCKET_UNIT = "trioweb-personal-ondemand.socket"
SERVICE_UNIT = "trioweb-personal-ondemand.service"
DEFAULT_IDLE_EXIT = 300.0

SOCKET_TEXT = """\
# A user's personal server started on demand: systemd listens on ~/.trioweb-pb
# and starts trioweb-personal-ondemand.service on the first connection from the
# front; the server exits after --idle-exit seconds without a request, and
# systemd listens again. No memory is spent while the site is idle.
# Written by `trioweb --personal --install-units`; enable with
#   systemctl --user enable --now trioweb-personal-ondemand.socket
# (Do not also run trioweb-personal.service: one of the two owns the socket.)
# To keep the socket after logout, the administrator runs once: loginctl enable-linger USER
[Unit]
Description=trioweb personal server socket (~/.trioweb-pb, for the front)

[Socket]
ListenStream=%h/.trioweb-pb
# The front runs as another user (www-data): it must be able to connect. The
# personal server itself accepts only root, you, www-data and --allow-peer users.
SocketMode=0666
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""

SERVICE_TEXT = """\
# Started by trioweb-personal-ondemand.socket (see there); it serves the socket
# systemd passes it and exits after {idle_exit:g} seconds without a request.
[Unit]
Description=trioweb personal server, started on demand
Requires=trioweb-personal-ondemand.socket

[Service]
ExecStart={command}
# --idle-exit exits 0: not a failure, nothing to restart until the next connection.
Restart=on-failure
MemoryMax=512M
TasksMax=64
CPUQuota=50%
"""


def unit_texts(trioweb: str, path: str | None, idle_exit: float | None) -> dict[str, str]:
    """The two units' contents, by file name: ``trioweb`` is the command's
    absolute path, ``path`` the tree to publish (default ``~/public_html``)."""
    idle = idle_exit if idle_exit is not None else DEFAULT_IDLE_EXIT
    tree = shlex.quote(path) if path else "%h/public_html"
    command = f"{shlex.quote(trioweb)} --personal --path {tree} --idle-exit {idle:g}"
    return {SOCKET_UNIT: SOCKET_TEXT, SERVICE_UNIT: SERVICE_TEXT.format(idle_exit=idle, command=command)}


def command_path() -> str:
    """The absolute path of the ``trioweb`` command running now (what the service runs)."""
    if os.path.isfile(sys.argv[0]):
        return os.path.abspath(sys.argv[0])
    return shutil.which("trioweb") or os.path.join(os.path.dirname(sys.executable), "trioweb")


def units_directory() -> str:
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(config, "systemd", "user")


def install_units(trioweb: str, path: str | None, idle_exit: float | None) -> str:
    """Write the units (see the module docstring); the message for the user."""
    directory = units_directory()
    texts = unit_texts(trioweb, path, idle_exit)
    for name, text in texts.items():
        target = os.path.join(directory, name)
        try:
            with open(target, encoding="utf-8") as existing:
                current = existing.read()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise SetupError(f"cannot read {target}: {exc}") from None
        if current != text:
            raise SetupError(f"{target} exists with other contents: remove it (or compare it with what "
                             f"--install-units writes) and run this again")
    try:
        os.makedirs(directory, exist_ok=True)
        for name, text in texts.items():
            with open(os.path.join(directory, name), "w", encoding="utf-8") as unit:
                unit.write(text)
    except OSError as exc:
        raise SetupError(f"cannot write the units in {directory}: {exc.strerror or exc}") from None
    return (f"Wrote {SOCKET_UNIT} and {SERVICE_UNIT} in {directory}.\n"
            f"Start listening now and at every login with:\n"
            f"  systemctl --user daemon-reload && systemctl --user enable --now {SOCKET_UNIT}\n"
            f"To serve while you are logged out, ask the administrator for: loginctl enable-linger "
            f"{os.environ.get('USER') or 'YOUR-NAME'}")
