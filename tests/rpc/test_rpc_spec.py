"""docs/protocol.md matches the code: version, codes, and the worked example."""

from __future__ import annotations

import re
from pathlib import Path

import rpc
from rpc import _wire as wire
from rpc._protocol import Protocol

SPEC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()


def test_title_names_the_protocol_version() -> None:
    assert SPEC.startswith(f"# {wire.PROTOCOL_NAME} wire protocol, version {wire.PROTOCOL_VERSION}\n")


def test_message_and_ext_codes_match() -> None:
    messages = dict(re.findall(r"^\| (\d+) \| ([A-Z_]+) \| `\[", SPEC, re.MULTILINE))
    assert {name: int(code) for code, name in messages.items()} == {
        name: getattr(wire, name) for name in (
            "CALL", "ANSWER", "ERROR", "SEND", "CANCEL", "DECREF", "STREAM_DATA",
            "STREAM_CREDIT", "STREAM_ABORT", "STREAM_STOP", "GOODBYE")}
    exts = dict(re.findall(r"^\| (\d) \| (REMOTE|YOURS|COPY|STREAM) \|", SPEC, re.MULTILINE))
    assert {name: int(code) for code, name in exts.items()} == {
        "REMOTE": wire.EXT_REMOTE, "YOURS": wire.EXT_YOURS, "COPY": wire.EXT_COPY,
        "STREAM": wire.EXT_STREAM}


def test_default_limits_match() -> None:
    limits = wire.Limits()
    assert f"default 16 MiB = {limits.max_frame}" in SPEC
    assert f"`max_array_len` ({limits.max_array_len}" in SPEC
    assert f"`max_calls` ({limits.max_calls})" in SPEC
    assert f"`max_queued_calls` ({limits.max_queued_calls})" in SPEC
    assert f"`max_refs` ({limits.max_refs})" in SPEC
    assert f"`max_streams` ({limits.max_streams})" in SPEC


def test_worked_example_is_what_the_code_sends() -> None:
    example = SPEC[SPEC.index("## 7. Example"):]
    frames = [bytes.fromhex(line) for line in
              re.findall(r"^[0-9a-f]{2}(?: +[0-9a-f]{2})*$", example, re.MULTILINE)]

    class Root(rpc.Referenceable):
        def remote_echo(self, value: object) -> object:
            return value

    caller, callee = Protocol(wire.Limits()), Protocol(wire.Limits(), root=Root())
    callee.receive_data(caller.hello())
    caller.receive_data(callee.hello())
    call_id, call = caller.call(0, "echo", ([1, b"x"],), {})
    [event] = callee.receive_data(call)
    assert frames == [call, callee.answer(call_id, event.args[0])]
