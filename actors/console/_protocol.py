"""The console's wire protocol: JSON text messages, one msgspec Struct each, tagged by ``type``.

Version 1. A client opens with ``hello`` (``version`` and an admin's API token) and is answered
``welcome``; then it may ``subscribe``/``unsubscribe`` to streams and send ``command``s, in any
order. Every ``command`` is answered by exactly one ``reply`` carrying its ``id``. Anything the
server cannot read or act on is answered by an ``error`` and the connection stays open.

Client to server (``type``): ``hello`` {version, token}; ``subscribe`` {streams,
event_filter?}; ``unsubscribe`` {streams}; ``command`` {id, action, ...arguments}.

Server to client (``type``): ``welcome`` {version, user_id, name}; ``event`` {seq, name,
event}; ``tree`` {root}; ``notification`` {notification}; ``frames`` {frames}; ``campaigns``
{campaigns}; ``alerts`` {alerts}; ``dead_letters`` {dead_letters}; ``reply`` {id, ok, error,
result}; ``error`` {message}.

Streams (live views, never replays of the past):

* ``events``: each journal event as it commits, filtered by ``event_filter`` (name prefix,
  frame, correlation id).
* ``tree``: the supervision tree (path, state, restarts, mailbox depth, last error), sent at
  once and again whenever it changed.
* ``notifications``: each notification the notifier stores.
* ``frames``: every paired frame (online, the photo it shows, firmware, health).
* ``campaigns``: the newest OTA campaigns' summaries (state, batch, counts per device state).
* ``alerts``: the open alerts (active and acknowledged), newest first.
* ``dead_letters``: the journal's dead letters (events a subscriber gave up on).

The last four are whole lists: sent at once on subscribing, then again whenever the list
changed (checked on a related event and every ``refresh_interval_s``); the client replaces
what it shows.

Commands (``action``, then its arguments): ``frame.next`` / ``frame.sync`` /
``frame.restart`` {frame_id}, ``frame.show`` {frame_id, file_id}; ``campaign.start`` /
``.pause`` / ``.resume`` / ``.cancel`` / ``.rollback`` / ``.retry-failed`` {campaign_id};
``alert.acknowledge`` {alert_id}, ``alert.resolve`` {alert_id, note?}; ``fault.inject``
{fault} (result ``{rule_id}``; ``delay_s`` at most 60), ``fault.remove`` {rule_id};
``dead-letter.replay`` {letter_id}. They go through the same actor messages as the HTTP API;
``result`` is the actor's answer (a frame command's view, the campaign, the alert, the dead
letter).

Close codes: 4400 unsupported version or a first message that is not ``hello``; 4401 bad or
missing token; 4403 not an admin; 4408 no ``hello`` within ``hello_timeout_s``; 4429 too many
failed ``hello`` tokens from the client's address lately (its reason says when to retry); 4008 the
client reads too slowly (more than ``send_queue`` messages waiting). A client that does not
even take its close frame within ``close_timeout_s`` has its TCP connection reset (seen as
1006, abnormal closure). A message over 1 MiB is closed with 1009; a frame that breaks
WebSocket itself (invalid UTF-8 in a text frame, a reserved opcode or bit, an unmasked frame)
ends the connection at once (1006). Binary frames are read as JSON like text frames.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from actors.events import AnyEvent
from actors.journal import ParkedEvent
from actors.notifier import Notification
from actors.ota import CampaignSummary
from actors.telemetry import AlertView
from supervision import ActorSnapshot, FaultRule

PROTOCOL_VERSION = 1

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_HELLO_TIMEOUT = 4408
CLOSE_TOO_MANY_FAILURES = 4429
CLOSE_TOO_SLOW = 4008

Stream = Literal["events", "tree", "notifications", "frames", "campaigns", "alerts", "dead_letters"]

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
Id64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""A numeric id (a fault rule's, a dead letter's): JSON integers have no bound, the ids
(SQLite rowids among them) are 64-bit."""


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
    rule_id: Id64 | None = None
    letter_id: Id64 | None = None


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


class FrameState(msgspec.Struct, frozen=True, kw_only=True):
    """One frame as the console shows it (its proxy's twin and its registry entry)."""

    frame_id: str
    name: str
    model: str
    online: bool
    current_file_id: str | None
    firmware_version: str | None
    health_score: int
    last_seen: str | None


class FramesMessage(msgspec.Struct, frozen=True, kw_only=True, tag="frames", tag_field="type"):
    """Every paired frame, oldest pairing first; sent whenever one of them changed."""

    frames: list[FrameState]


class CampaignsMessage(
    msgspec.Struct, frozen=True, kw_only=True, tag="campaigns", tag_field="type"
):
    """The newest campaigns, newest first; sent whenever one of them changed."""

    campaigns: list[CampaignSummary]


class AlertsMessage(msgspec.Struct, frozen=True, kw_only=True, tag="alerts", tag_field="type"):
    """The open (active or acknowledged) alerts, newest first; sent whenever they changed."""

    alerts: list[AlertView]


class DeadLettersMessage(
    msgspec.Struct, frozen=True, kw_only=True, tag="dead_letters", tag_field="type"
):
    """The journal's dead letters, oldest first; sent whenever they changed."""

    dead_letters: list[ParkedEvent]


class Reply(msgspec.Struct, frozen=True, kw_only=True, tag="reply", tag_field="type"):
    """The outcome of the command ``id``: ``result`` (the actor's answer) or ``error``."""

    id: str
    ok: bool
    error: str | None = None
    result: msgspec.Raw | None = None


class ErrorMessage(msgspec.Struct, frozen=True, kw_only=True, tag="error", tag_field="type"):
    """A message the server could not read or act on; the connection stays open."""

    message: str


ServerMessage = (
    Welcome
    | EventMessage
    | TreeMessage
    | NotificationMessage
    | FramesMessage
    | CampaignsMessage
    | AlertsMessage
    | DeadLettersMessage
    | Reply
    | ErrorMessage
)


class FaultInstalled(msgspec.Struct, frozen=True, kw_only=True):
    """The ``result`` of ``fault.inject``."""

    rule_id: int


class FaultRemoved(msgspec.Struct, frozen=True, kw_only=True):
    """The ``result`` of ``fault.remove``."""

    rule_id: int
