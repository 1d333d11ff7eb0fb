"""The ``trioweb`` option that runs a Python configuration file: ``--config FILE.py``
(also ``-y``/``--python``, twistd's names).

The file (see ``trioweb.config``) defines the root, or a whole ``Site``, and
may define where to listen and whom to run as. On the command line:

- ``--listen`` adds to the file's ``listen``; with neither, ``tcp:8080``;
- ``--uid``/``--gid`` win over the file's ``uid``/``gid``;
- with a ``resource``, the site options (``--logfile``, ``--add-header``,
  ``--display-tracebacks``, the limits) apply as without a file; with a
  ``site``, the file has set them, and giving one is a usage error;
- another root option (``--path``, ``--class``...) is a usage error.

A file that cannot be used gives its one-line message and exit status 2.
"""

from __future__ import annotations

from typing import Any

import click

from trioweb.config import Config, ConfigError, load
from trioweb.http import Limits

# The options a Site defined by the file has already settled.
_SITE_OPTIONS = ("logfile", "add_header", "display_tracebacks")


class ConfigFileError(click.ClickException):
    """A configuration file that cannot be used: its message, exit status 2."""

    exit_code = 2


def config_options(function: Any) -> Any:
    """Add the options of this module to a click command."""
    return click.option(
        "--config", "-y", "--python", "config_path", metavar="FILE.py",
        help="Run this Python configuration file: it defines 'resource' (the root) or 'site' (a Site), "
             "and may define 'listen' (endpoint strings) and 'uid'/'gid' (twistd -y's file, in trioweb's "
             "API).")(function)


def config_from(options: dict[str, Any]) -> Config | None:
    """The loaded configuration file (None without ``--config``); removes the option."""
    path = options.pop("config_path")
    if path is None:
        return None
    try:
        return load(path)
    except ConfigError as exc:
        raise ConfigFileError(str(exc)) from None


def check_site_options(config: Config) -> None:
    """Refuse site options the file's own ``site`` has settled (see the module docstring)."""
    if config.site is None:
        return
    context = click.get_current_context()
    names = [*_SITE_OPTIONS, *(name for name in Limits.__dataclass_fields__ if name in context.params)]
    given = [name for name in names
             if context.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)]
    if given:
        raise click.UsageError(f"--{given[0].replace('_', '-')}: {config.path} defines 'site', which sets it: "
                               "set it on that Site, or define 'resource' instead of 'site'.")
