"""distrib.StatusPage in memory: the HTML, the Prometheus text (read back by
prometheus_client's own parser), and who may see them."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from trioweb.address import IPv4Address, IPv6Address, UNIXAddress
from trioweb.distrib import BackendStatus, StatusPage
from trioweb.testing import fetch


def backends() -> dict[str, BackendStatus]:
    alice, bob = BackendStatus("alice"), BackendStatus("bob")
    alice.state = "up"
    alice.requests = 12
    for milliseconds in range(1, 101):
        alice.observe(milliseconds / 1000)
    alice.count_in_flight(lambda: 3)
    bob.state = "down"
    bob.requests = 5
    bob.circuit = "open"
    bob.error('bad response: header "<script>x</script>"\nsecond line', down=True)
    for code in (502, 502, 503, 504):
        bob.answered(code)
    return {"bob": bob, "alice": alice}


async def test_the_html_page_has_a_row_per_backend_with_its_figures_escaped():
    response = await fetch(StatusPage(backends), b"/")
    body = bytes(response.body).decode()
    assert response.code == 200
    assert response.header(b"content-type") == b"text/html; charset=utf-8"
    assert response.header(b"cache-control") == b"no-store"
    assert body.index("<td>alice</td>") < body.index("<td>bob</td>")  # sorted by name
    assert "<td>alice</td><td>up</td><td>closed</td><td></td><td></td><td>3</td><td>12</td><td>0</td><td>0</td><td>0</td>" \
           "<td>51.0 ms</td><td>100.0 ms</td>" in body
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert "<td>5</td><td>2</td><td>1</td><td>1</td>" in body  # bob: requests, 502, 503, 504
    assert " UTC</td>" in body  # when bob failed
    assert "<td>bob</td><td>down</td><td>open</td>" in body


async def test_no_backend_yet_says_so():
    body = bytes((await fetch(StatusPage(dict), b"/")).body)
    assert b"No backend has been tried" in body


async def test_the_prometheus_text_parses_with_the_reference_parser():
    response = await fetch(StatusPage(backends), b"/?format=prometheus")
    assert response.header(b"content-type") == b"text/plain; version=0.0.4; charset=utf-8"
    families = {family.name: family for family in text_string_to_metric_families(bytes(response.body).decode())}
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in families.values() for sample in family.samples}
    assert samples[("trioweb_backend_up", (("backend", "alice"),))] == 1
    assert samples[("trioweb_backend_up", (("backend", "bob"),))] == 0
    assert samples[("trioweb_backend_in_flight", (("backend", "alice"),))] == 3
    assert samples[("trioweb_backend_circuit_open", (("backend", "bob"),))] == 1
    assert samples[("trioweb_backend_circuit_open", (("backend", "alice"),))] == 0
    assert samples[("trioweb_backend_requests_total", (("backend", "bob"),))] == 5
    assert samples[("trioweb_backend_errors_total", (("backend", "bob"), ("code", "502")))] == 2
    assert samples[("trioweb_backend_errors_total", (("backend", "bob"), ("code", "504")))] == 1
    assert samples[("trioweb_backend_response_head_seconds", (("backend", "alice"), ("quantile", "0.99")))] == 0.1
    assert samples[("trioweb_backend_response_head_seconds_count", (("backend", "alice"),))] == 100
    assert samples[("trioweb_backend_response_head_seconds_sum", (("backend", "alice"),))] == pytest.approx(5.05)
    assert ("trioweb_backend_last_error_timestamp_seconds", (("backend", "bob"),)) in samples
    assert families["trioweb_backend_requests"].type == "counter"
    assert families["trioweb_backend_response_head_seconds"].type == "summary"


async def test_label_values_are_escaped():
    odd = BackendStatus('a"b\\c\nd')
    response = await fetch(StatusPage(lambda: {odd.name: odd}), b"/?format=prometheus")
    family = next(f for f in text_string_to_metric_families(bytes(response.body).decode())
                  if f.name == "trioweb_backend_up")
    assert family.samples[0].labels == {"backend": 'a"b\\c\nd'}


@pytest.mark.parametrize("client", [IPv4Address("TCP", "127.0.0.1", 1), IPv6Address("TCP", "::1", 1),
                                    UNIXAddress(None)])
async def test_loopback_and_unix_peers_may_see_it_by_default(client):
    assert (await fetch(StatusPage(backends), b"/", client=client)).code == 200


@pytest.mark.parametrize("allowed, client, code", [
    ("127.0.0.1,::1,unix", IPv4Address("TCP", "192.0.2.7", 1), 404),
    ("192.0.2.0/24", IPv4Address("TCP", "192.0.2.7", 1), 200),
    ("192.0.2.0/24", IPv4Address("TCP", "127.0.0.1", 1), 404),
    ("192.0.2.0/24", UNIXAddress(None), 404),
])
async def test_others_get_the_ordinary_404(allowed, client, code):
    response = await fetch(StatusPage(backends, allowed), b"/?format=prometheus", client=client)
    assert response.code == code
    if code == 404:
        assert b"alice" not in bytes(response.body) and b"trioweb_backend" not in bytes(response.body)

