"""Distributed web serving: personal servers behind a front server.

A personal server (``trioweb --personal``) publishes a Site through a
``ResourcePublisher`` on a UNIX socket in its user's home; the front
(``trioweb --user``) forwards ``/~user/...`` to it with a
``ResourceSubscription``, found by the ``UserDirectory``. The two speak
``rpc``; what crosses is described in ``_messages``, what the front checks in
``_peer_checks`` and ``_response_checks``.
"""

from trioweb.distrib.publisher import RemoteChannel, ResourcePublisher, serve_publisher
from trioweb.distrib._backend import BackendUnavailable
from trioweb.distrib.subscription import ResourceSubscription

__all__ = [
    "BackendUnavailable",
    "RemoteChannel",
    "ResourcePublisher",
    "ResourceSubscription",
    "serve_publisher",
]
