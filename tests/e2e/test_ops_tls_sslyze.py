"""sslyze's verdict on the ssl: endpoint against Mozilla's configurations
(slow: `scripts/test -m slow`). The figures are recorded in docs/operations.md."""

from __future__ import annotations

import datetime
import subprocess
import sys

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.procs import free_port, trioweb

pytestmark = pytest.mark.slow


def _sslyze_available() -> bool:
    return subprocess.run([sys.executable, "-m", "sslyze", "--help"], capture_output=True).returncode == 0


def server_certificate(ca: trustme.CA, directory) -> str:
    """A leaf as a public CA would issue it: subject CN=localhost, a non-critical
    SAN, key identifiers, 60 days (trustme marks the SAN critical beside a subject, which
    sslyze's path validation rejects)."""
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=59))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    path = directory / "server.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


@pytest.mark.skipif(not _sslyze_available(), reason="sslyze is not installed (the test extra installs it)")
@pytest.mark.parametrize("profile", ["intermediate", "modern"])
def test_sslyze_finds_the_ssl_endpoint_compliant_with_mozillas_profile(tmp_path, profile):
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    both = server_certificate(ca, tmp_path)
    port = free_port()
    listen = f"ssl:{port}:interface=127.0.0.1:privateKey={both}:tls={profile}"
    with trioweb("--listen", listen, port=port) as server:
        scan = subprocess.run(
            [sys.executable, "-m", "sslyze", f"--certinfo_ca_file={tmp_path / 'ca.pem'}",
             f"--mozilla_config={profile}", f"localhost:{port}{{127.0.0.1}}"],
            capture_output=True, text=True, timeout=300)
        assert server.stop() == 0
    assert f"Checking results against Mozilla's \"{profile}\" configuration" in scan.stdout
    assert f"localhost:{port}: OK - Compliant." in scan.stdout, scan.stdout
    assert scan.returncode == 0
