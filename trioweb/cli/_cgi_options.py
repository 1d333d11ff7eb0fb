"""The ``trioweb`` options of CGI scripts: how they run, wherever they are.

``--path`` (and a personal server's tree) runs ``.cgi`` files as CGI
scripts, as Twisted's ``--path`` does; ``--processor .pl=MODULE.NAME``
adds other kinds (``trioweb.twcgi.PHPScript`` for ``.php``). These options
set the server's default ``CGISettings``, used by every CGI resource that
has none of its own (the ones ``.rpy`` files or ``--class`` build too):

- ``--cgi-timeout``: seconds a script has to send its headers (504 beyond),
  then between two pieces of output;
- ``--cgi-max-processes``: scripts running at once (503 beyond);
- ``--cgi-pass-env NAME``: a variable of the server's environment that
  scripts see, besides ``PATH``, ``LANG``, ``LANGUAGE``, ``LC_ALL``,
  ``LC_CTYPE``, ``TZ`` and ``TMPDIR`` (repeatable).
"""

from __future__ import annotations

from typing import Any

import click

from trioweb.twcgi import DEFAULT_PASS_ENV, CGISettings, configure


def cgi_options(function: Any) -> Any:
    """Add the options of this module to a click command."""
    options = [
        click.option("--cgi-timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
                     metavar="SECONDS",
                     help="Seconds a CGI script has to send its headers (504 beyond) and then each "
                          "piece of output; its process group is killed after."),
        click.option("--cgi-max-processes", type=click.IntRange(min=1), default=64, show_default=True,
                     metavar="N", help="CGI scripts running at once (503 beyond)."),
        click.option("--cgi-pass-env", multiple=True, metavar="NAME",
                     help="Pass this variable of the server's environment to CGI scripts (repeatable; "
                          "PATH, LANG, LANGUAGE, LC_ALL, LC_CTYPE, TZ, TMPDIR always are)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def configure_cgi(options: dict[str, Any]) -> None:
    """Set the server's CGI settings from these options; removes them from ``options``."""
    timeout = options.pop("cgi_timeout")
    max_processes = options.pop("cgi_max_processes")
    extra = options.pop("cgi_pass_env")
    for name in extra:
        if not name or "=" in name or "\x00" in name:
            raise click.BadParameter(f"{name!r} is not a variable name", param_hint="--cgi-pass-env")
    pass_env = tuple(dict.fromkeys((*DEFAULT_PASS_ENV, *extra)))
    configure(CGISettings(timeout=timeout, max_processes=max_processes, pass_env=pass_env))
