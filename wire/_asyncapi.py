"""The MQTT contract as an AsyncAPI 3.0 document, generated from the payload Structs.

The document is written from a frame's point of view: ``send`` is what a frame publishes,
``receive`` what it subscribes to. The two hub-wide topics (``hub/availability`` and
``photos/<file_id>/metadata_updated``) are described as ``receive`` too, and say that a frame's
credentials cannot read them; they are there for scripts connected with the hub's credentials.
QoS and retain are the MQTT bindings of each operation; payload schemas are msgspec's JSON
Schemas of the Structs in ``wire``, so the document changes exactly when a payload does.

This module imports only msgspec and the standard library, like the rest of ``wire``. It is
imported by ``wire`` itself, so it reads the payload types inside its functions, once ``wire``
is complete.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

import wire

ASYNCAPI_VERSION = "3.0.0"
MQTT_BINDING_VERSION = "0.2.0"
DEFAULT_MQTT_PORT = 1884
"""The managed broker's port in ``config/default.toml``."""

AVAILABILITY = "Availability"
"""The message of the availability topics: ``online`` or ``offline`` as plain text."""

Action = Literal["send", "receive"]


class _Topic(msgspec.Struct, frozen=True, kw_only=True):
    """One channel and the one operation a frame (or a hub-side script) does on it."""

    channel: str
    address: str
    payload: type[msgspec.Struct] | None
    """The Struct of ``wire`` its JSON payload decodes into; None for ``online``/``offline``
    as plain text."""
    action: Action
    qos: Literal[0, 1, 2]
    retain: bool = False
    summary: str
    description: str = ""
    max_bytes: int | None = None
    """The largest payload a receiver reads; None for ``wire.MAX_PAYLOAD_BYTES``."""

    @property
    def message(self) -> str:
        return AVAILABILITY if self.payload is None else self.payload.__name__


_NOT_FOR_FRAMES = (
    "Not readable with a frame's credentials: the hub's ACL gives a frame only "
    "`frames/{frame_id}/#` and the `albums/{album_id}/#` of its albums. Scripts read it "
    "connected with the hub's credentials (or as an external broker's own user). "
)
_RETAINED_CLEARED = (
    "Retained; the hub clears it (an empty retained payload) when the frame is deleted."
)


