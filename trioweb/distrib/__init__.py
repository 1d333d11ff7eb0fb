"""Distributed web serving: personal servers behind a front server.

A personal server (``trioweb --personal``) publishes a Site through a
``ResourcePublisher`` on a UNIX socket in its user's home; the front
(``trioweb --user``) forwards ``/~user/...`` to it with a
``ResourceSubscription``, found by the ``UserDirectory``. The two speak
``rpc``; what crosses is described in ``_messages``, what the front checks in
``_peer_checks`` and ``_response_checks``, how many requests one backend may
hold in ``_admission``. The front's view of each backend is a
``BackendStatus`` (``ResourceSubscription.status``,
``UserDirectory.backends()``), shown by a ``StatusPage``.

``UserDirectory(public_html=...)`` serves a user's ``public_html`` from the
front when no personal server answers, with the resource the factory makes;
without one it serves none. The safe factory is ``trioweb.static.PublicFile``
(plain files only): a static file is another resource kind, which this one
does not import.

``RemoteUsers`` (from ``parse_users_map``) names the users whose personal
servers run on other machines, reached over TLS (``_remote``).
"""

from trioweb.distrib._admission import MAX_IN_FLIGHT, QUEUED_PER_SLOT
from trioweb.distrib._backend import BackendStatus, BackendUnavailable
from trioweb.distrib._remote import RemoteUsers, UsersMapError, parse_users_map
from trioweb.distrib.publisher import PublisherServer, RemoteChannel, ResourcePublisher, serve_publisher
from trioweb.distrib.status import StatusPage, WorkerStatus
from trioweb.distrib.subscription import ResourceSubscription
from trioweb.distrib.userdir import UserDirectory

__all__ = [
    "MAX_IN_FLIGHT",
    "QUEUED_PER_SLOT",
    "BackendStatus",
    "BackendUnavailable",
    "PublisherServer",
    "RemoteChannel",
    "RemoteUsers",
    "ResourcePublisher",
    "ResourceSubscription",
    "StatusPage",
    "UserDirectory",
    "UsersMapError",
    "WorkerStatus",
    "parse_users_map",
    "serve_publisher",
]
