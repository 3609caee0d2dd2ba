"""Hostile frames for the operator console's WebSocket protocol, each with what the server owes
it (``actors/console/_protocol.py``).

* ``garbage()``: a message the server cannot act on (not JSON, JSON of the wrong shape, an
  unknown ``type``, nesting deeper than any decoder goes, a second ``hello``, an id past 64
  bits...). Before
  ``hello`` it is closed with 4400; after, it is answered by exactly one ``error`` and the
  connection stays open. Sent as text or as a binary frame (the server reads both as JSON).
* ``hostile_commands()``: well-formed ``command``s whose arguments name nothing that exists
  or are as odd as their types allow; each is answered by exactly one ``reply`` (``ok`` false).
* ``hellos()``: first messages that look like ``hello`` but are not a usable one.
* ``breaking_frames()``: frames that break WebSocket itself (invalid UTF-8, over the 1 MiB
  message limit, reserved opcodes and bits, unmasked, oversized or fragmented control frames):
  the connection ends, with 1009 for a message too big, else dropped (1006; trio-websocket
  aborts the TCP connection on a protocol error rather than sending 1002/1007).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, get_args

import msgspec
from hypothesis import assume
from hypothesis import strategies as st

from actors.console import ClientMessage, Command, Hello, Subscribe, Unsubscribe
from actors.console._protocol import Action

from .examples import json_values
from .websocket import BINARY, CONTINUATION, PING, TEXT, frame

MAX_MESSAGE = 1 << 20
"""trio-websocket's default message limit, which the console keeps."""
TOO_BIG = 1009
DROPPED = (1002, 1006, 1007)
"""A WebSocket protocol error ends the connection: with 1002/1007 by the book, or aborted."""

_decode = msgspec.json.Decoder(ClientMessage).decode
ACTIONS: tuple[str, ...] = get_args(Action)
TYPES = ("hello", "subscribe", "unsubscribe", "command")
INT64 = st.integers(-(2**63), 2**63 - 1)
BEYOND_INT64 = st.integers(min_value=2**63) | st.integers(max_value=-(2**63) - 1)


@dataclass(frozen=True)
class Garbage:
    kind: str
    data: bytes
    """The whole frame, ready to write."""


def outcome(payload: bytes) -> str:
    """What a greeted connection owes ``payload``: ``error``, ``reply`` (a command) or
    ``stream`` (a subscription's messages, whose number the test cannot know)."""
    try:
        message = _decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return "error"
    if isinstance(message, Hello):
        return "error"  # already greeted
    if isinstance(message, Command):
        return "reply"
    assert isinstance(message, Subscribe | Unsubscribe)
    return "stream"


def _as_frame(payload: bytes, binary: bool) -> bytes:
    return frame(payload, BINARY if binary else TEXT)


@functools.cache
def _shapes() -> st.SearchStrategy[dict[str, Any]]:
    """Objects that look like protocol messages: a known or unknown ``type`` with fields of
    the protocol (and others) holding any JSON."""
    keys = st.sampled_from(
        ("version", "token", "streams", "event_filter", "id", "action", "fault", "rule_id")
    ) | st.text(max_size=8)
    return st.builds(
        lambda kind, fields: {"type": kind, **fields},
        st.sampled_from(TYPES) | st.text(max_size=12),
        st.dictionaries(keys, json_values(6), max_size=4),
    )


@st.composite
def garbage(draw: st.DrawFn) -> Garbage:
    """A message nothing in the protocol can act on (see the module's docstring)."""
    kind = draw(
        st.sampled_from(
            (
                "text",
                "bytes",
                "json",
                "shape",
                "deep",
                "hello again",
                "big",
                "bad action",
                "id past 64 bits",
            )
        )
    )
    if kind == "text":
        payload = draw(st.text(min_size=1, max_size=200)).encode()
    elif kind == "bytes":
        payload = draw(st.binary(min_size=1, max_size=200))
        try:
            payload.decode()
        except UnicodeDecodeError:
            kind = "bytes"  # not text: only a binary frame can carry it
        else:
            kind = "text"
    elif kind == "json":
        payload = json.dumps(draw(json_values())).encode()
    elif kind == "shape":
        payload = msgspec.json.encode(draw(_shapes()))
    elif kind == "deep":
        depth = draw(st.integers(1_000, 100_000))
        inner = b"[" * depth + b"]" * depth
        payload = b'{"type":"subscribe","streams":["tree"],"x":' + inner + b"}"
    elif kind == "hello again":
        payload = json.dumps({"type": "hello", "version": 1, "token": draw(st.text())}).encode()
    elif kind == "big":
        payload = b'{"type":"command","id":"' + b"i" * draw(st.integers(300, 900_000)) + b'"}'
    elif kind == "bad action":
        action = draw(st.text(max_size=30).filter(lambda a: a not in ACTIONS))
        payload = json.dumps({"type": "command", "id": "x", "action": action}).encode()
    else:
        # Numeric ids name SQLite rows and fault rules: 64-bit, not any JSON integer.
        field, action = draw(
            st.sampled_from((("letter_id", "dead-letter.replay"), ("rule_id", "fault.remove")))
        )
        value = draw(BEYOND_INT64)
        body = {"type": "command", "id": "x", "action": action, field: value}
        payload = json.dumps(body).encode()
    assume(outcome(payload) == "error")
    binary = kind == "bytes" or draw(st.booleans())
    return Garbage(f"{kind} ({'binary' if binary else 'text'})", _as_frame(payload, binary))