def _topics() -> tuple[_Topic, ...]:
    """Every topic, in the document's order (made on call: ``wire`` imports this module
    before its payload types exist)."""
    return (
        _Topic(
            channel="frameStatus",
            address="frames/{frame_id}/status",
            payload=wire.FrameStatus,
            action="send",
            qos=0,
            summary="What the frame shows or did: displayed, downloading, synced, command answers.",
            description="Answers a command: a status carrying the command's `command_id` "
            "(`command_done`, or `error` with `error`). Firmware commands are answered on "
            "`frames/{frame_id}/ota` instead.",
        ),
        _Topic(
            channel="frameHeartbeat",
            address="frames/{frame_id}/heartbeat",
            payload=wire.Heartbeat,
            action="send",
            qos=0,
            retain=True,
            summary="Liveness, firmware version and applied sync version, every `interval_s`.",
            description="The hub counts a frame as back only on a heartbeat that is not the "
            "retained copy; the first one follows each (re)subscription. " + _RETAINED_CLEARED,
        ),
        _Topic(
            channel="frameTelemetry",
            address="frames/{frame_id}/telemetry",
            payload=wire.Telemetry,
            action="send",
            qos=1,
            summary="Named numeric samples (metrics) the frame measured.",
        ),
        _Topic(
            channel="frameOta",
            address="frames/{frame_id}/ota",
            payload=wire.OtaProgress,
            action="send",
            qos=1,
            summary="Progress of a firmware command (`update_firmware`, `rollback_firmware`).",
        ),
        _Topic(
            channel="frameAvailability",
            address="frames/{frame_id}/availability",
            payload=None,
            action="send",
            qos=1,
            retain=True,
            summary="`online` on every connect; `offline` on a clean switch-off and as the "
            "frame's last will.",
            description=_RETAINED_CLEARED,
        ),
        _Topic(
            channel="frameSync",
            address="frames/{frame_id}/sync",
            payload=wire.FrameSync,
            action="receive",
            qos=2,
            retain=True,
            summary="Everything the frame should show, and how (retained: the latest one counts).",
            description="Idempotent: a frame applies a sync whose `version` is newer than the one "
            "it has, then reports `synced` on its status and `sync_version` in its heartbeats. "
            + _RETAINED_CLEARED,
            max_bytes=wire.MAX_SYNC_BYTES,
        ),
        _Topic(
            channel="frameCommand",
            address="frames/{frame_id}/command",
            payload=wire.FrameCommand,
            action="receive",
            qos=2,
            summary="A command for the frame: next, show, restart, sync, update_firmware, "
            "rollback_firmware.",
            description="Delivered at least once: a frame answers a `command_id` it already "
            "knows again instead of running the command twice. Firmware commands carry the hub's "
            "Ed25519 signature over `signed_command_bytes` and are answered on "
            "`frames/{frame_id}/ota`; the others on `frames/{frame_id}/status`.",
        ),
        _Topic(
            channel="albumPhotoAdded",
            address="albums/{album_id}/photo_added",
            payload=wire.PhotoAdded,
            action="receive",
            qos=1,
            summary="A photo was added to one of the frame's albums.",
            description="A frame subscribes to `albums/{album_id}/#` of the albums its sync "
            "lists, and ignores leaves it does not know.",
        ),
        _Topic(
            channel="albumPhotoRemoved",
            address="albums/{album_id}/photo_removed",
            payload=wire.PhotoRemoved,
            action="receive",
            qos=1,
            summary="A photo was removed from one of the frame's albums (or deleted).",
        ),
        _Topic(
            channel="photoMetadataUpdated",
            address="photos/{file_id}/metadata_updated",
            payload=wire.MetadataUpdated,
            action="receive",
            qos=1,
            summary="The analysis of a photo (labels, faces, objects, EXIF facts) changed.",
            description=_NOT_FOR_FRAMES,
        ),
        _Topic(
            channel="hubAvailability",
            address=wire.HUB_AVAILABILITY,
            payload=None,
            action="receive",
            qos=1,
            retain=True,
            summary="`online` while the hub is connected; `offline` as its last will.",
            description=_NOT_FOR_FRAMES,
        ),
    )


_PARAMETERS = {
    "frame_id": "The frame's device id, as its pairing (`POST /api/v1/devices`) gave it.",
    "album_id": "An album's id (`POST /api/v1/albums`); a frame reads the albums its sync lists.",
    "file_id": "A photo's id (`POST /api/v1/storage/photos/upload`).",
}

_DESCRIPTION = """\
The MQTT topics between a framehub hub and its photo frames, and their JSON payloads.

**Point of view: a frame.** `send` operations are what a frame publishes, `receive` operations
what it subscribes to. A frame connects with the MQTT credentials its pairing gave it, keeps a
persistent session (clean session off, the `client_id` of its pairing) and leaves
`frames/{frame_id}/availability` = `offline` (QoS 1, retained) as its last will. It may publish
only under its own `frames/{frame_id}/` and read only that tree and `albums/{album_id}/#` of the
albums its sync lists.

Payloads are UTF-8 JSON, timestamps RFC 3339 UTC strings, ids opaque strings. Unknown fields are
ignored on both sides, so fields may be added but are never renamed. A payload larger than its
message's `x-max-bytes`, malformed, naming another frame than its topic, or on a topic outside
the frame's tree is dropped and counted; it never breaks the connection. Generated from the
msgspec Structs of the `wire` package; `GET /asyncapi.json` serves it (any valid token).
"""


def _availability_message() -> dict[str, Any]:
    return {
        "name": AVAILABILITY,
        "title": AVAILABILITY,
        "summary": "`online` or `offline` as plain text (retained).",
        "contentType": "text/plain",
        "payload": {"type": "string", "enum": [wire.ONLINE, wire.OFFLINE]},
        "x-max-bytes": wire.MAX_PAYLOAD_BYTES,
    }


