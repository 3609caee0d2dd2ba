"""``docs/console.md`` and ``docs/events.md`` describe everything the code defines: every
console message, stream, action and close code, every event and each of its fields."""

from __future__ import annotations

import re
from typing import get_args

import msgspec

import actors.console as console
from actors.events import EVENT_TYPES, Event
from tests.harness.contracts import DOCS


def sections(text: str) -> dict[str, str]:
    """The ``### `name` `` sections of a page, by name (heading lines may list several)."""
    found: dict[str, str] = {}
    parts = re.split(r"^### (.+)$", text, flags=re.MULTILINE)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        for name in re.findall(r"`([^`]+)`", heading):
            found[name] = body
    return found


def test_every_event_of_the_catalogue_and_each_of_its_fields_is_in_events_md() -> None:
    by_name = sections((DOCS / "events.md").read_text(encoding="utf-8"))
    assert set(by_name) == set(EVENT_TYPES), set(by_name) ^ set(EVENT_TYPES)
    envelope = {field.name for field in msgspec.structs.fields(Event)}
    for name, event in EVENT_TYPES.items():
        fields = {field.name for field in msgspec.structs.fields(event)} - envelope
        listed = set(re.findall(r"^\| `(\w+)` \|", by_name[name], flags=re.MULTILINE))
        assert listed == fields, (name, listed ^ fields)


def test_every_console_message_stream_action_and_close_code_is_in_console_md() -> None:
    text = (DOCS / "console.md").read_text(encoding="utf-8")
    by_type = sections(text)
    messages = [*get_args(console.ClientMessage), *get_args(console.ServerMessage)]
    for message in messages:
        tag = message.__struct_config__.tag
        assert tag in by_type, f"message {tag!r} has no section"
        for field in msgspec.structs.fields(message):
            assert f'"{field.name}"' in by_type[tag] or f"`{field.name}`" in by_type[tag], (
                tag,
                field.name,
            )
    assert len(get_args(console.Stream)) >= 7
    for stream in get_args(console.Stream):
        assert f"`{stream}`" in text, stream
    (action,) = [f.type for f in msgspec.structs.fields(console.Command) if f.name == "action"]
    assert len(get_args(action)) >= 15
    for name in get_args(action):
        assert f"`{name}`" in text, name
    for code in (
        console.CLOSE_BAD_REQUEST,
        console.CLOSE_UNAUTHORIZED,
        console.CLOSE_FORBIDDEN,
        console.CLOSE_HELLO_TIMEOUT,
        console.CLOSE_TOO_MANY_FAILURES,
        console.CLOSE_TOO_SLOW,
    ):
        assert f"| {code} |" in text, code
    assert f'"version": {console.PROTOCOL_VERSION}' in text
