"""OTA end to end: the hub with its managed Mosquitto and real frame programs
(``run.py simulate``) updating their firmware into A/B slots.

The frames download the image over HTTP with their token, verify its SHA-256 and the hub's
Ed25519 signature, install, restart into the new slot and commit it after a health check, or
roll back. Faults are the simulator's switches (``--ota-fault INDEX:KIND[:TIMES]``). Tests
wait on the hub's commits and on the frames' event lines, never on the clock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

import wire
from actors.mqtt import BrokerAddress, GetBrokerAddress
from actors.ota import load_signing_key
from tests.harness.hub import DEVICES, Hub, User, running_hub
from tests.harness.hub_process import hub_process
from tests.harness.journal import poll
from tests.harness.mqtt import connect
from tests.harness.ota import CAMPAIGNS, act, campaign, firmware, new_campaign, until_campaign
from tests.harness.replies import body_of
from tests.harness.simulator import FrameEvent, simulate

MODEL = "sim-frame"  # what the simulator pairs its frames as, hardware version "1.0"
FACTORY = "1.0.0"
NEW = "2.0.0"
HUB_SETTINGS = {"FRAMES__HEARTBEAT_INTERVAL_S": "1", "OTA__PROGRESS_TIMEOUT_S": "30"}
FRAME_OPTIONS = ("--no-render", "--health-check-s", "1")
WAIT_S = 60.0

View = dict[str, Any]


def image() -> bytes:
    return os.urandom(256 * 1024)


def counts(view: View) -> dict[str, int]:
    seen: dict[str, int] = {}
    for device in view["devices"]:
        seen[device["state"]] = seen.get(device["state"], 0) + 1
    return seen


def state_is(*states: str) -> Callable[[View], bool]:
    return lambda view: view["state"] in states


def ota_event(frame_id: str, state: str) -> Callable[[FrameEvent], bool]:
    return lambda e: e["event"] == "ota" and e["frame_id"] == frame_id and e["state"] == state


def ota_event_any(state: str) -> Callable[[FrameEvent], bool]:
    return lambda e: e["event"] == "ota" and e["state"] == state


async def firmware_versions(hub: Hub, admin: User, frame_ids: list[str]) -> dict[str, str | None]:
    """What the registry records per frame (``GET /devices/{id}``: ``firmware_version``)."""
    versions: dict[str, str | None] = {}
    for frame_id in frame_ids:
        device = body_of(await hub.client.get(f"{DEVICES}/{frame_id}", headers=admin.auth), 200)
        versions[frame_id] = device["firmware_version"]
    return versions


async def registry_versions(hub: Hub, frame_ids: list[str]) -> dict[str, str | None]:
    """The registry's own column (set only by ``update.completed`` / ``update.rolled_back``)."""
    marks = ",".join("?" * len(frame_ids))
    rows = await hub.store.fetch_all(
        f"SELECT device_id, firmware_version FROM devices WHERE device_id IN ({marks})",
        tuple(frame_ids),
    )
    return dict(rows)


