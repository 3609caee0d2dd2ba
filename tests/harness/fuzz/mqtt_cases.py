"""Hostile MQTT messages for the topics the hub subscribes to (``frames/+/<leaf>`` for every
leaf of ``wire.FRAME_LEAVES_IN``), each with the outcome the bridge owes it.

``cases(own)`` is a hypothesis strategy of ``Case``: what is published, by whom (the paired
frame ``own`` with its own credentials, or the hub's MQTT user, the only one the broker lets
publish on other frames' topics), and what must become of it:

* ``routed``: decoded and handed on (to the frame's proxy, the telemetry or the OTA actor);
* a drop reason of the bridge (``malformed``, ``oversized``, ``wrong_frame``,
  ``unknown_frame``, ``foreign_topic``): dropped and counted under that reason;
* ``ignored``: an empty payload (a retained message being cleared): neither;
* ``unheard``: on no topic the hub subscribes to: the bridge never sees it.

Each expectation holds by construction (a payload with a required field removed is malformed,
a payload over ``wire.MAX_PAYLOAD_BYTES`` is oversized...); where a random mutation might
happen to produce something valid, the case is checked against ``wire``'s decoders and
discarded if it does.
"""

from __future__ import annotations

import functools
import math
import operator
import sys
import typing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import msgspec
from hypothesis import assume
from hypothesis import strategies as st

import wire

from .examples import json_values

Sender = Literal["frame", "hub"]
PROXY_LEAVES = ("status", "heartbeat", "availability")
"""What the bridge tells a frame's proxy (and so can be dropped as ``unknown_frame``)."""

_TYPES: dict[str, type[msgspec.Struct]] = {
    "status": wire.FrameStatus,
    "heartbeat": wire.Heartbeat,
    "telemetry": wire.Telemetry,
    "ota": wire.OtaProgress,
}
_DECODERS = {leaf: msgspec.json.Decoder(kind) for leaf, kind in _TYPES.items()}
_encode = msgspec.json.encode

NASTY_STRINGS = (
    "",
    " ",
    "../../../etc/passwd",
    "'; DROP TABLE frame_twins; --",
    "%s%s%n%x",
    "<script>alert(1)</script>",
    "\u202e\u0000\x7f\x1b[2J",
    "\U0001f4a5" * 200,
    "\ufeff\ud7ff\uffff",
    "null",
    "NaN",
)
ODD_TIMESTAMPS = (
    "",
    "now",
    "2026-13-45T25:61:61Z",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "1970-01-01T00:00:00Z",
    "2026-11-22T10:00:00",
    "2026-11-22T10:00:00.123456789+01:00",
    "9" * 40,
    "9" * 41,
)
NON_FINITE = (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999", b"nan", b"inf")
_PLACEHOLDER = "\x00non-finite\x00"

INT64 = st.integers(-(2**63), 2**63 - 1)
BEYOND_INT64 = st.one_of(
    st.integers(min_value=2**63), st.integers(max_value=-(2**63) - 1), st.just(10**400)
)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
SAMPLES = st.floats(-wire.SAMPLE_LIMIT, wire.SAMPLE_LIMIT)
BEYOND_SAMPLES = st.floats(min_value=wire.SAMPLE_LIMIT, exclude_min=True, allow_infinity=False)


@dataclass(frozen=True)
class Case:
    kind: str
    """The generator's name for it (``random bytes``, ``missing field``...)."""
    sender: Sender
    topic: str
    payload: bytes
    expect: str

    @property
    def leaf(self) -> str:
        """The subscribed leaf it is published on; ``(other)`` for any other topic."""
        parts = wire.split_frame_topic(self.topic)
        return parts[1] if parts is not None and parts[1] in wire.FRAME_LEAVES_IN else "(other)"

    @property
    def heard(self) -> bool:
        """Whether the bridge receives it (it subscribed to the topic)."""
        return self.expect != "unheard"

    def samples(self) -> int:
        """Samples it offers the telemetry actor when routed: a telemetry message's metrics,
        a heartbeat's ``free_bytes`` and ``uptime_s``."""
        if self.expect != "routed" or self.leaf not in ("telemetry", "heartbeat"):
            return 0
        if self.leaf == "heartbeat":
            return 2
        return len(msgspec.json.decode(self.payload, type=wire.Telemetry).metrics)


def decodes(leaf: str, payload: bytes) -> bool:
    """Whether ``wire`` reads ``payload`` as the message of ``leaf``."""
    if leaf == "availability":
        return payload in (wire.ONLINE.encode(), wire.OFFLINE.encode())
    try:
        _DECODERS[leaf].decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def required_fields(leaf: str) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(_TYPES[leaf]) if f.required]


