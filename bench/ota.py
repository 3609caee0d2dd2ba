"""OTA: a 1 MB firmware to 200 simulated frames in batches of 50, start to finish.

``python run.py bench ota [--json]`` or ``python -m bench.ota [--json]``.

The hub runs in this process (``actors.serve`` on a temporary data directory, its managed
Mosquitto as a child, heartbeats every second); the frames in another (``run.py simulate
--no-render --health-check-s 5``): each downloads the image with its token, checks its SHA-256
and the hub's Ed25519 signature, writes it into its inactive slot, restarts into it, passes a
5-second health check (a heartbeat and a screen update) and commits it. The campaign is
created with ``start: true``; timed from the ``POST`` until the hub records the campaign
``completed`` (every frame reported ``completed`` and the last batch was closed).

Baseline, in the same run: the transfer floor. Before the campaign, this process downloads
the same image from the hub 200 times, 50 at a time (what the batches do), with a frame's
token; plus, per batch, the frames' own health check, which no hub can shorten:
``floor = downloads + batches x health_check_s``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import trio

from bench._report import Figure, Report, Target, run_cli
from bench.e2e import HUB_SETTINGS, BenchHub, auth, run_until_interrupted, running_hub, simulate

FRAMES = 200
BATCH = 50
IMAGE_BYTES = 1024 * 1024
HEALTH_CHECK_S = 5.0
HEARTBEAT_S = 1
TARGET_S = 60.0
WAIT_S = 600.0
MODEL = "sim-frame"


def _progress(text: str) -> None:
    print(f"[bench ota] {text}", file=sys.stderr, flush=True)


@dataclass
class Results:
    seconds: float
    first_completed_s: float
    download_floor_s: float
    batches: int
    states: dict[str, int]
    hub_rss_mb: float
    hub_cpu_pct: float
    errors: dict[str, int]


async def _campaign(hub: BenchHub, admin: str, campaign_id: str) -> dict[str, Any]:
    reply = await hub.http.get(f"/api/v1/campaigns/{campaign_id}", headers=auth(admin))
    view: dict[str, Any] = reply.raise_for_status().json()
    return view


async def _download_floor(url: str, token: str, frames: int, batch: int) -> float:
    """Seconds to download the image ``frames`` times, ``batch`` at a time."""
    limit = trio.Semaphore(batch)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60.0, limits=httpx.Limits(max_connections=batch)) as http:

        async def one() -> None:
            async with limit:
                reply = await http.get(url, headers=auth(token))
                reply.raise_for_status()

        async with trio.open_nursery() as nursery:
            for _ in range(frames):
                nursery.start_soon(one)
    return time.perf_counter() - started


async def measure(directory: Path, frames: int, batch: int, health_check_s: float) -> Results:
    settings = {**HUB_SETTINGS, "FRAMES__HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S)}
    async with running_hub(directory / "hub", **settings) as hub:
        admin = await hub.new_user("bench-admin", admin=True)
        options = ("--heartbeat", str(HEARTBEAT_S), "--health-check-s", f"{health_check_s:g}")
        _progress(f"pairing and connecting {frames} frames")
        async with simulate(hub.base_url, admin, directory / "sim", frames, *options) as sim:
            await sim.first_per_frame(lambda e: e["event"] == "connected", frames, WAIT_S)
            frame_token = _first_token(sim.data_dir)
            reply = await hub.http.post(
                "/api/v1/firmware",
                headers=auth(admin),
                files={"file": ("fw.bin", os.urandom(IMAGE_BYTES), "application/octet-stream")},
                data={"version": "2.0.0", "model": MODEL, "min_hw_version": "1.0"},
            )
            firmware = reply.raise_for_status().json()
            url = f"{hub.base_url}/api/v1/firmware/{firmware['firmware_id']}/download"
            _progress(f"baseline: {frames} downloads of the image, {batch} at a time")
            download_floor = await _download_floor(url, frame_token, frames, batch)
            _progress(f"campaign: {frames} frames in batches of {batch}")
            me = psutil.Process()
            cpu_before = sum(me.cpu_times()[:2])
            rss = me.memory_info().rss
            started, started_wall = time.perf_counter(), time.time()
            body = {
                "name": "bench",
                "firmware_id": firmware["firmware_id"],
                "models": [MODEL],
                "batch_size": batch,
                "start": True,
            }
            reply = await hub.http.post("/api/v1/campaigns", json=body, headers=auth(admin))
            campaign_id = reply.raise_for_status().json()["campaign_id"]
            first = await sim.first_per_frame(_completed, 1, WAIT_S)
            first_completed = min(first.values()) - started_wall
            with trio.fail_after(WAIT_S):
                while True:
                    view = await _campaign(hub, admin, campaign_id)
                    rss = max(rss, me.memory_info().rss)
                    if view["state"] in ("completed", "paused", "cancelled"):
                        break
                    await trio.sleep(0.1)  # the figure's resolution
            seconds = time.perf_counter() - started
            cpu = sum(me.cpu_times()[:2]) - cpu_before
    states: dict[str, int] = {}
    errors: dict[str, int] = {}
    for device in view["devices"]:
        states[device["state"]] = states.get(device["state"], 0) + 1
        if device["error"]:
            errors[device["error"]] = errors.get(device["error"], 0) + 1
    return Results(
        seconds=seconds,
        first_completed_s=first_completed,
        download_floor_s=download_floor,
        batches=int(view["batches"]),
        states=states,
        hub_rss_mb=rss / 1e6,
        hub_cpu_pct=100 * cpu / seconds,
        errors=errors,
    )


def _completed(event: dict[str, Any]) -> bool:
    return event["event"] == "ota" and event.get("state") == "completed"


def _first_token(sim_dir: Path) -> str:
    pairings = json.loads((sim_dir / "frames.json").read_text())
    token: str = pairings[0]["token"]
    return token


def main(
    json_output: bool,
    *,
    frames: int = FRAMES,
    batch: int = BATCH,
    health_check_s: float = HEALTH_CHECK_S,
) -> dict[str, Figure]:
    """Measure, print the table (and the JSON last line); return the figures."""
    with tempfile.TemporaryDirectory(prefix="framehub-bench-ota-") as tmp:
        got = run_until_interrupted(measure, Path(tmp), frames, batch, health_check_s)
    floor = got.download_floor_s + got.batches * health_check_s
    failed = got.states.get("failed", 0) + got.states.get("rolled_back", 0)
    report = Report(f"framehub OTA: 1 MB to {frames} simulated frames", peer_name="floor")
    report.compare(
        f"campaign start -> completed, batches of {batch}",
        "s",
        ("seconds", round(got.seconds, 2)),
        ("floor_s", round(floor, 2)),
        "seconds_over_floor",
        Target("<", TARGET_S),
    )
    rows: list[tuple[str, str, str, Figure]] = [
        ("frames", "frames", "frames", frames),
        ("updates completed", "frames", "completed", got.states.get("completed", 0)),
        ("updates failed or rolled back", "frames", "failed", failed),
        ("first frame completed", "s", "first_completed_s", round(got.first_completed_s, 2)),
        ("baseline downloads only", "s", "download_floor_s", round(got.download_floor_s, 2)),
        ("batches", "batches", "batches", got.batches),
        ("frame health check per batch", "s", "health_check_s", health_check_s),
        ("hub RSS, max during campaign", "MB", "hub_rss_mb", round(got.hub_rss_mb, 1)),
        ("hub CPU during campaign", "% of a CPU", "hub_cpu_pct", round(got.hub_cpu_pct, 1)),
    ]
    for row in rows:
        report.single(*row)
    report.note(
        f"final device states: {got.states}; floor = {frames} downloads {batch} at a time"
        f" ({got.download_floor_s:.2f} s) + {got.batches} x the {health_check_s:g} s health check"
    )
    if got.errors:
        report.note(f"errors: {got.errors}")
    report.note(
        "hub in this process (its RSS includes the benchmark's own few MB), simulator"
        f" --no-render in another; {os.cpu_count()} CPUs for both and Mosquitto"
    )
    return report.finish(json_output)


if __name__ == "__main__":
    run_cli("python -m bench.ota", __doc__, main)
