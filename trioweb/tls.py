"""The TLS profile of ``ssl:`` listeners, their certificates, SNI and reloads.

The profile is explicit, whatever the defaults of the OpenSSL Python was
built with (Debian's accept suites without forward secrecy):

- ``intermediate`` (the default): Mozilla's "intermediate" configuration,
  TLS 1.2 and 1.3, the TLS 1.2 suites of its list only (ECDHE and DHE with
  AES-GCM or ChaCha20-Poly1305), DHE only when DH parameters are given;
- ``modern``: TLS 1.3 only.

Both: the key exchange groups X25519, P-256 and P-384 (Mozilla's list; see
``_restrict_groups`` for how, on a Python that cannot set them), ALPN
``http/1.1``, no compression, no renegotiation, and no server cipher
preference (the client picks, as Mozilla advises while every suite offered is
strong).

A ``CertificateStore`` holds the certificate (with an optional extra chain
file, Twisted's ``extraCertChain``) and, with ``sni_dir``, one more
certificate per name (``NAME.pem``, key and certificate chain in one file)
chosen by the name the client asks for (SNI), the default one otherwise.
The listener's context picks the store's current contexts in its SNI
callback, so ``prepare`` + ``install`` (a SIGHUP) serve new certificates to
new handshakes without closing the listener; ``prepare`` raises
``TLSError`` naming the file for an unreadable or mismatched key, before
anything changes.

With ``client_ca`` (``caCerts=FILE`` on the endpoint) the listener requires
a client certificate and accepts only one that chains to a certificate of
that file: a CA, or the client's own certificate (the file pins it: any
certificate of the file is a trust anchor, ``VERIFY_X509_PARTIAL_CHAIN``).
That is how a remote personal server accepts only its front.

``client_context`` is the other side: the context a front connects to a
remote personal server with, presenting its own certificate, with the
same profile.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import ssl
import sys
import tempfile
from dataclasses import dataclass, field

__all__ = ["INTERMEDIATE_CIPHERS", "PROFILES", "CertificateStore", "TLSError", "client_context", "server_context"]

PROFILES = ("intermediate", "modern")
# Mozilla's intermediate configuration (v5.7), its TLS 1.2 suites in its order.
INTERMEDIATE_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])


# Mozilla's curves for both profiles; Python (before 3.13) can set only one (set_ecdh_curve).
GROUPS = b"X25519:P-256:P-384"
_SSL_CTRL_SET_GROUPS_LIST = 92  # SSL_CTX_set1_groups_list is a macro over SSL_CTX_ctrl

log = logging.getLogger("trioweb.tls")


class TLSError(ValueError):
    """A key, certificate or parameter file cannot be used (the message names it)."""


def _profiled(protocol: ssl._SSLMethod, profile: str) -> ssl.SSLContext:
    """A context for ``protocol`` with ``profile``'s versions, suites and options."""
    if profile not in PROFILES:
        raise TLSError(f"unknown TLS profile {profile!r} (intermediate or modern)")
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if profile == "modern" else ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    if profile == "intermediate":
        context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def server_context(profile: str = "intermediate") -> ssl.SSLContext:
    """A server context with ``profile``'s versions, suites and options, no certificate yet."""
    context = _profiled(ssl.PROTOCOL_TLS_SERVER, profile)
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    _restrict_groups(context)
    return context


def _trust(context: ssl.SSLContext, ca: str) -> None:
    """Verify peers against the certificates of the file ``ca`` (each one an anchor)."""
    if not os.access(ca, os.R_OK):
        raise TLSError(f"cannot read {ca}: {'no such file' if not os.path.exists(ca) else 'permission denied'}")
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(f"cannot load the certificates {ca}: {getattr(exc, 'reason', None) or exc}") from None
    context.verify_mode = ssl.CERT_REQUIRED
    # A certificate of the file is trusted as it is, even if not self-signed: the
    # file may hold the peer's own certificate (pinned) instead of its CA.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN


def client_context(cert: str, key: str, *, ca: str | None = None, profile: str = "intermediate") -> ssl.SSLContext:
    """A context to connect with, presenting ``cert`` (its key ``key``), with
    ``profile``'s versions and suites. With ``ca``, the server's certificate
    must chain to a certificate of that file and name the host connected to;
    without, nothing of the server is checked here: the caller must compare
    its certificate with a pin before it sends a byte. ``TLSError`` names a
    bad file."""
    context = _profiled(ssl.PROTOCOL_TLS_CLIENT, profile)
    _load(context, cert, key, None)
    if ca is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        _trust(context, ca)
    return context


