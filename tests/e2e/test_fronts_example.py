"""examples/fronts/nginx-stream.conf: a real nginx balancing over two trioweb
fronts (one of them with two workers), the PROXY protocol telling each front
the real client."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.nginx import has_stream_module, nginx_binary, start_nginx
from tests.support.procs import ROOT, curl, free_port, trioweb

EXAMPLE = ROOT / "examples" / "fronts" / "nginx-stream.conf"

pytestmark = [
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (nginx-light, listed in .ci/run)"),
    pytest.mark.skipif(not has_stream_module(), reason="nginx's stream module is not installed (libnginx-mod-stream)"),
]


def _stream_body(ports: dict[int, int]) -> str:
    """The example's stream {} body with its ports moved to free ones."""
    text = EXAMPLE.read_text()
    body = text[text.index("stream {") + len("stream {"):text.rindex("}")]
    return re.sub(r"127\.0\.0\.1:(808[012])\b", lambda m: f"127.0.0.1:{ports[int(m.group(1))]}", body)


def test_nginx_balances_two_fronts_and_each_sees_the_real_client(tmp_path):
    ports = {8080: free_port(), 8081: free_port(), 8082: free_port()}
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("one site, two fronts\n")
    logs = [tmp_path / "front1.log", tmp_path / "front2.log"]
    with trioweb("--path", str(site), "--listen", f"tcp:{ports[8081]}:interface=127.0.0.1:proxy=1",
                 "--logfile", str(logs[0]), "--access-log-format", "json", port=ports[8081]) as first, \
            trioweb("--path", str(site), "--workers", "2",
                    "--listen", f"tcp:{ports[8082]}:interface=127.0.0.1:proxy=1",
                    "--logfile", str(logs[1]), "--access-log-format", "json", port=ports[8082]) as second, \
            start_nginx(tmp_path, stream=_stream_body(ports), port=ports[8080]):
        for _ in range(10):
            done = curl("--interface", "127.0.0.2", f"http://127.0.0.1:{ports[8080]}/")
            assert done.stdout == b"one site, two fronts\n", done
        assert first.stop() == 0 and second.stop() == 0  # each flushes its access log
    records = [[json.loads(line) for line in Path(log).read_text().splitlines()] for log in logs]
    assert all(len(served) >= 3 for served in records), [len(served) for served in records]  # both fronts serve
    # The front's peer is nginx (127.0.0.1); the PROXY header names the client.
    assert {record["client"] for served in records for record in served} == {"127.0.0.2"}
