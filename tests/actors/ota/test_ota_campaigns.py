"""OTA campaigns over the real hub and its managed Mosquitto, with scripted frames.

Each frame is played by a test MQTT client with the frame's own credentials: it takes the
hub's signed firmware commands on ``frames/<id>/command`` (checking the signature with the
key its pairing showed, as a real frame does) and reports on ``frames/<id>/ota`` what the test
tells it to. The campaign is steered and observed over HTTP; journal events are read from the
hub's database.
"""

from __future__ import annotations

import hashlib
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import msgspec

from actors.ota import GetOtaStats, OtaStats
from tests.harness.hub import DEVICES, Hub, User, running_hub
from tests.harness.ota import (
    CAMPAIGNS,
    KeyedFrame,
    ScriptedFrame,
    act,
    campaign,
    firmware,
    image,
    new_campaign,
    pair,
    presence,
    scripted_frame,
    states,
    until_campaign,
    verifies,
)
from tests.harness.replies import body_of, problem


async def frames_online(
    stack: AsyncExitStack, hub: Hub, frames: list[KeyedFrame]
) -> list[ScriptedFrame]:
    """Every frame connected and known online to the OTA actor."""
    scripted = [await stack.enter_async_context(scripted_frame(hub, f)) for f in frames]

    async def all_online() -> bool:
        return all([await presence(hub, f.device_id) for f in frames])

    await hub.until(all_online)
    return scripted


async def stats(hub: Hub) -> OtaStats:
    reply: OtaStats = await hub.refs.ota.ask(GetOtaStats())
    return reply


async def device_view(hub: Hub, admin: User, device_id: str) -> dict[str, Any]:
    return body_of(await hub.client.get(f"{DEVICES}/{device_id}", headers=admin.auth), 200)


def command_states(view: dict[str, Any], *device_ids: str) -> list[str]:
    shown = states(view)
    return [shown[d] for d in device_ids]


