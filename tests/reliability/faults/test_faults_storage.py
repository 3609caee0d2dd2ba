"""A full disk, injected at the blob layer (``ENOSPC`` from the blob store's write and fsync
seam) and at the database layer (SQLite's ``max_page_count``: ``SQLITE_FULL``), through the
real HTTP API of the whole hub with simulated frames on the wall.

Every write path refused for want of space answers a clear 507 problem (never a 500, never a
crash loop of the actor behind it); nothing is half-written (no blob without its row, no row
without its blob, no staged file left, no event for a write that failed, no gap in the
journal, no consumer retry or dead letter); no actor is restarted; and once writes succeed
again the same requests succeed and the frames get the photos, those refused and those whose
background work (analysis, versions) the full disk held up.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

import wire
from actors.telemetry import GetTelemetryStats
from tests.harness.faults.storage import (
    blob_names,
    blobs_full,
    database_full,
    frame_holds,
    half_written,
    unwell,
)
from tests.harness.hub import DEVICES, Hub, running_hub
from tests.harness.journal import poll
from tests.harness.ota import upload_firmware
from tests.harness.photos import jpeg
from tests.harness.replies import body_of, problem
from tests.harness.simulator import Simulator, simulate
from tests.harness.telemetry import as_frame

HUB_SETTINGS = {"FRAMES__HEARTBEAT_INTERVAL_S": "1"}
FRAME_OPTIONS = ("--no-render",)
CONVERGE_S = 60.0
MAX_TRIES = 40
"""Writes tried before one is refused: on a full disk, writes that fit in what is already
allocated still succeed."""


async def count(hub: Hub, sql: str, params: tuple[Any, ...] = ()) -> int:
    row = await hub.store.fetch_one(sql, params)
    assert row is not None
    return int(row[0])


async def events_named(hub: Hub, name: str) -> int:
    return await count(hub, "SELECT count(*) FROM events WHERE name = ?", (name,))


def refused(response: httpx.Response) -> dict[str, Any]:
    """The 507 problem of a write refused for want of space, with a detail a person reads."""
    body = problem(response, 507)
    assert "full" in body["detail"], body
    return body


def refused_or_busy(response: httpx.Response) -> int:
    """A write refused for want of space (507), or by an actor that did not answer in time
    because its journal consumer waits for space to commit what it already handled (503,
    "try again shortly"): a clear problem either way, never a 500."""
    if response.status_code == 503:
        assert response.headers["retry-after"], response.headers
        problem(response, 503)
    else:
        refused(response)
    return response.status_code


async def until_refused(
    write: Callable[[int], Awaitable[httpx.Response]],
) -> tuple[httpx.Response, int]:
    """Call ``write(attempt)`` until it is not a success; that response and the successes."""
    for successes in range(MAX_TRIES):
        response = await write(successes)
        if response.status_code >= 300:
            return response, successes
    raise AssertionError(f"{MAX_TRIES} writes succeeded on a full disk")


async def frames_hold(
    hub: Hub, frames: Simulator, frame_ids: list[str], file_ids: set[str]
) -> None:
    async def held() -> bool:
        for frame_id in frame_ids:
            holds = await trio.to_thread.run_sync(frame_holds, frames.data_dir, frame_id)
            if not file_ids <= holds:
                return False
        return True

    await hub.until(held, CONVERGE_S)


PAIRING = {
    "model": "FH-10",
    "hw_version": "rev2",
    "width": 1024,
    "height": 600,
    "orientation": "landscape",
}


# -- the blob layer ----------------------------------------------------------------------------

BLOB_CASES = ["photo", "firmware", "version"]


async def test_a_full_blob_disk_refuses_writes_cleanly_and_service_resumes(
    tmp_path: Path, seed: int, long_run: bool
) -> None:
    """``ENOSPC`` from the blob store of uploads, of firmware images and of versions (the
    failing call seeded: the file's write or fsync, or the fsync of its directory after the
    rename)."""
    rng = random.Random(seed)
    cases = BLOB_CASES * (2 if long_run else 1)
    rng.shuffle(cases)
    async with running_hub(tmp_path / "hub", **HUB_SETTINGS) as hub:
        admin, alice = await hub.new_user("admin", admin=True), await hub.new_user("alice")
        album = await hub.new_album(alice, "Wall")
        async with simulate(
            hub.address.base_url, admin.token, tmp_path / "sim", 1, *FRAME_OPTIONS
        ) as frames:
            ids = frames.frame_ids()
            await hub.show_albums(admin, ids, [album])
            expected: set[str] = set()
            for number, case in enumerate(cases):
                photo = jpeg(640, 480, seed=seed * 100 + number)
                metadata = {"album_id": album}
                uploads = await events_named(hub, "file.uploaded")
                if case == "photo":
                    after = rng.choice([0, 1])  # the file's fsync, or its directory's
                    originals = hub.blobs_dir / "originals"
                    blobs = blob_names(originals)
                    async with blobs_full(hub, "originals", "fsync", after):
                        refused(await hub.upload(alice, photo, metadata=metadata))
                    assert blob_names(originals) == blobs
                    assert await events_named(hub, "file.uploaded") == uploads
                    assert hub.staged_files() == []
                    stored = await hub.upload(alice, photo, metadata=metadata)
                    expected.add(body_of(stored)["file_id"])
                elif case == "firmware":
                    image = rng.randbytes(32 * 1024)
                    version = f"2.{number}.0"
                    before = await count(hub, "SELECT count(*) FROM firmware")
                    async with blobs_full(hub, "firmware", "fsync", rng.choice([0, 1])):
                        refused(await upload_firmware(hub, admin, image, version=version))
                    assert await count(hub, "SELECT count(*) FROM firmware") == before
                    assert await events_named(hub, "firmware.uploaded") == before
                    body_of(await upload_firmware(hub, admin, image, version=version))
                else:
                    # The original is stored; its versions (the standard ones, the frame's)
                    # cannot be: the frame waits for it, a download of a size is refused.
                    hook = rng.choice(["write", "fsync"])
                    async with blobs_full(hub, "versions", hook):
                        response = await hub.upload(alice, photo, metadata=metadata)
                        file_id = body_of(response)["file_id"]
                        await hub.analysed()
                        download = await hub.client.get(
                            f"/api/v1/files/download/{file_id}?size=hd", headers=alice.auth
                        )
                        refused(download)
                        assert file_id not in frame_holds(frames.data_dir, ids[0])
                    expected.add(file_id)
                    # Room again: the next upload into the album brings both to the frame.
                    again = await hub.upload(alice, jpeg(320, 240, seed=number), metadata=metadata)
                    expected.add(body_of(again)["file_id"])
                assert unwell(hub.system.snapshot()) == [], case
            await hub.analysed()
            await frames_hold(hub, frames, ids, expected)
            assert await half_written(hub) == []
            assert unwell(hub.system.snapshot()) == []


# -- the database layer ------------------------------------------------------------------------


async def test_a_full_database_refuses_writes_cleanly_and_service_resumes(
    tmp_path: Path, seed: int, long_run: bool
) -> None:
    """``SQLITE_FULL`` while two frames heartbeat and a photo uploaded just before is still
    being analysed: uploads, album creation, pairing, album assignment and commands are
    refused with 507 (the order of the write paths seeded); the frames' heartbeats and
    telemetry keep coming meanwhile; nothing crashes. Then room again: the same requests
    succeed, and the frames get both photos."""
    rng = random.Random(seed)
    async with running_hub(tmp_path / "hub", **HUB_SETTINGS) as hub:
        admin, alice = await hub.new_user("admin", admin=True), await hub.new_user("alice")
        kitchen, garden = (
            await hub.new_album(alice, "Kitchen"),
            await hub.new_album(alice, "Garden"),
        )
        async with simulate(
            hub.address.base_url, admin.token, tmp_path / "sim", 2, *FRAME_OPTIONS
        ) as frames:
            ids = frames.frame_ids()
            await hub.show_albums(admin, ids, [kitchen])
            metadata = {"album_id": kitchen}
            before = body_of(await hub.upload(alice, jpeg(640, 480, seed=seed), metadata=metadata))
            photo = jpeg(640, 480, seed=seed + 1)
            uploads: list[str] = [before["file_id"]]
            made: dict[str, int] = {}

            async def upload(attempt: int) -> httpx.Response:
                image = jpeg(320, 240, seed=seed * 1000 + attempt)
                response = await hub.upload(alice, image, metadata=metadata)
                if response.status_code == 201:
                    uploads.append(response.json()["file_id"])
                return response

            async def create_album(attempt: int) -> httpx.Response:
                return await hub.client.post(
                    "/api/v1/albums", json={"name": f"New {attempt}"}, headers=alice.auth
                )

            async def pair(attempt: int) -> httpx.Response:
                return await hub.client.post(
                    DEVICES, json={"name": f"Frame {attempt}", **PAIRING}, headers=admin.auth
                )

            async def assign(attempt: int) -> httpx.Response:
                albums = [kitchen, garden] if attempt % 2 == 0 else [kitchen]
                return await hub.client.put(
                    f"{DEVICES}/{ids[0]}/albums", json={"album_ids": albums}, headers=admin.auth
                )

            async def command(attempt: int) -> httpx.Response:
                return await hub.client.post(
                    f"{DEVICES}/{ids[1]}/commands", json={"command": "next"}, headers=admin.auth
                )

            writes = {
                "upload": upload,
                "album": create_album,
                "pairing": pair,
                "assignment": assign,
                "command": command,
            }
            order = list(writes)
            rng.shuffle(order)
            counted = ("file.uploaded", "album.created", "device.registered")
            async with database_full(hub):
                events = {name: await events_named(hub, name) for name in counted}
                statuses: dict[str, int] = {}
                for name in order:
                    response, successes = await until_refused(writes[name])
                    made[name] = successes
                    statuses[name] = refused_or_busy(response)
                    assert unwell(hub.system.snapshot()) == [], name
                assert statuses["upload"] == 507, statuses
                # Only what succeeded was published.
                assert (
                    await events_named(hub, "file.uploaded")
                    == events["file.uploaded"] + made["upload"]
                )
                assert (
                    await events_named(hub, "album.created")
                    == events["album.created"] + made["album"]
                )
                assert (
                    await events_named(hub, "device.registered")
                    == events["device.registered"] + made["pairing"]
                )
                # The frames go on talking (heartbeats are telemetry): still nothing crashes.
                telemetry = hub.system.snapshot("/domain/telemetry").processed

                async def frames_went_on() -> bool:
                    return hub.system.snapshot("/domain/telemetry").processed >= telemetry + 6

                with trio.fail_after(30):
                    await poll(frames_went_on)  # a full disk commits nothing to wait on
                assert unwell(hub.system.snapshot()) == []
            # Room again: the same requests succeed.
            stored = body_of(await hub.upload(alice, photo, metadata=metadata))
            uploads.append(stored["file_id"])
            body_of(await create_album(MAX_TRIES))
            body_of(await pair(MAX_TRIES))
            body_of(await assign(1), 200)
            body_of(await command(0), 202)
            await hub.analysed()
            await frames_hold(hub, frames, ids, set(uploads))
            assert await half_written(hub) == []
            assert unwell(hub.system.snapshot()) == []
            print(f"\nrefused on a full database: {statuses}; succeeded first: {made}")


async def test_a_firmware_upload_refused_by_a_full_database_leaves_no_blob(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path / "hub", **HUB_SETTINGS) as hub:
        admin = await hub.new_user("admin", admin=True)
        async with database_full(hub):

            async def firmware(attempt: int) -> httpx.Response:
                image = random.Random(attempt).randbytes(64 * 1024)
                return await upload_firmware(hub, admin, image, version=f"3.{attempt}.0")

            response, _ = await until_refused(firmware)
            refused(response)
        assert await half_written(hub) == []


async def test_telemetry_on_a_full_database_does_not_crash(tmp_path: Path) -> None:
    async with running_hub(tmp_path / "hub", **HUB_SETTINGS) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await hub.pair_frame(admin, "Sensor")
        async with as_frame(hub, frame) as client:

            async def burst(samples: int) -> None:
                for number in range(samples):
                    payload = wire.Telemetry(
                        frame_id=frame.device_id,
                        metrics={"a": float(number), "b": 1.0, "c": 2.0},
                        timestamp=_now(),
                    )
                    topic = f"frames/{frame.device_id}/telemetry"
                    await client.publish(topic, msgspec.json.encode(payload), qos=1)

            await burst(10)
            async with database_full(hub):
                await burst(600)
                telemetry = hub.system.lookup("/domain/telemetry")
                with trio.fail_after(CONVERGE_S):
                    await telemetry.ask(GetTelemetryStats())  # it has taken the burst
            assert unwell(hub.system.snapshot()) == []


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