def _json_message(name: str, schema: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    summary = str(schema.get("description", name)).split("\n\n", 1)[0].replace("\n", " ")
    return {
        "name": name,
        "title": name,
        "summary": summary,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{name}"},
        "x-max-bytes": max_bytes,
    }


def _parameters_of(address: str) -> dict[str, Any]:
    return {
        name: {"$ref": f"#/components/parameters/{name}"}
        for name in _PARAMETERS
        if "{" + name + "}" in address
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every MQTT topic the hub and its frames use.

    Deterministic (the same ``wire`` gives the same document, key order included), so the
    committed ``docs/asyncapi.json`` can be compared with it. Payload schemas are under
    ``components.schemas``, named after their Structs.
    """
    topics = _topics()
    structs = tuple(dict.fromkeys(t.payload for t in topics if t.payload is not None))
    _, schemas = msgspec.json.schema_components(structs, ref_template="#/components/schemas/{name}")
    messages: dict[str, Any] = {AVAILABILITY: _availability_message()}
    for topic in topics:
        if topic.payload is not None:
            limit = topic.max_bytes or wire.MAX_PAYLOAD_BYTES
            messages[topic.message] = _json_message(topic.message, schemas[topic.message], limit)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in topics:
        message_ref = {"$ref": f"#/channels/{topic.channel}/messages/{topic.message}"}
        channel: dict[str, Any] = {
            "address": topic.address,
            "title": topic.address,
            "summary": topic.summary,
            "messages": {topic.message: {"$ref": f"#/components/messages/{topic.message}"}},
        }
        if parameters := _parameters_of(topic.address):
            channel["parameters"] = parameters
        if topic.description:
            channel["description"] = topic.description
        channels[topic.channel] = channel
        name = topic.action + topic.channel[0].upper() + topic.channel[1:]
        operation: dict[str, Any] = {
            "action": topic.action,
            "channel": {"$ref": f"#/channels/{topic.channel}"},
            "summary": topic.summary,
            "messages": [message_ref],
            "bindings": {
                "mqtt": {
                    "qos": topic.qos,
                    "retain": topic.retain,
                    "bindingVersion": MQTT_BINDING_VERSION,
                }
            },
        }
        if topic.channel == "frameCommand":
            operation["reply"] = {
                "channel": {"$ref": "#/channels/frameStatus"},
                "messages": [{"$ref": "#/channels/frameStatus/messages/FrameStatus"}],
            }
        operations[name] = operation
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "framehub frames (MQTT)",
            "version": "1.0.0",
            "description": _DESCRIPTION,
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "hub": {
                "host": "{host}:{port}",
                "protocol": "mqtt",
                "protocolVersion": "3.1.1",
                "description": "The hub's broker: the managed Mosquitto, or an external "
                "broker in `external` mode.",
                "variables": {
                    "host": {
                        "default": "localhost",
                        "description": "The hub's host (`[mqtt] host` of its settings).",
                    },
                    "port": {
                        "default": str(DEFAULT_MQTT_PORT),
                        "description": "`[mqtt] port` of the hub's settings "
                        "(`FRAMEHUB_MQTT__PORT`).",
                    },
                },
                "security": [{"$ref": "#/components/securitySchemes/pairingCredentials"}],
                "bindings": {
                    "mqtt": {
                        "cleanSession": False,
                        "lastWill": {
                            "topic": "frames/{frame_id}/availability",
                            "qos": 1,
                            "message": wire.OFFLINE,
                            "retain": True,
                        },
                        "bindingVersion": MQTT_BINDING_VERSION,
                    }
                },
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": messages,
            "parameters": {
                name: {"description": description} for name, description in _PARAMETERS.items()
            },
            "securitySchemes": {
                "pairingCredentials": {
                    "type": "userPassword",
                    "description": "The `mqtt.username` and `mqtt.password` of the frame's "
                    "pairing (`POST /api/v1/devices`); the hub uses its own.",
                }
            },
        },
    }


def asyncapi_json() -> str:
    """``asyncapi_document`` as committed in ``docs/asyncapi.json``: indented JSON, one
    trailing newline (``run.py contracts`` writes it; a test compares the two)."""
    return json.dumps(asyncapi_document(), indent=2, ensure_ascii=False) + "\n"
