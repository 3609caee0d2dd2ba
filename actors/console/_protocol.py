"""The console's wire protocol: JSON text messages, one msgspec Struct each, tagged by ``type``.

A client opens with ``hello`` (protocol ``version`` and an admin's API token) and is answered
``welcome``; then it may ``subscribe`` to streams and send ``command``s, in any order. Every
``command`` is answered by one ``reply`` carrying its ``id``. Anything the server cannot read
is answered by an ``error`` and the connection stays open.

Close codes: 4400 unsupported version or a first message that is not ``hello``, 4401 bad or
missing token, 4403 not an admin, 4408 no ``hello`` in time, 4008 the client reads too slowly.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from actors.events import AnyEvent
from actors.notifier import Notification
from supervision import ActorSnapshot, FaultRule

PROTOCOL_VERSION = 1

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_HELLO_TIMEOUT = 4408
CLOSE_TOO_SLOW = 4008

Stream = Literal["events", "tree", "notifications"]

Action = Literal[
    "frame.next",
    "frame.show",
    "frame.sync",
    "frame.restart",
    "campaign.start",
    "campaign.pause",
    "campaign.resume",
    "campaign.cancel",
    "campaign.rollback",
    "campaign.retry-failed",
    "alert.acknowledge",
    "alert.resolve",
    "fault.inject",
    "fault.remove",
    "dead-letter.replay",
]

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


# -- client to server ---------------------------------------------------------------------------


class Hello(msgspec.Struct, frozen=True, kw_only=True, tag="hello", tag_field="type"):
    """The first message: the protocol version spoken and an admin's API token."""

    version: int
    token: str

    def __repr__(self) -> str:
        return f"Hello(version={self.version}, token=<redacted>)"


class EventFilter(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which events to stream; every given field must match.

    ``name_prefix``: the event's name starts with it (``file.``); ``frame_id``: the event's
    ``frame_id`` or ``device_id``; ``correlation_id``: the event's correlation id."""

    name_prefix: str | None = None
    frame_id: str | None = None
    correlation_id: str | None = None


class Subscribe(msgspec.Struct, frozen=True, kw_only=True, tag="subscribe", tag_field="type"):
    """Start ``streams`` (a stream already on is restarted with the new filter); the tree
    stream sends the current tree at once."""

    streams: list[Stream]
    event_filter: EventFilter = EventFilter()


class Unsubscribe(msgspec.Struct, frozen=True, kw_only=True, tag="unsubscribe", tag_field="type"):
    """Stop ``streams``."""

    streams: list[Stream]


class Command(msgspec.Struct, frozen=True, kw_only=True, tag="command", tag_field="type"):
    """Act on the hub; answered by a ``reply`` with the same ``id``.

    ``frame.*`` take ``frame_id`` (``frame.show`` also ``file_id``); ``campaign.*`` take
    ``campaign_id``; ``alert.*`` take ``alert_id`` (``alert.resolve`` an optional ``note``);
    ``fault.inject`` takes ``fault`` and its result carries the ``rule_id`` that
    ``fault.remove`` takes; ``dead-letter.replay`` takes ``letter_id``.
    """

    id: Text
    action: Action
    frame_id: str | None = None
    file_id: str | None = None
    campaign_id: str | None = None
    alert_id: str | None = None
    note: str = ""
    fault: FaultRule | None = None
    rule_id: int | None = None
    letter_id: int | None = None


ClientMessage = Hello | Subscribe | Unsubscribe | Command


# -- server to client ---------------------------------------------------------------------------


class Welcome(msgspec.Struct, frozen=True, kw_only=True, tag="welcome", tag_field="type"):
    """The token was an admin's: who is connected, and the version in use."""

    version: int
    user_id: str
    name: str


class EventMessage(msgspec.Struct, frozen=True, kw_only=True, tag="event", tag_field="type"):
    """A journal event, as it committed, with its position in the journal."""

    seq: int
    name: str
    event: AnyEvent


class TreeMessage(msgspec.Struct, frozen=True, kw_only=True, tag="tree", tag_field="type"):
    """The supervision tree, sent on subscribing and whenever it changes."""

    root: ActorSnapshot


class NotificationMessage(
    msgspec.Struct, frozen=True, kw_only=True, tag="notification", tag_field="type"
):
    """A notification the notifier just stored."""

    notification: Notification


class Reply(msgspec.Struct, frozen=True, kw_only=True, tag="reply", tag_field="type"):
    """The outcome of the command ``id``: ``result`` (the actor's answer) or ``error``."""

    id: str
    ok: bool
    error: str | None = None
    result: msgspec.Raw | None = None


class ErrorMessage(msgspec.Struct, frozen=True, kw_only=True, tag="error", tag_field="type"):
    """A message the server could not read or act on; the connection stays open."""

    message: str


ServerMessage = Welcome | EventMessage | TreeMessage | NotificationMessage | Reply | ErrorMessage


class FaultInstalled(msgspec.Struct, frozen=True, kw_only=True):
    """The ``result`` of ``fault.inject``."""

    rule_id: int


class FaultRemoved(msgspec.Struct, frozen=True, kw_only=True):
    """The ``result`` of ``fault.remove``."""

    rule_id: int