async def test_a_staged_campaign_over_twenty_frames(tmp_path: Path) -> None:
    """Batches of 5 with a 20% failure threshold: two spoiled updates in the first batch pause
    it; resume finishes the rest; retry-failed updates the two; rollback brings all back."""
    faults = ("--ota-fault", "1:failed_install:1", "--ota-fault", "3:crash_after_boot:1")
    async with running_hub(tmp_path / "hub", **HUB_SETTINGS) as hub:
        admin = await hub.new_user(admin=True)
        sim_dir = tmp_path / "sim"
        options = (*FRAME_OPTIONS, *faults)
        async with simulate(hub.address.base_url, admin.token, sim_dir, 20, *options) as frames:
            ids = frames.frame_ids()
            fw = await firmware(hub, admin, image(), version=NEW, model=MODEL, min_hw_version="1.0")
            made = await new_campaign(
                hub,
                admin,
                firmware_id=fw["firmware_id"],
                models=[MODEL],
                batch_size=5,
                failure_threshold_percent=20,
                start=True,
            )
            campaign_id = made["campaign_id"]
            assert [d["device_id"] for d in made["devices"]] == ids  # pairing order
            assert [d["batch"] for d in made["devices"]] == [1] * 5 + [2] * 5 + [3] * 5 + [4] * 5

            # The first spoiled update (1 of 5 released = 20%) pauses the campaign; the batch's
            # other updates go on and are recorded; batch 2 gets nothing.
            def first_batch_settled(view: View) -> bool:
                final = ("completed", "failed", "rolled_back")
                return view["state"] == "paused" and all(
                    d["state"] in final for d in view["devices"][:5]
                )

            view = await until_campaign(hub, admin, campaign_id, first_batch_settled, WAIT_S)
            by_id = {d["device_id"]: d for d in view["devices"]}
            assert by_id[ids[1]]["state"] == "failed"
            assert "install" in by_id[ids[1]]["error"]
            assert by_id[ids[3]]["state"] == "rolled_back"
            assert [by_id[i]["state"] for i in (ids[0], ids[2], ids[4])] == ["completed"] * 3
            assert all(by_id[i]["state"] == "queued" for i in ids[5:])
            paused = await hub.events("campaign.paused")
            assert len(paused) == 1 and paused[0].automatic
            assert not any(e["event"] == "ota" and e["frame_id"] in ids[5:] for e in frames.events)
            await frames.wait_for(ota_event(ids[3], "rolled_back"))

            # Resume: the failures are acknowledged and the other three batches go through.
            body_of(await act(hub, admin, campaign_id, "resume"), 200)
            view = await until_campaign(hub, admin, campaign_id, state_is("completed"), WAIT_S)
            assert counts(view) == {"completed": 18, "failed": 1, "rolled_back": 1}
            versions = await firmware_versions(hub, admin, ids)
            assert {versions[i] for i in ids if i not in (ids[1], ids[3])} == {NEW}
            assert versions[ids[1]] == versions[ids[3]] == FACTORY
            await hub.until(
                lambda: _all_at(hub, [i for i in ids if i not in (ids[1], ids[3])], NEW)
            )

            # Retry-failed: each fault spoiled one attempt only, so the second one works.
            body_of(await act(hub, admin, campaign_id, "retry-failed"), 200)

            def all_completed(view: View) -> bool:
                return view["state"] == "completed" and counts(view) == {"completed": 20}

            view = await until_campaign(hub, admin, campaign_id, all_completed, WAIT_S)
            attempts = {d["device_id"]: d["attempts"] for d in view["devices"]}
            assert attempts[ids[1]] == attempts[ids[3]] == 2
            assert set((await firmware_versions(hub, admin, ids)).values()) == {NEW}
            completed = await hub.events("update.completed")
            assert len(completed) == 20 and {e.device_id for e in completed} == set(ids)

            # Rollback: every frame goes back to the firmware it ran before.
            body_of(await act(hub, admin, campaign_id, "rollback"), 200)
            view = await until_campaign(hub, admin, campaign_id, state_is("rolled_back"), WAIT_S)
            assert counts(view) == {"rolled_back": 20}
            initiated = await hub.events("rollback.initiated")
            assert len(initiated) == 1 and set(initiated[0].device_ids) == set(ids)
            await hub.until(lambda: _all_at(hub, ids, FACTORY))  # update.rolled_back handled
            for frame_id in ids:
                await frames.wait_for(ota_event(frame_id, "rolled_back"))
            assert set((await firmware_versions(hub, admin, ids)).values()) == {FACTORY}


