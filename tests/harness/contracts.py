"""The contracts the project publishes, read as an outside client reads them.

``docs/asyncapi.json`` is loaded as committed (not regenerated), so a payload that no longer
matches the published document fails even when the generator moved with it. The official
AsyncAPI 3.0.0 JSON Schema is vendored in ``asyncapi/`` next to this module (see its README) so
the checks run offline.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema_rs

from tests.harness import ROOT

DOCS = ROOT / "docs"
ASYNCAPI_SCHEMA = Path(__file__).parent / "asyncapi" / "asyncapi-3.0.0.schema.json"


def committed_asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DOCS / "asyncapi.json").read_text(encoding="utf-8"))
    return document


def asyncapi_validator() -> jsonschema_rs.Validator:
    """The official AsyncAPI 3.0.0 schema (draft-07) as a validator."""
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    return jsonschema_rs.Draft7Validator(schema)


def closed(schema: Any) -> Any:
    """``schema`` with every object that lists its ``properties`` refusing any other one.

    The published schemas stay open (readers ignore unknown fields, so fields can be added);
    the tests close them so that a field a frame sends or receives and the document does not
    name, e.g. after a rename, is an error instead of passing unnoticed.
    """
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


class Channel:
    """One channel of the document: its address as a pattern and its message's payload."""

    def __init__(self, name: str, address: str, message: dict[str, Any], schemas: Any) -> None:
        self.name = name
        self.address = address
        self.content_type: str = message["contentType"]
        self.max_bytes: int = message["x-max-bytes"]
        parts = re.split(r"\{([a-z_]+)\}", address)
        self.pattern = re.compile(
            "".join(re.escape(p) if i % 2 == 0 else "[^/]+" for i, p in enumerate(parts))
        )
        # The payload's $refs point into the document: validate against a root holding them.
        root = {**message["payload"], "components": {"schemas": closed(schemas)}}
        self.validator = jsonschema_rs.validator_for(root)

    def errors(self, payload: bytes) -> list[str]:
        """Why ``payload`` is not a valid message of this channel (empty when it is)."""
        if len(payload) > self.max_bytes:
            return [f"{len(payload)} bytes, over {self.max_bytes}"]
        try:
            instance: Any
            if self.content_type == "application/json":
                instance = json.loads(payload)
            else:
                instance = payload.decode("utf-8")
        except ValueError as error:
            return [f"unreadable as {self.content_type}: {error}"]
        return [
            f"{'/'.join(map(str, error.instance_path)) or '(payload)'}: {error.message}"
            for error in self.validator.iter_errors(instance)
        ]


class MqttContract:
    """The channels of an AsyncAPI document, to look topics up and check payloads."""

    def __init__(self, document: dict[str, Any]) -> None:
        components = document["components"]
        self.channels: dict[str, Channel] = {}
        for name, channel in document["channels"].items():
            (reference,) = channel["messages"].values()
            message = components["messages"][reference["$ref"].rsplit("/", 1)[1]]
            self.channels[name] = Channel(name, channel["address"], message, components["schemas"])

    def channel_of(self, topic: str) -> Channel | None:
        for channel in self.channels.values():
            if channel.pattern.fullmatch(topic):
                return channel
        return None