async def test_a_campaign_rolls_out_signed_commands_batch_by_batch(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, AsyncExitStack() as stack:
        admin = await hub.new_user("admin", admin=True)
        frames = [await pair(hub, admin, f"f{i}", hw_version=f"rev{2 + i % 2}") for i in range(4)]
        other_model = await pair(hub, admin, "other", model="FH-20")
        too_old = await pair(hub, admin, "old", hw_version="rev1")
        data = image(50_000)
        stored = await firmware(hub, admin, data, version="2.0.0", min_hw_version="rev2")
        scripted = await frames_online(stack, hub, frames)
        a, b, c, d = scripted

        created = await new_campaign(
            hub,
            admin,
            firmware_id=stored["firmware_id"],
            models=["FH-10"],
            device_ids=[other_model.device_id],
            batch_size=2,
        )
        campaign_id = created["campaign_id"]
        order = [f.device_id for f in frames]
        assert [t["device_id"] for t in created["devices"]] == order  # pairing order, filtered
        assert too_old.device_id not in states(created)
        assert (created["state"], created["batches"], created["targets"]) == ("draft", 2, 4)
        assert created["counts"]["queued"] == 4
        (announced,) = await hub.events("campaign.created")
        assert (announced.campaign_id, announced.device_ids) == (campaign_id, order)
        assert a.commands() == []

        started = body_of(await act(hub, admin, campaign_id, "start"), 200)
        assert (started["state"], started["current_batch"]) == ("running", 1)
        first = await a.command()
        assert first.command == "update_firmware"
        args = first.args
        download = f"/api/v1/firmware/{stored['firmware_id']}/download"
        assert args.url == f"{hub.address.base_url}{download}"
        assert (args.sha256, args.size, args.version, args.campaign_id) == (
            stored["sha256"],
            50_000,
            "2.0.0",
            campaign_id,
        )
        # The signature binds the command to this frame, id and arguments.
        assert verifies(a.frame.public_key, a.device_id, first)
        for tampered in (
            msgspec.structs.replace(first, args=msgspec.structs.replace(args, version="6.6.6")),
            msgspec.structs.replace(first, args=msgspec.structs.replace(args, sha256="0" * 64)),
            msgspec.structs.replace(first, command_id="forged"),
        ):
            assert not verifies(a.frame.public_key, a.device_id, tampered)
        assert not verifies(b.frame.public_key, b.device_id, first)  # another frame's command
        # The link works with the frame's own token and serves the signed bytes.
        downloaded = await hub.client.get(args.url, headers=a.frame.auth)
        assert hashlib.sha256(downloaded.content).hexdigest() == args.sha256

        second = await b.command()
        await a.report(first, "downloading", progress=0.5)
        await a.report(first, "downloading", progress=0.25)  # a step back: ignored
        await a.update(first)
        view = await until_campaign(
            hub, admin, campaign_id, lambda v: states(v)[a.device_id] == "completed"
        )
        # One of two completed: with the default success threshold (all), batch 2 waits.
        assert command_states(view, c.device_id, d.device_id) == ["queued", "queued"]
        assert (c.commands(), d.commands()) == ([], [])
        await b.update(second)
        view = await until_campaign(
            hub, admin, campaign_id, lambda v: v["current_batch"] == 2 and v["counts"]["notified"]
        )
        third, fourth = await c.command(), await d.command()
        assert verifies(d.frame.public_key, d.device_id, fourth)
        await c.update(third)
        await d.update(fourth)
        await d.report(fourth, "completed")  # a duplicate: ignored, harmless
        view = await until_campaign(hub, admin, campaign_id, lambda v: v["state"] == "completed")
        assert view["counts"]["completed"] == 4
        assert [t["attempts"] for t in view["devices"]] == [1, 1, 1, 1]
        (done,) = await hub.events("campaign.completed")
        assert (done.completed, done.failed, done.cancelled) == (4, 0, 0)
        completed = await hub.events("update.completed")
        assert sorted(e.device_id for e in completed) == sorted(order)

        # The registry recorded the new version (these frames send no heartbeat, so the
        # device's firmware_version is the registry's).
        async def recorded() -> bool:
            shown = [await device_view(hub, admin, i) for i in order]
            return [v["firmware_version"] for v in shown] == ["2.0.0"] * 4

        await hub.until(recorded)

        history = body_of(
            await hub.client.get(
                f"{CAMPAIGNS}/{campaign_id}/devices/{a.device_id}", headers=admin.auth
            ),
            200,
        )
        assert [h["state"] for h in history["history"]] == [
            "queued",
            "notified",
            "downloading",
            "downloaded",
            "installing",
            "completed",
        ]
        stamps = [h["at"] for h in history["history"]]
        assert stamps == sorted(stamps)
        assert history["history"][1]["command_id"] == first.command_id
        ota = await stats(hub)
        assert ota.ignored_progress.get("not_forward", 0) >= 1  # the step back
        assert ota.ignored_progress.get("unknown_command", 0) >= 1  # the late duplicate
        assert ota.in_flight == 0


async def test_failures_pause_the_campaign_until_resumed_and_failed_frames_can_retry(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub, AsyncExitStack() as stack:
        admin = await hub.new_user("admin", admin=True)
        frames = [await pair(hub, admin, f"f{i}") for i in range(6)]
        stored = await firmware(hub, admin, image())
        a, b, c, d, e, f = await frames_online(stack, hub, frames)
        view = await new_campaign(
            hub,
            admin,
            firmware_id=stored["firmware_id"],
            device_ids=[x.device_id for x in (a, b, c, d, e, f)],
            batch_size=2,
            failure_threshold_percent=20,
            start=True,
        )
        campaign_id = view["campaign_id"]
        first_a, first_b = await a.command(), await b.command()
        await a.update(first_a)
        await b.report(first_b, "downloading", progress=0.1)
        await b.report(first_b, "failed", error="sha256 mismatch")

        # 1 of the 2 released frames failed: 50% >= 20%, the campaign pauses itself.
        view = await until_campaign(hub, admin, campaign_id, lambda v: v["state"] == "paused")
        assert "1 of 2 released frames failed (50%)" in view["pause_reason"]
        (paused,) = await hub.events("campaign.paused")
        assert paused.automatic and paused.reason == view["pause_reason"]
        (failed,) = await hub.events("update.failed")
        assert (failed.device_id, failed.error, failed.rolled_back) == (
            b.device_id,
            "sha256 mismatch",
            False,
        )
        assert states(view)[b.device_id] == "failed"
        assert [x["error"] for x in view["devices"] if x["device_id"] == b.device_id] == [
            "sha256 mismatch"
        ]
        assert (c.commands(), d.commands()) == ([], [])
        problem(await act(hub, admin, campaign_id, "pause"), 409)

        # Resume: the failure is acknowledged, batch 1 is over, batch 2 goes out.
        resumed = body_of(await act(hub, admin, campaign_id, "resume"), 200)
        assert resumed["state"] == "running"
        assert resumed["current_batch"] == 2
        started = await hub.events("campaign.started")
        assert [s.resumed for s in started] == [False, True]
        first_c, first_d = await c.command(), await d.command()
        await c.update(first_c)
        await d.report(first_d, "installing")
        await d.report(first_d, "rolled_back", error="health check failed")
        view = await until_campaign(hub, admin, campaign_id, lambda v: v["state"] == "paused")
        assert "1 of 4 released frames failed (25%)" in view["pause_reason"]
        rolled = (await hub.events("update.failed"))[-1]
        assert (rolled.device_id, rolled.rolled_back) == (d.device_id, True)
        assert states(view)[d.device_id] == "rolled_back"
        assert e.commands() == []

        # Retry the failed ones: new commands, a second attempt each; the old command is stale.
        retried = body_of(await act(hub, admin, campaign_id, "retry-failed"), 200)
        assert retried["state"] == "running"
        second_b, second_d = await b.command(1), await d.command(1)
        assert second_b.command_id != first_b.command_id
        assert verifies(d.frame.public_key, d.device_id, second_d)
        await b.report(first_b, "completed")  # the old command: ignored
        view = await until_campaign(
            hub, admin, campaign_id, lambda v: states(v)[b.device_id] == "notified"
        )
        attempts = {x["device_id"]: x["attempts"] for x in view["devices"]}
        assert (attempts[b.device_id], attempts[d.device_id], attempts[a.device_id]) == (2, 2, 1)
        await b.update(second_b)
        await d.update(second_d)
        first_e, first_f = await e.command(), await f.command()
        await e.update(first_e)
        await f.update(first_f)
        view = await until_campaign(hub, admin, campaign_id, lambda v: v["state"] == "completed")
        assert view["counts"]["completed"] == 6
        history = body_of(
            await hub.client.get(
                f"{CAMPAIGNS}/{campaign_id}/devices/{d.device_id}", headers=admin.auth
            ),
            200,
        )
        assert [h["state"] for h in history["history"]] == [
            "queued",
            "notified",
            "installing",
            "rolled_back",
            "queued",
            "notified",
            "downloading",
            "downloaded",
            "installing",
            "completed",
        ]
        problem(await act(hub, admin, campaign_id, "retry-failed"), 409)  # none failed


async def test_a_failure_count_threshold_and_a_short_batch_both_pause(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, AsyncExitStack() as stack:
        admin = await hub.new_user("admin", admin=True)
        frames = [await pair(hub, admin, f"f{i}") for i in range(4)]
        stored = await firmware(hub, admin, image())
        a, b, c, d = await frames_online(stack, hub, frames)
        # Percent off, at most 2 failures; half a batch must complete before the next one.
        view = await new_campaign(
            hub,
            admin,
            firmware_id=stored["firmware_id"],
            models=["FH-10"],
            batch_size=2,
            success_threshold=0.5,
            failure_threshold=2,
            failure_threshold_percent=None,
            start=True,
        )
        campaign_id = view["campaign_id"]
        first_a, first_b = await a.command(), await b.command()
        await a.report(first_a, "failed", error="no space")
        await b.update(first_b)
        # 1 of 2 completed reaches the 0.5 threshold: batch 2 starts; 1 failure < 2.
        first_c, first_d = await c.command(), await d.command()
        await c.report(first_c, "failed", error="bad image")
        view = await until_campaign(hub, admin, campaign_id, lambda v: v["state"] == "paused")
        assert view["pause_reason"] == "2 failed updates reached the failure threshold of 2"
        await d.update(first_d)  # in flight while paused: still followed and recorded
        view = await until_campaign(
            hub, admin, campaign_id, lambda v: states(v)[d.device_id] == "completed"
        )
        assert view["state"] == "paused"
        done = body_of(await act(hub, admin, campaign_id, "resume"), 200)
        assert done["state"] == "completed"
        (completed,) = await hub.events("campaign.completed")
        assert (completed.completed, completed.failed) == (2, 2)

        # success_threshold 1.0, no failure threshold: a batch that ends short stalls visibly.
        more = [await pair(hub, admin, f"g{i}") for i in range(3)]
        g1, g2, g3 = await frames_online(stack, hub, more)
        other = await firmware(hub, admin, image(), version="2.0.1")
        view = await new_campaign(
            hub,
            admin,
            firmware_id=other["firmware_id"],
            device_ids=[g.device_id for g in (g1, g2, g3)],
            batch_size=2,
            failure_threshold_percent=None,
            start=True,
        )
        stalled_id = view["campaign_id"]
        cmd1, cmd2 = await g1.command(), await g2.command()
        await g1.update(cmd1)
        await g2.report(cmd2, "failed", error="refused")
        view = await until_campaign(hub, admin, stalled_id, lambda v: v["state"] == "paused")
        assert "batch 1 of 2 ended with 1 of 2 frames updated" in view["pause_reason"]
        assert g3.commands() == []
        body_of(await act(hub, admin, stalled_id, "resume"), 200)
        await g3.update(await g3.command())
        await until_campaign(hub, admin, stalled_id, lambda v: v["state"] == "completed")


async def test_cancel_stops_the_rollout_and_follows_updates_in_flight(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, AsyncExitStack() as stack:
        admin = await hub.new_user("admin", admin=True)
        frames = [await pair(hub, admin, f"f{i}") for i in range(6)]
        stored = await firmware(hub, admin, image())
        a, b, *later = await frames_online(stack, hub, frames)
        view = await new_campaign(
            hub, admin, firmware_id=stored["firmware_id"], models=["FH-10"], batch_size=2
        )
        campaign_id = view["campaign_id"]
        problem(await act(hub, admin, campaign_id, "pause"), 409)  # a draft is not running
        problem(await act(hub, admin, campaign_id, "resume"), 409)
        body_of(await act(hub, admin, campaign_id, "start"), 200)
        refused = problem(await act(hub, admin, campaign_id, "start"), 409)
        assert refused["detail"] == (
            f"campaign {campaign_id} is running; start applies to a draft campaign"
        )
        first_a, first_b = await a.command(), await b.command()
        await a.update(first_a)
        await b.report(first_b, "downloading", progress=0.3)
        await until_campaign(
            hub, admin, campaign_id, lambda v: states(v)[b.device_id] == "downloading"
        )

        cancelled = body_of(await act(hub, admin, campaign_id, "cancel"), 200)
        assert cancelled["state"] == "cancelled"
        assert cancelled["finished_at"] is None  # b's update is still going
        assert [states(cancelled)[x.device_id] for x in later] == ["cancelled"] * 4
        (event,) = await hub.events("update.cancelled")
        assert (event.campaign_id, event.device_id) == (campaign_id, None)
        for action in ("start", "pause", "resume", "cancel", "retry-failed"):
            problem(await act(hub, admin, campaign_id, action), 409)

        await b.report(first_b, "installing")
        await b.report(first_b, "completed")
        view = await until_campaign(hub, admin, campaign_id, lambda v: v["finished_at"] is not None)
        assert view["state"] == "cancelled"
        assert (view["counts"]["completed"], view["counts"]["cancelled"]) == (2, 4)
        (done,) = await hub.events("campaign.completed")
        assert (done.completed, done.cancelled, done.failed) == (2, 4, 0)
        assert len(await hub.events("update.completed")) == 2
        # Later batches never got a command.
        assert [x.commands() for x in later] == [[], [], [], []]


async def test_rollback_sends_completed_frames_back_to_their_previous_firmware(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub, AsyncExitStack() as stack:
        admin = await hub.new_user("admin", admin=True)
        frames = [await pair(hub, admin, f"f{i}") for i in range(3)]
        away = await pair(hub, admin, "away")
        stored = await firmware(hub, admin, image(), version="2.0.0")
        a, b, c = await frames_online(stack, hub, frames)
        for frame in (a, b, c):
            await frame.heartbeat("1.4.0")

        async def running_old() -> bool:
            shown = [await device_view(hub, admin, x.device_id) for x in (a, b, c)]
            return all(v["firmware_version"] == "1.4.0" for v in shown)

        await hub.until(running_old)
        view = await new_campaign(
            hub,
            admin,
            firmware_id=stored["firmware_id"],
            device_ids=[a.device_id, b.device_id, c.device_id, away.device_id],
            batch_size=4,
            start=True,
        )
        campaign_id = view["campaign_id"]
        first_a, first_b, first_c = await a.command(), await b.command(), await c.command()
        await a.update(first_a)
        await b.update(first_b)
        await c.report(first_c, "installing")
        view = await until_campaign(
            hub, admin, campaign_id, lambda v: v["counts"]["completed"] == 2
        )
        assert states(view)[away.device_id] == "queued"  # never online

        rolling = body_of(await act(hub, admin, campaign_id, "rollback"), 200)
        assert rolling["state"] == "rolling_back"
        assert states(rolling)[away.device_id] == "cancelled"
        (initiated,) = await hub.events("rollback.initiated")
        assert initiated.device_ids == [a.device_id, b.device_id]
        back_a, back_b = await a.command(1), await b.command(1)
        for frame, back in ((a, back_a), (b, back_b)):
            assert back.command == "rollback_firmware"
            assert (back.args.version, back.args.campaign_id) == ("1.4.0", campaign_id)
            assert back.args.url is None
            assert verifies(frame.frame.public_key, frame.device_id, back)
        problem(await act(hub, admin, campaign_id, "rollback"), 409)
        # c was installing: it completes, and is then sent back as well.
        await c.report(first_c, "completed")
        back_c = await c.command(1)
        assert back_c.command == "rollback_firmware"
        for frame, back in ((a, back_a), (b, back_b), (c, back_c)):
            await frame.report(back, "rolled_back", version="1.4.0")
        view = await until_campaign(hub, admin, campaign_id, lambda v: v["state"] == "rolled_back")
        assert command_states(view, a.device_id, b.device_id, c.device_id) == ["rolled_back"] * 3
        rolled = await hub.events("update.rolled_back")
        assert sorted((e.device_id, e.firmware_version) for e in rolled) == sorted(
            (x.device_id, "1.4.0") for x in (a, b, c)
        )
        (done,) = await hub.events("campaign.completed")
        assert (done.rolled_back, done.cancelled) == (3, 1)

        async def recorded() -> bool:
            rows = await hub.store.fetch_all(
                "SELECT firmware_version FROM devices WHERE device_id IN (?, ?, ?)",
                [a.device_id, b.device_id, c.device_id],
            )
            return [r[0] for r in rows] == ["1.4.0"] * 3

        await hub.until(recorded)  # the registry followed update.completed, then this
        for action in ("start", "pause", "resume", "cancel", "rollback", "retry-failed"):
            problem(await act(hub, admin, campaign_id, action), 409)


async def test_silence_fails_an_update_but_offline_frames_wait_without_a_timer(
    tmp_path: Path,
) -> None:
    settings = {"OTA__PROGRESS_TIMEOUT_S": "2.5"}
    async with running_hub(tmp_path, **settings) as hub, AsyncExitStack() as stack:
        admin = await hub.new_user("admin", admin=True)
        mute, rebooting = [await pair(hub, admin, f"f{i}") for i in range(2)]
        away = await pair(hub, admin, "away")
        stored = await firmware(hub, admin, image())
        m, r = await frames_online(stack, hub, [mute, rebooting])
        view = await new_campaign(
            hub,
            admin,
            firmware_id=stored["firmware_id"],
            device_ids=[m.device_id, r.device_id, away.device_id],
            batch_size=3,
            failure_threshold_percent=None,
            start=True,
        )
        campaign_id = view["campaign_id"]
        assert states(view)[away.device_id] == "queued"
        await m.command()
        update = await r.command()
        await r.report(update, "installing")
        # The frame restarts into the new firmware: offline for a moment, which is no failure.
        await r.offline()

        async def gone() -> bool:
            return await presence(hub, r.device_id) is False

        await hub.until(gone)
        await r.online()
        await r.report(update, "completed")

        # The mute frame fails after 2.5 s of silence; the one away had no timer running.
        view = await until_campaign(
            hub, admin, campaign_id, lambda v: states(v)[m.device_id] == "failed"
        )
        shown = {x["device_id"]: x for x in view["devices"]}
        assert shown[m.device_id]["error"] == "no progress for 2.5 s"
        assert shown[r.device_id]["state"] == "completed"
        assert shown[away.device_id]["state"] == "queued"
        failed = await hub.events("update.failed")
        assert [(e.device_id, e.error) for e in failed] == [(m.device_id, "no progress for 2.5 s")]
        assert (await stats(hub)).in_flight == 0

        # The frame that was away comes online: it is notified then, and the rollout goes on.
        async with scripted_frame(hub, away) as late:
            command = await late.command()
            assert verifies(away.public_key, away.device_id, command)
            await late.update(command)
            view = await until_campaign(hub, admin, campaign_id, lambda v: v["state"] != "running")
        assert view["state"] == "completed"
        assert (view["counts"]["completed"], view["counts"]["failed"]) == (2, 1)


async def test_a_deleted_frame_leaves_its_campaigns_and_the_rollout_goes_on(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub, AsyncExitStack() as stack:
        admin = await hub.new_user("admin", admin=True)
        frames = [await pair(hub, admin, f"f{i}") for i in range(3)]
        stored = await firmware(hub, admin, image())
        a, b, c = await frames_online(stack, hub, frames)
        view = await new_campaign(
            hub,
            admin,
            firmware_id=stored["firmware_id"],
            device_ids=[a.device_id, b.device_id, c.device_id],
            batch_size=1,
            start=True,
        )
        campaign_id = view["campaign_id"]
        first = await a.command()
        await a.report(first, "downloading", progress=0.2)
        await until_campaign(
            hub, admin, campaign_id, lambda v: states(v)[a.device_id] == "downloading"
        )
        deleted = await hub.client.delete(f"{DEVICES}/{a.device_id}", headers=admin.auth)
        assert deleted.status_code == 204
        # Batch 1 is empty now: batch 2 goes out.
        second = await b.command()
        view = await campaign(hub, admin, campaign_id)
        shown = {x["device_id"]: x for x in view["devices"]}
        assert (shown[a.device_id]["state"], shown[a.device_id]["error"]) == (
            "cancelled",
            "device deleted",
        )
        (event,) = await hub.events("update.cancelled")
        assert (event.campaign_id, event.device_id) == (campaign_id, a.device_id)
        history = body_of(
            await hub.client.get(
                f"{CAMPAIGNS}/{campaign_id}/devices/{a.device_id}", headers=admin.auth
            ),
            200,
        )
        assert [(h["state"], h["error"]) for h in history["history"]][-1] == (
            "cancelled",
            "device deleted",
        )
        await b.update(second)
        await c.update(await c.command())
        view = await until_campaign(hub, admin, campaign_id, lambda v: v["state"] == "completed")
        assert (view["counts"]["completed"], view["counts"]["cancelled"]) == (2, 1)


async def test_a_restarted_hub_carries_on_with_its_campaign(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        frames = [await pair(hub, admin, f"f{i}") for i in range(2)]
        stored = await firmware(hub, admin, image())
        async with AsyncExitStack() as stack:
            a, b = await frames_online(stack, hub, frames)
            view = await new_campaign(
                hub,
                admin,
                firmware_id=stored["firmware_id"],
                device_ids=[a.device_id, b.device_id],
                batch_size=1,
                start=True,
            )
            campaign_id = view["campaign_id"]
            first = await a.command()
            await a.report(first, "downloading", progress=0.4)
            await a.report(first, "downloaded")
            await until_campaign(
                hub, admin, campaign_id, lambda v: states(v)[a.device_id] == "downloaded"
            )
            assert b.commands() == []

    # The same data directory: the campaign, its command in flight and its batches survive.
    async with running_hub(tmp_path) as hub, AsyncExitStack() as stack:
        view = await campaign(hub, admin, campaign_id)
        assert view["state"] == "running"
        assert command_states(view, frames[0].device_id, frames[1].device_id) == [
            "downloaded",
            "queued",
        ]
        assert (await stats(hub)).in_flight == 1
        a, b = await frames_online(stack, hub, frames)
        await a.report(first, "installing")
        await a.report(first, "completed")
        second = await b.command()
        assert verifies(b.frame.public_key, b.device_id, second)
        await b.update(second)
        view = await until_campaign(hub, admin, campaign_id, lambda v: v["state"] == "completed")
        assert view["counts"]["completed"] == 2
        assert len(await hub.events("update.completed")) == 2


async def test_an_uploaded_firmware_starts_an_automatic_campaign_when_enabled(
    tmp_path: Path,
) -> None:
    settings = {"OTA__AUTO_CAMPAIGN": "true", "OTA__AUTO_CAMPAIGN_BATCH_SIZE": "1"}
    async with running_hub(tmp_path, **settings) as hub, AsyncExitStack() as stack:
        admin = await hub.new_user("admin", admin=True)
        a, b = [await pair(hub, admin, f"f{i}") for i in range(2)]
        await pair(hub, admin, "other", model="FH-20")
        first, second = await frames_online(stack, hub, [a, b])
        stored = await firmware(hub, admin, image(), version="3.1.4")
        command = await first.command()
        assert (command.command, command.args.version) == ("update_firmware", "3.1.4")
        listed = body_of(await hub.client.get(CAMPAIGNS, headers=admin.auth), 200)
        (auto,) = listed["items"]
        assert (auto["firmware_id"], auto["state"], auto["batch_size"], auto["targets"]) == (
            stored["firmware_id"],
            "running",
            1,
            2,
        )
        (uploaded,) = await hub.events("firmware.uploaded")
        (created,) = await hub.events("campaign.created")
        assert created.correlation_id == uploaded.correlation_id
        assert created.device_ids == [a.device_id, b.device_id]
        await first.update(command)
        await second.update(await second.command())
        await until_campaign(hub, admin, auto["campaign_id"], lambda v: v["state"] == "completed")


async def test_campaign_requests_are_checked(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin, member = await hub.new_user("admin", admin=True), await hub.new_user("bob")
        frame = await pair(hub, admin, "Hall")
        old = await pair(hub, admin, "Old", hw_version="rev1")
        other = await pair(hub, admin, "Other", model="FH-20")
        stored = await firmware(hub, admin, image())
        good = {"name": "r", "firmware_id": stored["firmware_id"], "batch_size": 2}

        async def refused(status: int, **body: Any) -> str:
            response = await hub.client.post(CAMPAIGNS, json={**good, **body}, headers=admin.auth)
            return str(problem(response, status)["detail"])

        assert "models and/or device_ids" in await refused(422)
        for wrong in (
            {"batch_size": 0},
            {"success_threshold": 1.5},
            {"failure_threshold": 0},
            {"failure_threshold_percent": 101},
            {"name": ""},
            {"models": "FH-10"},
            {"colour": "blue", "models": ["FH-10"]},
        ):
            await refused(422, **wrong)
        assert "no firmware" in await refused(404, firmware_id="0" * 32, models=["FH-10"])
        assert "no device" in await refused(404, device_ids=["0" * 32])
        reason = await refused(422, device_ids=[old.device_id, other.device_id])
        assert "1 of another model than FH-10" in reason
        assert "1 with hardware older than rev2" in reason
        assert "no frame to update" in await refused(422, models=["FH-30"])
        response = await hub.client.post(
            CAMPAIGNS, json={**good, "models": ["FH-10"]}, headers=member.auth
        )
        problem(response, 403)

        made = body_of(
            await hub.client.post(
                CAMPAIGNS,
                json={**good, "device_ids": [other.device_id, frame.device_id]},
                headers=admin.auth,
            ),
            201,
        )
        assert [d["device_id"] for d in made["devices"]] == [frame.device_id]
        campaign_id = made["campaign_id"]
        listed = body_of(await hub.client.get(CAMPAIGNS, headers=admin.auth), 200)
        assert [c["campaign_id"] for c in listed["items"]] == [campaign_id]
        assert "devices" not in listed["items"][0]
        unknown = f"{CAMPAIGNS}/{'0' * 32}"
        problem(await hub.client.get(unknown, headers=admin.auth), 404)
        problem(await hub.client.post(f"{unknown}/start", headers=admin.auth), 404)
        problem(
            await hub.client.get(
                f"{CAMPAIGNS}/{campaign_id}/devices/{other.device_id}", headers=admin.auth
            ),
            404,
        )
        problem(await hub.client.get(f"{CAMPAIGNS}/{campaign_id}", headers=member.auth), 403)
        problem(await hub.client.post(f"{CAMPAIGNS}/{campaign_id}/start", headers=member.auth), 403)
        problem(await act(hub, admin, campaign_id, "rollback"), 409)  # a draft installed nothing
        problem(await act(hub, admin, campaign_id, "retry-failed"), 409)
        cancelled = body_of(await act(hub, admin, campaign_id, "cancel"), 200)
        assert (cancelled["state"], cancelled["counts"]["cancelled"]) == ("cancelled", 1)
        assert cancelled["finished_at"] is not None