async def test_an_offline_frame_is_updated_when_it_returns_and_cancel_stops_later_batches(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path / "hub", **HUB_SETTINGS) as hub:
        admin = await hub.new_user(admin=True)
        away_dir = tmp_path / "away"
        async with simulate(hub.address.base_url, admin.token, away_dir, 1, *FRAME_OPTIONS) as s:
            away = s.frame_ids()[0]
        await hub.until(lambda: _offline(hub, away))  # its last will or its silence

        fw = await firmware(hub, admin, image(), version=NEW, model=MODEL, min_hw_version="1.0")
        # Slow health checks keep the second batch in flight long enough to cancel it.
        options = ("--no-render", "--health-check-s", "4")
        async with simulate(hub.address.base_url, admin.token, tmp_path / "home", 6, *options) as s:
            home = s.frame_ids()
            made = await new_campaign(
                hub,
                admin,
                firmware_id=fw["firmware_id"],
                device_ids=[away, *home],
                batch_size=2,
                start=True,
            )
            campaign_id = made["campaign_id"]

            # Batch 1 is the offline frame and home[0]: home[0] completes, the other stays
            # queued (no command, no timer), so batch 2 waits.
            await s.wait_for(ota_event(home[0], "completed"))
            view = await campaign(hub, admin, campaign_id)
            assert view["devices"][0]["state"] == "queued"
            assert view["current_batch"] == 1

            # It comes back: it is updated, and the rollout goes on.
            async with simulate(
                hub.address.base_url, admin.token, away_dir, 1, *FRAME_OPTIONS
            ) as returned:
                await returned.wait_for(ota_event(away, "completed"))

            # Batch 2 in flight (installing or in its health check): cancel.
            await s.wait_for(ota_event(home[2], "installing"))
            cancelled = body_of(await act(hub, admin, campaign_id, "cancel"), 200)
            assert cancelled["state"] == "cancelled"

            def in_flight_done(view: View) -> bool:
                return all(d["state"] != "installing" for d in view["devices"]) and all(
                    d["state"] not in ("notified", "downloading", "downloaded")
                    for d in view["devices"]
                )

            view = await until_campaign(hub, admin, campaign_id, in_flight_done, WAIT_S)
            by_id = {d["device_id"]: d["state"] for d in view["devices"]}
            assert by_id[away] == by_id[home[0]] == "completed"
            # The batch in flight finishes for real (a frame mid-install is not abandoned);
            # the later batches are cancelled and never hear of the update.
            assert by_id[home[1]] == by_id[home[2]] == "completed"
            assert [by_id[i] for i in home[3:]] == ["cancelled"] * 3
            later = set(home[3:])
            assert not any(e["event"] == "ota" and e["frame_id"] in later for e in s.events)
            assert len(await hub.events("update.cancelled")) == 1


async def _all_at(hub: Hub, frame_ids: list[str], version: str) -> bool:
    return set((await registry_versions(hub, frame_ids)).values()) == {version}


async def _offline(hub: Hub, frame_id: str) -> bool:
    row = await hub.store.fetch_one("SELECT active FROM devices WHERE device_id = ?", (frame_id,))
    return row is not None and not row[0]


