"""Signals as an administrator sends them: SIGHUP reloads under load, SIGUSR1
reopens the logs after logrotate's move, the log is written promptly and
nothing is lost, and no other signal kills the server."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess

import pytest
import trustme

from tests.support.polling import wait_until_sync
from tests.support.procs import curl, free_port, trioweb
from tests.support.reloadable import reload_three_times_under_load, write_root_module

pytestmark = pytest.mark.skipif(subprocess.run(["which", "wrk"], capture_output=True).returncode != 0,
                                reason="wrk is not installed (Debian package wrk, listed in .ci/run)")



def _served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        return tls.getpeercert(binary_form=True)


def _pem_to_der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))


def _write_cert(cert: trustme.LeafCert, key_path, cert_path) -> None:
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))


def test_sighup_under_load_drops_nothing_and_switches_tree_log_and_certificate(tmp_path):
    port, tls_port = free_port(), free_port()
    ca = trustme.CA()
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    first = ca.issue_cert("localhost")
    _write_cert(first, key, cert)
    content = tmp_path / "content.txt"
    content.write_text("first tree\n")
    write_root_module(tmp_path / "reloadroot.py", content)
    log = tmp_path / "access.log"
    with trioweb("--class", "reloadroot.Root", "--logfile", str(log),
                 "--listen", f"tcp:{port}:interface=127.0.0.1",
                 "--listen", f"ssl:{tls_port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                 port=port, env={"PYTHONPATH": str(tmp_path)}) as server:
        assert _served_certificate(tls_port) == _pem_to_der(first.cert_chain_pems[0].bytes())
        second = ca.issue_cert("localhost")

        def change() -> None:  # new certificate, new tree, the log moved aside as logrotate does
            _write_cert(second, key, cert)
            content.write_text("second tree\n")
            log.rename(tmp_path / "access.log.1")

        requests = reload_three_times_under_load(server.process, f"http://127.0.0.1:{port}/", change)
        assert requests > 100
        assert curl(f"http://127.0.0.1:{port}/").stdout == b"second tree\n"
        assert _served_certificate(tls_port) == _pem_to_der(second.cert_chain_pems[0].bytes())
        wait_until_sync(lambda: log.exists() and log.stat().st_size > 0, timeout=5)
        assert server.stop() == 0
        assert server.process.poll() == 0
    rotated = (tmp_path / "access.log.1").read_text().splitlines()
    fresh = log.read_text().splitlines()
    # Every request wrk made is logged once, in one file or the other.
    assert len(rotated) + len(fresh) >= requests + 1
    assert "reloaded" in server.output()


def test_a_failed_reload_keeps_serving_the_old_certificate_and_says_why(tmp_path):
    port = free_port()
    ca = trustme.CA()
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    first = ca.issue_cert("localhost")
    _write_cert(first, key, cert)
    with trioweb("--listen", f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                 port=port) as server:
        ca.issue_cert("localhost").private_key_pem.write_to_path(str(key))  # a key of another certificate
        server.process.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: "reload failed" in server.output(), timeout=10)
        assert f"the key {key} does not match the certificate {cert}" in server.output()
        assert _served_certificate(port) == _pem_to_der(first.cert_chain_pems[0].bytes())
        cert.write_text("not a certificate")
        server.process.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: server.output().count("reload failed") == 2, timeout=10)
        assert _served_certificate(port) == _pem_to_der(first.cert_chain_pems[0].bytes())
        assert server.stop() == 0


def test_sigusr1_after_logrotate_moves_the_log_writes_a_fresh_one(tmp_path):
    port = free_port()
    log, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    with trioweb("--logfile", str(log), port=port) as server:
        assert curl(f"http://127.0.0.1:{port}/before").returncode == 0
        wait_until_sync(lambda: log.exists() and "/before" in log.read_text(), timeout=5)
        log.rename(rotated)
        server.process.send_signal(signal.SIGUSR1)
        wait_until_sync(log.exists, timeout=5)
        assert curl(f"http://127.0.0.1:{port}/after").returncode == 0
        # Flushed within a second or so, without stopping the server.
        wait_until_sync(lambda: "/after" in log.read_text(), timeout=5)
        assert server.stop() == 0
    assert "/before" in rotated.read_text() and "/after" not in rotated.read_text()
    assert "/before" not in log.read_text()


def test_a_lone_request_on_an_idle_server_is_logged_promptly(tmp_path):
    port = free_port()
    log = tmp_path / "access.log"
    with trioweb("--logfile", str(log), port=port) as server:
        assert curl(f"http://127.0.0.1:{port}/lonely").returncode == 0
        wait_until_sync(lambda: log.exists() and "/lonely" in log.read_text(), timeout=3)
        assert server.process.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                                 signal.SIGALRM])
def test_no_signal_loses_a_logged_line_and_only_stop_signals_stop(tmp_path, sig):
    port = free_port()
    log, error_log, pidfile = tmp_path / "access.log", tmp_path / "server.log", tmp_path / "web.pid"
    with trioweb("--logfile", str(log), "--error-log", str(error_log), "--pidfile", str(pidfile),
                 port=port) as server:
        for i in range(20):
            assert curl(f"http://127.0.0.1:{port}/n{i}").returncode == 0
        server.process.send_signal(sig)
        if sig in (signal.SIGTERM, signal.SIGINT):
            assert server.process.wait(20) == 0
            assert not pidfile.exists()
        else:
            wait_until_sync(lambda: signal.Signals(sig).name in error_log.read_text(), timeout=10)
            assert server.process.poll() is None
            assert curl(f"http://127.0.0.1:{port}/still").returncode == 0
            assert server.stop() == 0
    lines = log.read_text().splitlines()
    assert [line.split('"GET /')[1].split(" ")[0] for line in lines[:20]] == [f"n{i}" for i in range(20)]


def test_a_personal_server_reloads_reopens_and_ignores_like_a_site(tmp_path):
    (tmp_path / "site").mkdir()
    sock, log = tmp_path / "pb.sock", tmp_path / "personal.log"
    with trioweb("--personal", "--path", str(tmp_path / "site"), "--listen", f"unix:{sock}",
                 "--logfile", str(log)) as server:
        wait_until_sync(lambda: log.exists() and "publishing to front servers" in log.read_text(), timeout=15)
        log.rename(tmp_path / "personal.log.1")
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            server.process.send_signal(sig)
        wait_until_sync(lambda: log.exists() and "got SIGUSR2: ignored" in log.read_text(), timeout=10)
        assert "reloaded" in log.read_text()
        assert server.process.poll() is None
        assert server.stop() == 0
    assert not sock.exists()


def test_a_reload_whose_tree_cannot_be_built_keeps_the_old_tree(tmp_path):
    port = free_port()
    content = tmp_path / "content.txt"
    content.write_text("old tree\n")
    write_root_module(tmp_path / "reloadroot.py", content)
    with trioweb("--class", "reloadroot.Root", port=port, env={"PYTHONPATH": str(tmp_path)}) as server:
        content.unlink()  # building the root now fails
        server.process.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: "reload failed" in server.output(), timeout=10)
        assert "No such file or directory" in server.output()
        assert curl(f"http://127.0.0.1:{port}/").stdout == b"old tree\n"
        content.write_text("new tree\n")
        server.process.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: curl(f"http://127.0.0.1:{port}/").stdout == b"new tree\n", timeout=10)
        assert server.stop() == 0
