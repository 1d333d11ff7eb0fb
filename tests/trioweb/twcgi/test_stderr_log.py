"""Scripts' stderr in the error log: cut lines, a shared rate limit, and a count of what it left out."""

from __future__ import annotations

import logging

from trioweb.twcgi import StderrLog


def test_rate_limit_counts_what_it_leaves_out(caplog):
    now = [0.0]
    stderr = StderrLog(rate=2.0, burst=3, max_line=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="trioweb.twcgi"):
        for i in range(10):
            stderr.line("/x.cgi", b"line %d" % i)
        assert [r.getMessage() for r in caplog.records] == [f"CGI /x.cgi stderr: line {i}" for i in range(3)]
        assert stderr.suppressed == 7
        caplog.clear()
        now[0] = 1.0  # two tokens back
        stderr.line("/y.cgi", b"a much longer line than ten bytes")
        stderr.line("/y.cgi", b"next")
        stderr.line("/y.cgi", b"dropped")
    assert [r.getMessage() for r in caplog.records] == [
        "7 lines of CGI stderr were left out (rate limit)", "CGI /y.cgi stderr: a much lon", "CGI /y.cgi stderr: next"]
    assert stderr.suppressed == 1
