"""The ``trioweb`` options of a community host's front beyond ``--user``.

``--user-domain example.com`` serves ``alice.example.com`` from alice's site
(her personal server, or her ``public_html``) through
``vhost.UserNameVirtualHost``, with the ``UserDirectory`` of ``--user`` as
both the users and the default: ``/~alice/`` on any other host name still
works, so both forms run at once.

The wiring lives here, in the face: ``trioweb.vhost`` and
``trioweb.distrib`` are two resource kinds, which know nothing of each
other.
"""

from __future__ import annotations

from typing import Any

import click

from trioweb.distrib import UserDirectory
from trioweb.resource import Resource
from trioweb.vhost import UserNameVirtualHost

# One label of a host name (the domain is checked label by label).
_LABEL_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def _check_domain(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        domain = value.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise click.BadParameter(f"{value!r} is not a domain name") from None
    labels = domain.split(".")
    if not all(label and set(label) <= _LABEL_CHARACTERS and not label.startswith("-") and not label.endswith("-")
               and len(label) <= 63 for label in labels):
        raise click.BadParameter(f"{value!r} is not a domain name (such as example.com)")
    return domain


def hosting_options(function: Any) -> Any:
    """Add the options of this module to a click command."""
    options = [
        click.option("--user-domain", callback=_check_domain, metavar="DOMAIN",
                     help="With --user: serve NAME.DOMAIN from user NAME's site too (her own origin)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


class UserFront:
    """What these options add to a ``--user`` front, made once from the options
    (which it removes) and applied to each Site the front builds (at start and
    on every reload)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.user_domain: str | None = options.pop("user_domain")

    def root(self, directory: Resource | None) -> Resource | None:
        """The front's root made of the ``UserDirectory`` of ``--user`` (None without it)."""
        if directory is None:
            if self.user_domain:
                raise click.UsageError("--user-domain can only be used with --user.")
            return None
        assert isinstance(directory, UserDirectory)
        if self.user_domain:
            return UserNameVirtualHost(directory, self.user_domain)
        return directory