async def test_a_real_frame_refuses_tampered_and_foreign_signed_commands(tmp_path: Path) -> None:
    async with running_hub(tmp_path / "hub", **HUB_SETTINGS) as hub:
        admin = await hub.new_user(admin=True)
        sim_dir = tmp_path / "sim"
        async with simulate(
            hub.address.base_url, admin.token, sim_dir, 1, *FRAME_OPTIONS
        ) as frames:
            frame_id = frames.frame_ids()[0]
            data = image()
            fw = await firmware(hub, admin, data, version=NEW, model=MODEL, min_hw_version="1.0")
            key = load_signing_key(hub.data_dir)  # the hub's own key, as the OTA actor signs
            url = f"{hub.address.base_url}/api/v1/firmware/{fw['firmware_id']}/download"
            args = wire.CommandArgs(
                url=url, sha256=fw["sha256"], size=len(data), version=NEW, campaign_id="c"
            )
            signed = msgspec.structs.replace(
                args, signature=key.sign(frame_id, "cmd-1", "update_firmware", args)
            )
            tampered = msgspec.structs.replace(signed, sha256="0" * 64)
            foreign = msgspec.structs.replace(
                args,
                signature=type(key).generate().sign(frame_id, "cmd-2", "update_firmware", args),
            )
            address: BrokerAddress = await hub.system.lookup("/infra/broker").ask(
                GetBrokerAddress()
            )
            topic = wire.frame_topic(frame_id, "command")
            async with connect(
                hub.system, address.host, address.port, address.hub_username, address.hub_password
            ) as as_hub:
                for command_id, command_args in (("cmd-1", tampered), ("cmd-2", foreign)):
                    command = wire.FrameCommand(
                        command_id=command_id,
                        command="update_firmware",
                        args=command_args,
                        timestamp="2026-11-22T10:00:00Z",
                    )
                    await as_hub.publish(topic, msgspec.json.encode(command), qos=2)

                def refused(command_id: str) -> Callable[[FrameEvent], bool]:
                    return lambda e: (
                        e["event"] == "ota"
                        and e["state"] == "failed"
                        and e.get("command_id", command_id) == command_id
                        and "signature" in e.get("error", "")
                    )

                await frames.wait_for(refused("cmd-1"))
                await frames.wait_for(refused("cmd-2"))
                assert not any(
                    e["event"] == "ota" and e["state"] in ("downloading", "installing")
                    for e in frames.events
                )
                # The genuine command goes through: the refusals were the signature's doing.
                genuine = wire.FrameCommand(
                    command_id="cmd-3",
                    command="update_firmware",
                    args=msgspec.structs.replace(
                        args, signature=key.sign(frame_id, "cmd-3", "update_firmware", args)
                    ),
                    timestamp="2026-11-22T10:00:00Z",
                )
                await as_hub.publish(topic, msgspec.json.encode(genuine), qos=2)
                await frames.wait_for(ota_event(frame_id, "completed"))


async def test_a_campaign_survives_the_hub_being_killed_mid_rollout(tmp_path: Path) -> None:
    settings = {**HUB_SETTINGS, "HTTP__RATE_LIMIT_PER_MINUTE": "100000"}
    async with hub_process(tmp_path / "hub", **settings) as hub, trio.open_nursery():
        token = hub.admin_token()
        auth = {"Authorization": f"Bearer {token}"}
        options = ("--no-render", "--health-check-s", "2")
        async with simulate(hub.base_url, token, tmp_path / "sim", 6, *options) as frames:
            ids = frames.frame_ids()
            async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as http:
                response = await http.post(
                    "/api/v1/firmware",
                    headers=auth,
                    files={"file": ("fw.bin", image(), "application/octet-stream")},
                    data={"version": NEW, "model": MODEL, "min_hw_version": "1.0"},
                )
                fw = body_of(response, 201)
                body = {
                    "name": "kill",
                    "firmware_id": fw["firmware_id"],
                    "models": [MODEL],
                    "batch_size": 2,
                    "start": True,
                }
                made = body_of(await http.post(CAMPAIGNS, json=body, headers=auth), 201)
                campaign_id = made["campaign_id"]

                # Killed while the first batch is in its health check (mid-update).
                await frames.wait_for(
                    lambda e: e["event"] == "ota" and e["state"] == "health_check"
                )
                await hub.kill()
                await hub.start()

                views: list[View] = []

                async def completed() -> bool:
                    reply = await http.get(f"{CAMPAIGNS}/{campaign_id}", headers=auth)
                    views[:] = [body_of(reply, 200)]
                    return bool(views[0]["state"] == "completed")

                # The campaign completes, and every frame ends on the new firmware: its boot
                # state (on its own disk) has committed the update and answered it.
                with trio.fail_after(WAIT_S):
                    await poll(completed, interval=0.2)  # another process: ask it
                assert counts(views[0]) == {"completed": 6}
                for frame_id in ids:
                    boot = json.loads(
                        (
                            frames.data_dir / "frames" / frame_id / "firmware" / "boot.json"
                        ).read_text()
                    )
                    assert boot["trial"] is False and boot["pending"] is None, boot
                    assert [(a["state"], a["version"]) for a in boot["answers"]] == [
                        ("completed", NEW)
                    ], boot
                for frame_id in ids:
                    reply = await http.get(f"{DEVICES}/{frame_id}", headers=auth)
                    assert body_of(reply, 200)["firmware_version"] == NEW
