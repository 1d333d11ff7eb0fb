"""The TLS profile of ssl: listeners, chain, DH, SNI and reloads, with real
handshakes on loopback (certificates from trustme)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trustme

from trioweb.endpoints import EndpointError, certificate_store, open_listeners, parse_endpoint
from trioweb.server import Site, serve
from trioweb.static import Data
from trioweb.tls import INTERMEDIATE_CIPHERS, CertificateStore, TLSError, server_context

# Generated once with cryptography's dh.generate_parameters(2, 2048): test data, not a secret.
DH_PARAMS = Path(__file__).parent / "data" / "dh2048.pem"


RSA = trustme.KeyType.RSA  # the profile's RSA suites (ECDHE-RSA, DHE-RSA) and the ones it refuses need an RSA key


@pytest.fixture
def ca():
    return trustme.CA()


def write(leaf: trustme.LeafCert, directory: Path, name: str = "server") -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    return key, cert


@asynccontextmanager
async def tls_server(description: str):
    endpoint = parse_endpoint(description)
    async with open_listeners([endpoint]) as listeners:
        port = listeners[0].transport_listener.socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, Site(Data(b"hello", "text/plain")), listeners)
            yield port
            nursery.cancel_scope.cancel()


def handshake(port: int, context: ssl.SSLContext, name: str = "localhost") -> tuple[str, str | None, bytes]:
    """(TLS version, ALPN protocol, the server certificate) of one connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=name) as tls:
        return tls.version() or "", tls.selected_alpn_protocol(), tls.getpeercert(binary_form=True) or b""