@functools.cache
def _libssl() -> ctypes.CDLL | None:
    """The libssl the ``ssl`` module runs on (already loaded: the same handle), if it can be told."""
    if sys.implementation.name != "cpython" or not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/maps") as maps:
            path = next((line.split()[-1] for line in maps if "/libssl.so" in line), None)
        if path is None:
            return None
        library = ctypes.CDLL(path)
        library.OpenSSL_version_num.restype = ctypes.c_ulong
        if library.OpenSSL_version_num() != ssl.OPENSSL_VERSION_NUMBER:
            return None
        library.SSL_CTX_get_options.restype = ctypes.c_uint64
        library.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        library.SSL_CTX_ctrl.restype = ctypes.c_long
        library.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    except (OSError, AttributeError):
        return None
    return library


def _restrict_groups(context: ssl.SSLContext) -> bool:
    """Limit the key exchange groups to ``GROUPS`` (X448 and P-521 are on by
    default): ``SSL_CTX_set1_groups_list`` on the context's ``SSL_CTX``, which
    CPython keeps right after the object header. The pointer is checked first
    (its options must be the context's); where any of this cannot be done,
    the OpenSSL defaults stay, with a warning. False then."""
    library = _libssl()
    if library is not None:
        pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
        if pointer and library.SSL_CTX_get_options(pointer) == context.options:
            if library.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, GROUPS) == 1:
                return True
    log.warning("cannot limit the TLS key exchange groups to %s here: OpenSSL's defaults apply", GROUPS.decode())
    return False


def _load(context: ssl.SSLContext, cert: str, key: str | None, chain: str | None) -> None:
    for path in (cert, key, chain):
        if path is not None and not os.access(path, os.R_OK):
            raise TLSError(f"cannot read {path}: {'no such file' if not os.path.exists(path) else 'permission denied'}")
    try:
        if chain is None:
            context.load_cert_chain(cert, key)
            return
        # load_cert_chain reads one file: the certificate, then its chain.
        with open(cert, "rb") as c, open(chain, "rb") as extra, tempfile.NamedTemporaryFile() as joined:
            joined.write(c.read().rstrip(b"\n") + b"\n" + extra.read())
            joined.flush()
            context.load_cert_chain(joined.name, key or cert)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TLSError(f"the key {key or cert} does not match the certificate {cert}") from None
        raise TLSError(f"cannot load the key or certificate {cert} ({key or cert}): {exc.reason or exc}") from None
    except OSError as exc:
        raise TLSError(f"cannot read the key or certificate: {exc}") from None


@dataclass
class Contexts:
    """What a store serves: a default context and one per SNI name."""

    default: ssl.SSLContext
    by_name: dict[str, ssl.SSLContext] = field(default_factory=dict)


class CertificateStore:
    """The certificates of one ``ssl:`` listener; see the module docstring."""

    def __init__(
        self,
        cert: str,
        key: str,
        *,
        chain: str | None = None,
        dh_params: str | None = None,
        sni_dir: str | None = None,
        profile: str = "intermediate",
        client_ca: str | None = None,
    ) -> None:
        self.cert, self.key, self.chain = cert, key, chain
        self.dh_params, self.sni_dir, self.profile = dh_params, sni_dir, profile
        self.client_ca = client_ca  # clients must present a certificate this file vouches for
        self.current = self.prepare()
        # The listener keeps this context; its SNI callback (called for every
        # handshake, with or without a name) hands over the current one.
        self.listener_context = self.current.default
        self.listener_context.sni_callback = self._pick

    def _context(self, cert: str, key: str | None, chain: str | None) -> ssl.SSLContext:
        context = server_context(self.profile)
        _load(context, cert, key, chain)
        if self.dh_params is not None:
            try:
                context.load_dh_params(self.dh_params)
            except (OSError, ssl.SSLError) as exc:
                raise TLSError(f"cannot load the DH parameters {self.dh_params}: {exc}") from None
        if self.client_ca is not None:
            _trust(context, self.client_ca)
        return context

    def prepare(self) -> Contexts:
        """Read every file again into new contexts (``TLSError`` if one is bad); nothing changes yet."""
        contexts = Contexts(self._context(self.cert, self.key, self.chain))
        if self.sni_dir is not None:
            try:
                names = sorted(os.listdir(self.sni_dir))
            except OSError as exc:
                raise TLSError(f"cannot read the SNI directory {self.sni_dir}: {exc.strerror}") from None
            for name in names:
                if name.endswith(".pem"):
                    path = os.path.join(self.sni_dir, name)
                    contexts.by_name[name[:-4].lower()] = self._context(path, None, None)
        return contexts

    def install(self, contexts: Contexts) -> None:
        """Serve ``contexts`` (from ``prepare``) to every handshake from now on."""
        self.current = contexts

    def _pick(self, ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
              context: ssl.SSLContext) -> None:
        current = self.current
        chosen = current.by_name.get(server_name.lower()) if server_name else None
        ssl_object.context = chosen or current.default
