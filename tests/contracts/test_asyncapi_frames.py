"""What a real frame sends and receives is what ``docs/asyncapi.json`` publishes.

The hub runs with its managed Mosquitto and a real frame program (``run.py simulate``) pairs,
shows an album, gets a photo added and removed, runs a command and a firmware update, reports
telemetry and switches off. A client with the hub's credentials subscribed to ``#`` sees every
message on the broker; each must be on a channel of the committed document, and its payload
must validate against that channel's message with every object closed to fields the document
does not name (``tests.harness.contracts.closed``): a payload field renamed, added or retyped
on either side fails here until the document is regenerated and committed.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness.contracts import MqttContract, committed_asyncapi
from tests.harness.hub import DEVICES, Hub, User, running_hub
from tests.harness.mqtt import Client
from tests.harness.ota import firmware, image, new_campaign, until_campaign
from tests.harness.photos import jpeg
from tests.harness.replies import body_of, problem
from tests.harness.simulator import Simulator, simulate
from tests.harness.telemetry import as_hub

HUB_SETTINGS = {"FRAMES__HEARTBEAT_INTERVAL_S": "1", "OTA__PROGRESS_TIMEOUT_S": "30"}
FRAME_OPTIONS = ("--no-render", "--health-check-s", "1")
MODEL = "sim-frame"  # what the simulator pairs its frames as, hardware version "1.0"
WAIT_S = 60.0


async def new_album(hub: Hub, user: User) -> str:
    response = await hub.client.post("/api/v1/albums", json={"name": "Hall"}, headers=user.auth)
    album_id: str = body_of(response, 201)["album_id"]
    return album_id


async def exercise(hub: Hub, admin: User, alice: User, frames: Simulator, frame_id: str) -> None:
    """Everything a frame takes part in, each step awaited where the frame shows it."""
    album = await new_album(hub, alice)
    assigned = await hub.client.put(
        f"{DEVICES}/{frame_id}/albums", json={"album_ids": [album]}, headers=admin.auth
    )
    body_of(assigned, 200)
    upload = await hub.upload(alice, jpeg(1200, 800, seed=7), metadata={"album_id": album})
    file_id: str = body_of(upload, 201)["file_id"]
    await frames.wait_for(lambda e: e["event"] == "displayed" and e.get("file_id") == file_id)

    sent = await hub.client.post(
        f"{DEVICES}/{frame_id}/commands",
        json={"command": "show", "args": {"file_id": file_id}},
        headers=admin.auth,
    )
    command_id = body_of(sent, 202)["command_id"]
    await frames.wait_for(lambda e: e.get("command_id") == command_id)

    made = await firmware(hub, admin, image(), version="2.0.0", model=MODEL, min_hw_version="1.0")
    rollout = await new_campaign(
        hub, admin, firmware_id=made["firmware_id"], models=[MODEL], batch_size=1, start=True
    )
    await until_campaign(
        hub, admin, rollout["campaign_id"], lambda view: view["state"] == "completed", WAIT_S
    )

    removed = await hub.client.delete(
        f"/api/v1/albums/{album}/photos/{file_id}", headers=alice.auth
    )
    assert removed.status_code in (200, 204), removed.text


def seen_channels(contract: MqttContract, observer: Client) -> set[str]:
    return {
        channel.name
        for topic, _, _ in observer.received
        if (channel := contract.channel_of(topic)) is not None
    }


async def test_every_message_of_a_real_frame_matches_the_published_document(
    tmp_path: Path,
) -> None:
    contract = MqttContract(committed_asyncapi())
    async with running_hub(tmp_path / "hub", **HUB_SETTINGS) as hub:
        problem(await hub.client.get("/asyncapi.json"), 401)
        admin, alice = await hub.new_user("root", admin=True), await hub.new_user("alice")
        served = await hub.client.get("/asyncapi.json", headers=alice.auth)
        assert served.status_code == 200 and served.json() == committed_asyncapi()

        async with as_hub(hub) as observer:
            await observer.subscribe("#", qos=2)
            base_url = hub.address.base_url
            async with simulate(
                base_url, admin.token, tmp_path / "sim", 1, *FRAME_OPTIONS
            ) as frames:
                (frame_id,) = frames.frame_ids()
                await exercise(hub, admin, alice, frames, frame_id)
                await observer.wait_until(
                    lambda _: "frameTelemetry" in seen_channels(contract, observer), WAIT_S
                )
            # Switched off: the frame says ``offline`` itself.
            await observer.wait_until(
                lambda received: any(
                    topic.endswith("/availability") and payload == b"offline"
                    for topic, payload, _ in received
                    if topic != "hub/availability"
                )
            )

    everything = set(contract.channels)
    assert seen_channels(contract, observer) == everything, "not every channel was exercised"
    problems = []
    for topic, payload, retained in observer.received:
        channel = contract.channel_of(topic)
        if channel is None:
            problems.append(f"{topic}: no channel of docs/asyncapi.json")
        elif not payload and retained:
            continue  # a retained message cleared
        else:
            problems.extend(f"{topic}: {error}" for error in channel.errors(payload))
    assert problems == [], "\n".join(problems)

    # And the check bites: a heartbeat as the frame sent it, with one field renamed, fails.
    heartbeat = next(p for t, p, _ in observer.received if t.endswith("/heartbeat") and p)
    renamed = json.loads(heartbeat)
    renamed["uptime"] = renamed.pop("uptime_s")
    assert contract.channels["frameHeartbeat"].errors(json.dumps(renamed).encode()) != []
    print(f"\n{len(observer.received)} messages on {len(everything)} channels match the document")
