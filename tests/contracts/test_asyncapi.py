"""``docs/asyncapi.json``: generated from ``wire``, committed, valid AsyncAPI 3.0.0, and naming
every topic the hub and the frame program use."""

from __future__ import annotations

import copy

import wire
from tests.harness.contracts import DOCS, MqttContract, asyncapi_validator, committed_asyncapi


def test_the_committed_asyncapi_document_is_the_generated_one() -> None:
    committed = (DOCS / "asyncapi.json").read_text(encoding="utf-8")
    assert committed == wire.asyncapi_json(), "stale: run `make contracts`"


def test_the_asyncapi_document_is_valid_against_the_official_schema() -> None:
    validator = asyncapi_validator()
    document = committed_asyncapi()
    assert [error.message for error in validator.iter_errors(document)] == []

    # The schema really is applied: a QoS MQTT does not have, a missing channel are refused.
    broken = copy.deepcopy(document)
    broken["operations"]["sendFrameStatus"]["bindings"]["mqtt"]["qos"] = 3
    assert not validator.is_valid(broken)
    broken = copy.deepcopy(document)
    del broken["operations"]["receiveFrameSync"]["channel"]
    assert not validator.is_valid(broken)


def test_every_topic_of_the_hub_and_the_frames_is_a_channel_with_one_operation() -> None:
    document = committed_asyncapi()
    contract = MqttContract(document)
    frame = "3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c1e"
    used = {  # the hub subscribes to FRAME_LEAVES_IN, frames to FRAME_LEAVES_OUT
        **{wire.frame_topic(frame, leaf): "send" for leaf in wire.FRAME_LEAVES_IN},
        **{wire.frame_topic(frame, leaf): "receive" for leaf in wire.FRAME_LEAVES_OUT},
        wire.album_topic("album-1", "photo_added"): "receive",
        wire.album_topic("album-1", "photo_removed"): "receive",
        "photos/file-1/metadata_updated": "receive",
        wire.HUB_AVAILABILITY: "receive",
    }
    actions: dict[str, list[str]] = {}
    for operation in document["operations"].values():
        channel = operation["channel"]["$ref"].rsplit("/", 1)[1]
        actions.setdefault(channel, []).append(operation["action"])
        assert operation["bindings"]["mqtt"]["qos"] in (0, 1, 2)
    for topic, action in used.items():
        channel = contract.channel_of(topic)
        assert channel is not None, f"{topic} is not in docs/asyncapi.json"
        assert actions[channel.name] == [action], topic
    assert set(actions) == set(document["channels"])