def client(ca: trustme.CA | None = None, *, versions=(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3),
           ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        ca.configure_trust(context)
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version, context.maximum_version = versions
    if ciphers:
        context.set_ciphers(ciphers)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def der(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def test_the_intermediate_profile_offers_mozillas_suites_only_all_with_forward_secrecy():
    context = server_context("intermediate")
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and {c["name"] for c in tls12} <= set(INTERMEDIATE_CIPHERS.split(":"))
    assert all(c["kea"] in ("kx-ecdhe", "kx-dhe") and c["aead"] for c in tls12)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.options & ssl.OP_NO_COMPRESSION and context.options & ssl.OP_NO_RENEGOTIATION
    assert server_context("modern").minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(TLSError, match="unknown TLS profile"):
        server_context("legacy")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")  # the old client is the point
async def test_old_versions_and_suites_without_forward_secrecy_are_refused(ca, tmp_path):
    key, cert = write(ca.issue_cert("localhost", key_type=RSA), tmp_path)
    async with tls_server(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}") as port:
        version, alpn, _ = await trio.to_thread.run_sync(handshake, port, client(ca))
        assert version == "TLSv1.3" and alpn == "http/1.1"
        tls12 = client(ca, versions=(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
                       ciphers="ECDHE-RSA-AES128-GCM-SHA256")
        assert (await trio.to_thread.run_sync(handshake, port, tls12))[:2] == ("TLSv1.2", "http/1.1")
        for refused in (
            client(versions=(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1), ciphers="DEFAULT:@SECLEVEL=0"),
            client(versions=(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2), ciphers="AES128-GCM-SHA256"),
            client(versions=(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2), ciphers="ECDHE-RSA-AES128-SHA256"),
            client(versions=(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2), ciphers="DHE-RSA-AES128-GCM-SHA256"),
        ):
            with pytest.raises(ssl.SSLError):
                await trio.to_thread.run_sync(handshake, port, refused)


async def test_modern_is_tls13_only(ca, tmp_path):
    key, cert = write(ca.issue_cert("localhost"), tmp_path)
    async with tls_server(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}:tls=modern") as port:
        assert (await trio.to_thread.run_sync(handshake, port, client(ca)))[0] == "TLSv1.3"
        with pytest.raises(ssl.SSLError):
            await trio.to_thread.run_sync(
                handshake, port, client(ca, versions=(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)))


async def test_dh_parameters_enable_the_dhe_suites(ca, tmp_path):
    key, cert = write(ca.issue_cert("localhost", key_type=RSA), tmp_path)
    dhe = client(ca, versions=(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2), ciphers="DHE-RSA-AES128-GCM-SHA256")
    description = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}:dhParameters={DH_PARAMS}"
    async with tls_server(description) as port:
        assert (await trio.to_thread.run_sync(handshake, port, dhe))[0] == "TLSv1.2"


async def test_extra_cert_chain_sends_the_intermediate(ca, tmp_path):
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("localhost")
    key, cert = write(leaf, tmp_path)  # the leaf alone
    chain = tmp_path / "chain.pem"
    chain.write_bytes(intermediate.cert_pem.bytes())
    async with tls_server(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}") as port:
        with pytest.raises(ssl.SSLCertVerificationError):  # the client trusts the root only
            await trio.to_thread.run_sync(handshake, port, client(ca))
    async with tls_server(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}:extraCertChain={chain}") as port:
        assert (await trio.to_thread.run_sync(handshake, port, client(ca)))[2] == der(leaf)


async def test_sni_picks_the_certificate_by_name_and_falls_back_to_the_default(ca, tmp_path):
    default = ca.issue_cert("localhost")
    key, cert = write(default, tmp_path)
    sni = tmp_path / "sni"
    sni.mkdir()
    named = {name: ca.issue_cert(name) for name in ("a.example", "b.example")}
    for name, leaf in named.items():
        leaf.private_key_and_cert_chain_pem.write_to_path(str(sni / f"{name}.pem"))
    (sni / "README").write_text("not a certificate, not a .pem: ignored")
    async with tls_server(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}:sni={sni}") as port:
        for name, leaf in named.items():
            assert (await trio.to_thread.run_sync(handshake, port, client(ca), name))[2] == der(leaf)
        assert (await trio.to_thread.run_sync(handshake, port, client(ca), "A.EXAMPLE"))[2] == der(named["a.example"])
        assert (await trio.to_thread.run_sync(handshake, port, client(), "c.example"))[2] == der(default)


async def test_a_reload_serves_new_certificates_to_new_handshakes_only_when_all_are_good(ca, tmp_path):
    first = ca.issue_cert("localhost")
    key, cert = write(first, tmp_path)
    endpoint = parse_endpoint(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    store = certificate_store(endpoint)
    async with open_listeners([endpoint], certificates={endpoint: store}) as listeners:
        port = listeners[0].transport_listener.socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, Site(Data(b"x", "text/plain")), listeners)
            second = ca.issue_cert("localhost")
            write(second, tmp_path)
            store.install(store.prepare())
            assert (await trio.to_thread.run_sync(handshake, port, client(ca)))[2] == der(second)
            cert.write_text("garbage")
            with pytest.raises(TLSError, match="cannot load the key or certificate"):
                store.prepare()
            assert (await trio.to_thread.run_sync(handshake, port, client(ca)))[2] == der(second)
            nursery.cancel_scope.cancel()


def test_bad_files_are_named_in_clear_errors(ca, tmp_path):
    key, cert = write(ca.issue_cert("localhost"), tmp_path)
    other_key, _ = write(ca.issue_cert("other"), tmp_path, "other")
    with pytest.raises(TLSError, match=f"cannot read {tmp_path}/missing.key: no such file"):
        CertificateStore(str(cert), str(tmp_path / "missing.key"))
    with pytest.raises(TLSError, match=f"the key {other_key} does not match the certificate {cert}"):
        CertificateStore(str(cert), str(other_key))
    with pytest.raises(TLSError, match="cannot load the DH parameters"):
        CertificateStore(str(cert), str(key), dh_params=str(cert))
    with pytest.raises(TLSError, match="cannot read the SNI directory"):
        CertificateStore(str(cert), str(key), sni_dir=str(tmp_path / "nowhere"))
    with pytest.raises(EndpointError, match="tls must be one of intermediate, modern"):
        parse_endpoint(f"ssl:443:privateKey={key}:tls=old")
    with pytest.raises(EndpointError, match="cannot load the TLS key or certificate"):
        certificate_store(parse_endpoint(f"ssl:443:privateKey={key}:certKey={key}"))


UNREADABLE_CHECK = """
import sys
from trioweb.tls import CertificateStore, TLSError
try:
    CertificateStore(sys.argv[1], sys.argv[2])
except TLSError as exc:
    print(exc)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run the check as another user")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_an_unreadable_key_is_named(ca, install):
    """As a user who cannot read the key (root reads any file: the check runs as nobody)."""
    directory = Path(tempfile.mkdtemp(prefix="trioweb-tls-"))
    try:
        directory.chmod(0o755)
        key, cert = write(ca.issue_cert("localhost"), directory)
        cert.chmod(0o644)
        key.chmod(0o600)
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", install.python,
                               "-c", UNREADABLE_CHECK, str(cert), str(key)], capture_output=True, text=True,
                              timeout=60, cwd=directory)
        assert done.stdout.strip() == f"cannot read {key}: permission denied", done.stderr
    finally:
        shutil.rmtree(directory)