def field_names(leaf: str) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(_TYPES[leaf])}


# -- values ------------------------------------------------------------------------------------


@functools.cache
def odd_text() -> st.SearchStrategy[str]:
    """Short unicode, long runs of one character (cheap to draw) and classic nasties."""
    long_runs = st.builds(operator.mul, st.characters(codec="utf-8"), st.integers(500, 3_000))
    return st.one_of(st.text(max_size=24), long_runs, st.sampled_from(NASTY_STRINGS))


@functools.cache
def timestamps() -> st.SearchStrategy[str]:
    offsets = st.timedeltas(
        min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
    ).map(timezone)
    moments = st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
    )
    recent = st.floats(-86_400.0 * 30, 3_600.0).map(
        lambda ago: (datetime.now(UTC) + timedelta(seconds=ago)).isoformat()
    )
    return st.one_of(
        st.sampled_from(ODD_TIMESTAMPS),
        moments.map(datetime.isoformat),
        recent,
        st.text(max_size=45),
    )


@functools.cache
def metric_names() -> st.SearchStrategy[str]:
    return st.one_of(
        st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True),
        st.text(max_size=70),
        st.sampled_from(NASTY_STRINGS),
    )


@functools.cache
def frame_ids(own: str) -> st.SearchStrategy[str]:
    """Topic levels naming a frame the hub does not know: whatever the broker takes in a
    topic (no control or unassigned characters, no ``/``, ``+`` or ``#``)."""
    level = st.text(
        st.characters(blacklist_categories=("Cc", "Cs", "Cn", "Co"), blacklist_characters="/+#"),
        min_size=1,
        max_size=300,
    )
    known = st.sampled_from(
        ("fleet", ".", "..", "0" * 32, "f" * 32, own.upper(), own[:-1], own + "0", " ", "\u202e")
    )
    return st.one_of(known, level, st.binary(min_size=16, max_size=16).map(bytes.hex)).filter(
        lambda frame_id: frame_id != own
    )


@functools.cache
def valid_payload(leaf: str, frame_id: str) -> st.SearchStrategy[dict[str, Any]]:
    """A payload ``wire`` accepts for ``leaf`` (not ``availability``), with values as odd as
    the types allow: any unicode, any 64-bit integer, any finite float, any timestamp."""
    fid = st.just(frame_id)
    maybe_text = st.none() | odd_text()
    if leaf == "status":
        return st.fixed_dictionaries(
            {
                "frame_id": fid,
                "status": st.sampled_from(
                    ["displayed", "downloading", "synced", "screen_off", "command_done", "error"]
                )
                | odd_text(),
                "timestamp": timestamps(),
            },
            optional={
                "file_id": maybe_text,
                "command_id": maybe_text,
                "error": maybe_text,
                "sync_version": st.none() | INT64,
            },
        )
    if leaf == "heartbeat":
        return st.fixed_dictionaries(
            {
                "frame_id": fid,
                "firmware_version": odd_text(),
                "uptime_s": SAMPLES,
                "free_bytes": INT64,
                "timestamp": timestamps(),
            },
            optional={
                "interval_s": FLOATS,
                "sync_version": INT64,
                "current_file_id": maybe_text,
                "cached_photos": INT64,
            },
        )
    if leaf == "telemetry":
        return st.fixed_dictionaries(
            {
                "frame_id": fid,
                "metrics": st.dictionaries(metric_names(), SAMPLES, max_size=80),
                "timestamp": timestamps(),
            }
        )
    assert leaf == "ota", leaf
    return st.fixed_dictionaries(
        {
            "frame_id": fid,
            "state": st.sampled_from(typing.get_args(wire.OtaState)),
            "timestamp": timestamps(),
        },
        optional={
            "campaign_id": maybe_text,
            "command_id": maybe_text,
            "version": maybe_text,
            "progress": st.none() | FLOATS,
            "error": maybe_text,
        },
    )


def _topic(frame_id: str, leaf: str) -> str:
    return wire.frame_topic(frame_id, leaf)


_STRUCT_LEAVES = st.sampled_from(sorted(_TYPES))
_ALL_LEAVES = st.sampled_from(wire.FRAME_LEAVES_IN)


# -- the cases ---------------------------------------------------------------------------------