def _odd_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.integers(1_000, 20_000).map(lambda n: "\u00e9" * n),  # under 1 MiB in all
        st.sampled_from(("", " ", "0" * 32, "../../etc/passwd", "*", "%00", "\u202e")),
    )


@st.composite
def hostile_commands(draw: st.DrawFn) -> dict[str, Any]:
    """A ``command`` the protocol reads, aimed at nothing that exists (no fault rule is
    installed, no campaign, alert or dead letter exists, no frame is paired): ``ok`` false.
    ``id`` is left for the test to number."""
    action = draw(st.sampled_from([a for a in ACTIONS if a != "fault.inject"]))
    fields: dict[str, Any] = {"type": "command", "action": action}
    for name in ("frame_id", "file_id", "campaign_id", "alert_id", "note"):
        if draw(st.booleans()):
            fields[name] = draw(_odd_text())
    for name in ("rule_id", "letter_id"):
        if draw(st.booleans()):
            fields[name] = draw(INT64)
    return fields


def overlong_delay() -> dict[str, Any]:
    """``fault.inject`` with a delay a held message would never come back from."""
    return {
        "type": "command",
        "action": "fault.inject",
        "fault": {"action": "delay", "path": "/domain/*", "delay_s": 3_600.0},
    }


@st.composite
def hellos(draw: st.DrawFn, member_token: str) -> tuple[str, bytes, tuple[int, ...]]:
    """A first message and the close codes it may get: 4400 for anything but a ``hello`` of
    version 1, 4401 for an unknown token (4429 once an address failed too often), 4403 for a
    member's token. (What, the payload, the codes.)"""
    kind = draw(st.sampled_from(("garbage", "version", "token type", "token", "member")))
    if kind == "garbage":  # a usable hello is no garbage before hello
        shown = draw(garbage().filter(lambda g: not g.kind.startswith("hello again")))
        return ("garbage: " + shown.kind, shown.data, (4400,))
    if kind == "version":
        version = draw(st.one_of(INT64, st.integers()).filter(lambda v: v != 1))
        body: dict[str, Any] = {"type": "hello", "version": version, "token": "t"}
        codes: tuple[int, ...] = (4400,)
    elif kind == "token type":
        token = draw(json_values(4).filter(lambda v: not isinstance(v, str)))
        body, codes = {"type": "hello", "version": 1, "token": token}, (4400,)
    elif kind == "token":
        body = {"type": "hello", "version": 1, "token": draw(_odd_text())}
        codes = (4401, 4429)
    else:
        body, codes = {"type": "hello", "version": 1, "token": member_token}, (4403,)
    payload = json.dumps(body).encode()
    return (f"hello: {kind}", _as_frame(payload, draw(st.booleans())), codes)


def breaking_frames() -> list[tuple[str, bytes, tuple[int, ...]]]:
    """Frames that break WebSocket itself, with the close codes each may end with."""
    many = b"".join(
        frame(b"x" * 4096, TEXT if i == 0 else CONTINUATION, fin=False)
        for i in range(MAX_MESSAGE // 4096 + 2)
    )
    return [
        ("invalid UTF-8 in a text frame", frame(b'{"type":"\xff\xfe"}'), DROPPED),
        ("a message over 1 MiB", frame(b'"' + b"x" * MAX_MESSAGE + b'"'), (TOO_BIG,)),
        ("fragments adding up to over 1 MiB", many, (TOO_BIG,)),
        ("a reserved opcode", frame(b"{}", 0x3), DROPPED),
        ("RSV bits without an extension", frame(b"{}", rsv=4), DROPPED),
        ("an unmasked frame", frame(b"{}", mask=None), DROPPED),
        ("a ping over 125 bytes", frame(b"p" * 200, PING), DROPPED),
        ("a fragmented ping", frame(b"p", PING, fin=False), DROPPED),
        ("a continuation with nothing to continue", frame(b"{}", CONTINUATION), DROPPED),
    ]