def cases(own: str) -> st.SearchStrategy[Case]:
    """Every kind of hostile (and hostile-but-valid) message, for the paired frame ``own``."""
    return st.one_of(
        _random_bytes(own),
        _random_json(own),
        _wrong_type(own),
        _missing_field(own),
        _extra_fields(own),
        _oversized(own),
        _deeply_nested(own),
        _moderately_nested(own),
        _non_finite(own),
        _beyond_int64(own),
        _beyond_sample_range(own),
        _wrong_frame(own),
        _unknown_frame(own),
        _foreign_topic(),
        _unheard_topic(own),
        _valid(own),
        _valid(own),
    )


@st.composite
def _random_bytes(draw: st.DrawFn, own: str) -> Case:
    leaf = draw(_ALL_LEAVES)
    payload = draw(st.binary(min_size=1, max_size=2_000))
    assume(not decodes(leaf, payload))
    return Case("random bytes", "frame", _topic(own, leaf), payload, "malformed")


@st.composite
def _random_json(draw: st.DrawFn, own: str) -> Case:
    leaf = draw(_ALL_LEAVES)
    payload = _encode(draw(json_values()))
    assume(not decodes(leaf, payload))
    return Case("random JSON", "frame", _topic(own, leaf), payload, "malformed")


_KINDS: dict[str, st.SearchStrategy[object]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "number": st.integers(-(10**6), 10**6) | FLOATS,
    "text": st.text(max_size=10),
    "array": st.lists(st.integers(), max_size=3),
    "object": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return "array" if isinstance(value, list) else "object"


@functools.cache
def other_kinds(kind: str) -> st.SearchStrategy[object]:
    """A JSON value of any other kind than ``kind``."""
    return st.one_of(*(strategy for name, strategy in _KINDS.items() if name != kind))


@st.composite
def _wrong_type(draw: st.DrawFn, own: str) -> Case:
    leaf = draw(_STRUCT_LEAVES)
    payload = draw(valid_payload(leaf, own))
    key = draw(st.sampled_from(sorted(payload)))
    payload[key] = draw(other_kinds(_kind(payload[key])))
    encoded = _encode(payload)
    assume(not decodes(leaf, encoded))
    return Case("wrong type", "frame", _topic(own, leaf), encoded, "malformed")


@st.composite
def _missing_field(draw: st.DrawFn, own: str) -> Case:
    leaf = draw(_STRUCT_LEAVES)
    payload = draw(valid_payload(leaf, own))
    del payload[draw(st.sampled_from(required_fields(leaf)))]
    return Case("missing field", "frame", _topic(own, leaf), _encode(payload), "malformed")


@st.composite
def _extra_fields(draw: st.DrawFn, own: str) -> Case:
    leaf = draw(_STRUCT_LEAVES)
    payload = draw(valid_payload(leaf, own))
    known = field_names(leaf)
    keys = st.text(max_size=20).filter(lambda key: key not in known)
    payload.update(draw(st.dictionaries(keys, json_values(6), min_size=1, max_size=3)))
    encoded = _encode(payload)
    assert decodes(leaf, encoded), encoded[:200]
    return Case("extra fields", "frame", _topic(own, leaf), encoded, "routed")


@st.composite
def _oversized(draw: st.DrawFn, own: str) -> Case:
    leaf = draw(_ALL_LEAVES)
    past = draw(st.integers(1, 3 * wire.MAX_PAYLOAD_BYTES))
    if leaf == "availability":
        payload = b"online" + b" " * (wire.MAX_PAYLOAD_BYTES - 5 + past)
    else:
        body = draw(valid_payload(leaf, own))
        base = len(_encode({**body, "padding": ""}))
        payload = _encode({**body, "padding": "x" * max(0, wire.MAX_PAYLOAD_BYTES - base + past)})
    assert len(payload) > wire.MAX_PAYLOAD_BYTES
    return Case("oversized", "frame", _topic(own, leaf), payload, "oversized")


@st.composite
def _deeply_nested(draw: st.DrawFn, own: str) -> Case:
    """Nesting far past any decoder's recursion limit (2,000 to 100,000 levels), as the
    whole payload or inside an unknown field of a valid one."""
    leaf = draw(_ALL_LEAVES)
    depth = draw(st.integers(2_000, 100_000))
    shape = draw(st.sampled_from(["array", "object"]))
    if shape == "array":
        nested = b"[" * depth + b"]" * depth
    else:
        nested = b'{"a":' * depth + b"1" + b"}" * depth
    if leaf != "availability" and draw(st.booleans()):
        body = _encode({**draw(valid_payload(leaf, own)), "nested": 0})
        payload = body.replace(b'"nested":0', b'"nested":' + nested)
    else:
        payload = nested
    expect = "oversized" if len(payload) > wire.MAX_PAYLOAD_BYTES else "malformed"
    return Case("deeply nested", "frame", _topic(own, leaf), payload, expect)


@st.composite
def _moderately_nested(draw: st.DrawFn, own: str) -> Case:
    """A valid payload carrying an unknown field nested a hundred levels deep: ignored."""
    leaf = draw(_STRUCT_LEAVES)
    depth = draw(st.integers(1, 100))
    body = _encode({**draw(valid_payload(leaf, own)), "nested": 0})
    payload = body.replace(b'"nested":0', b'"nested":' + b"[" * depth + b"]" * depth)
    assert decodes(leaf, payload)
    return Case("nested extra field", "frame", _topic(own, leaf), payload, "routed")


_NUMERIC: dict[str, tuple[str, ...]] = {
    "status": ("sync_version",),
    "heartbeat": ("uptime_s", "free_bytes", "interval_s", "sync_version", "cached_photos"),
    "telemetry": ("metrics",),
    "ota": ("progress",),
}


@st.composite
def _non_finite(draw: st.DrawFn, own: str) -> Case:
    """NaN, infinities and numbers past a double's range, which JSON does not have."""
    leaf = draw(_STRUCT_LEAVES)
    payload = draw(valid_payload(leaf, own))
    key = draw(st.sampled_from(_NUMERIC[leaf]))
    if key == "metrics":
        payload["metrics"] = {**payload["metrics"], draw(metric_names()): _PLACEHOLDER}
    else:
        payload[key] = _PLACEHOLDER
    literal = draw(st.sampled_from(NON_FINITE))
    encoded = _encode(payload).replace(_encode(_PLACEHOLDER), literal)
    return Case("non-finite number", "frame", _topic(own, leaf), encoded, "malformed")


_INTEGERS = {
    "status": ("sync_version",),
    "heartbeat": ("free_bytes", "sync_version", "cached_photos"),
}


@st.composite
def _beyond_int64(draw: st.DrawFn, own: str) -> Case:
    """Integers past 64 bits where the contract has integers: no frame means them."""
    leaf = draw(st.sampled_from(sorted(_INTEGERS)))
    payload = draw(valid_payload(leaf, own))
    payload[draw(st.sampled_from(_INTEGERS[leaf]))] = draw(BEYOND_INT64)
    return Case("integer past 64 bits", "frame", _topic(own, leaf), _encode(payload), "malformed")


@st.composite
def _beyond_sample_range(draw: st.DrawFn, own: str) -> Case:
    """Samples past +-1e300 (a minute's sum of two would overflow): not samples a frame means."""
    leaf = draw(st.sampled_from(("heartbeat", "telemetry")))
    payload = draw(valid_payload(leaf, own))
    value = draw(BEYOND_SAMPLES) * draw(st.sampled_from((1, -1)))
    if leaf == "heartbeat":
        payload["uptime_s"] = value
    else:
        payload["metrics"] = {**payload["metrics"], draw(metric_names()): value}
    return Case("sample past 1e300", "frame", _topic(own, leaf), _encode(payload), "malformed")


@st.composite
def _wrong_frame(draw: st.DrawFn, own: str) -> Case:
    leaf = draw(_STRUCT_LEAVES)
    other = draw(st.one_of(odd_text(), frame_ids(own)).filter(lambda frame_id: frame_id != own))
    payload = _encode(draw(valid_payload(leaf, other)))
    return Case("payload names another frame", "frame", _topic(own, leaf), payload, "wrong_frame")


@st.composite
def _unknown_frame(draw: st.DrawFn, own: str) -> Case:
    """A frame the hub does not know (only the hub's own MQTT user may publish there)."""
    leaf = draw(_ALL_LEAVES)
    frame_id = draw(frame_ids(own))
    if leaf == "availability":
        payload = draw(st.sampled_from((wire.ONLINE, wire.OFFLINE))).encode()
    else:
        payload = _encode(draw(valid_payload(leaf, frame_id)))
    # Telemetry and OTA progress go to their actors, which know the frames (and drop them).
    expect = "unknown_frame" if leaf in PROXY_LEAVES else "routed"
    return Case("unknown frame", "hub", _topic(frame_id, leaf), payload, expect)


@st.composite
def _foreign_topic(draw: st.DrawFn) -> Case:
    """``frames//<leaf>``: ``+`` matches an empty level, so the hub hears it."""
    leaf = draw(_ALL_LEAVES)
    payload = draw(st.binary(min_size=1, max_size=200))
    return Case("empty frame id", "hub", f"frames//{leaf}", payload, "foreign_topic")


@st.composite
def _unheard_topic(draw: st.DrawFn, own: str) -> Case:
    """Topics with extra, missing or odd levels: the hub's subscriptions do not match them."""
    leaf = draw(_ALL_LEAVES)
    level = st.text(
        st.characters(blacklist_categories=("Cc", "Cs", "Cn", "Co"), blacklist_characters="/+#"),
        min_size=1,
        max_size=30,
    )
    odd_leaf = level.filter(
        lambda name: name not in wire.FRAME_LEAVES_IN and name not in wire.FRAME_LEAVES_OUT
    )
    topic = draw(
        st.one_of(
            level.map(lambda extra: f"frames/{own}/{leaf}/{extra}"),
            st.just(f"frames/{own}/{leaf}/"),
            odd_leaf.map(lambda name: f"frames/{own}/{name}"),
            st.just(f"frames/{own}/{leaf.upper()}"),
            st.just(f"frames/{own}"),
        )
    )
    payload = _encode(draw(valid_payload("heartbeat", own)))
    sender: Sender = draw(st.sampled_from(("frame", "hub")))
    return Case("odd topic levels", sender, topic, payload, "unheard")


@st.composite
def _valid(draw: st.DrawFn, own: str) -> Case:
    """Valid messages with the oddest values the types allow: they must be taken."""
    leaf = draw(_ALL_LEAVES)
    if leaf == "availability":
        payload = draw(st.sampled_from((wire.ONLINE, wire.OFFLINE))).encode()
    else:
        payload = _encode(draw(valid_payload(leaf, own)))
    assert decodes(leaf, payload), payload[:200]
    return Case("valid, odd values", "frame", _topic(own, leaf), payload, "routed")


def boundary_cases(own: str) -> list[Case]:
    """The edges, exactly: a valid heartbeat of ``MAX_PAYLOAD_BYTES`` is taken, one byte more
    is dropped as oversized; an empty payload is ignored; a leading ``/`` is another topic;
    samples of +-``SAMPLE_LIMIT`` in one minute are stored (their sums stay finite), one step
    past it they are malformed. And the cases that once broke the hub, every time: integers
    past 64 bits (the proxy could not store them), nesting past the decoder's recursion limit
    (the bridge crashed), ``fleet`` as a frame id (another actor under ``/frames``)."""
    beat = {
        "frame_id": own,
        "firmware_version": "1.0.0",
        "uptime_s": 1.0,
        "free_bytes": 1,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    base = len(_encode({**beat, "padding": ""}))
    at_limit = _encode({**beat, "padding": "x" * (wire.MAX_PAYLOAD_BYTES - base)})
    over = _encode({**beat, "padding": "x" * (wire.MAX_PAYLOAD_BYTES - base + 1)})
    assert len(at_limit) == wire.MAX_PAYLOAD_BYTES and len(over) == wire.MAX_PAYLOAD_BYTES + 1
    heartbeat = _topic(own, "heartbeat")

    def sample(value: float) -> bytes:
        return _encode({"frame_id": own, "metrics": {"extreme": value}, "timestamp": stamp})

    stamp = beat["timestamp"]
    fleet = {**beat, "frame_id": "fleet"}
    limit = wire.SAMPLE_LIMIT
    extremes = [limit, limit, limit, -limit, -limit, -limit]
    past = [math.nextafter(limit, math.inf), sys.float_info.max, -sys.float_info.max]
    telemetry = _topic(own, "telemetry")
    return [
        Case("boundary", "frame", heartbeat, at_limit, "routed"),
        Case("boundary", "frame", heartbeat, over, "oversized"),
        Case("boundary", "frame", _topic(own, "status"), b"", "ignored"),
        Case("boundary", "hub", f"/frames/{own}/heartbeat", at_limit, "unheard"),
        *(Case("boundary", "frame", telemetry, sample(v), "routed") for v in extremes),
        *(Case("boundary", "frame", telemetry, sample(v), "malformed") for v in past),
        Case("boundary", "frame", heartbeat, _encode({**beat, "free_bytes": 2**64}), "malformed"),
        Case(
            "boundary",
            "frame",
            _topic(own, "status"),
            b'{"frame_id":"' + own.encode() + b'","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            "malformed",
        ),
        Case("boundary", "hub", "frames/fleet/heartbeat", _encode(fleet), "unknown_frame"),
        Case("boundary", "hub", "frames/fleet/availability", b"online", "unknown_frame"),
    ]
