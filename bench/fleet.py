"""Fleet: the hub's memory and mailboxes with 1,000 connected frames heart-beating every 10 s.

``python run.py bench fleet [--json]`` or ``python -m bench.fleet [--json]``.

The hub runs in this process (``actors.serve`` on a temporary data directory, its managed
Mosquitto as a child, ``frames.heartbeat_interval_s`` 10, which every frame's sync carries);
the frames run in another (``run.py simulate --no-render --heartbeat 10``). Baseline: the
hub's RSS with no frame at all, sampled for ``IDLE_S`` before the simulator starts. Then the
simulator pairs ``FRAMES`` frames one after another over HTTP (each pairing rewrites the
broker's password and ACL files and reloads it) and connects them all; both phases are timed,
and the pairing rate near the start and near the end shows how a pairing's cost grows.

Once every frame has connected and applied its first sync, the hub is observed for
``OBSERVE_S``: its RSS once a second (this process; the simulator is another) and the deepest
mailbox in the actor tree (``system.snapshot()``) ten times a second; over the window, the MQTT
bridge's counters (received, routed to frame proxies, dropped) next to an independent count
of what the frames sent: the live messages on ``frames/+/<leaf>`` that a subscriber with the
hub's credentials received.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import trio

import wire
from actors.mqtt import GetMqttStats, MqttStats
from bench._report import Figure, Report, Target, run_cli
from bench.e2e import (
    HUB_SETTINGS,
    BenchHub,
    BrokerClient,
    cpu_seconds,
    event_is,
    run_until_interrupted,
    running_hub,
    simulate,
)
from supervision import ActorSnapshot

FRAMES = 1000
HEARTBEAT_S = 10
IDLE_S = 5.0
OBSERVE_S = 30.0
DEPTH_EVERY_S = 0.1
CONNECT_WAIT_S = 1800.0
"""Pairing is one request at a time and each reloads the broker: give it long."""
RSS_TARGET_MB = 150.0


def _progress(text: str) -> None:
    print(f"[bench fleet] {text}", file=sys.stderr, flush=True)


def deepest_mailbox(node: ActorSnapshot) -> tuple[int, int, str]:
    """The largest ``mailbox_depth`` in the subtree, with that mailbox's capacity and path."""
    deepest = (node.mailbox_depth, node.mailbox_capacity, node.path)
    for child in node.children:
        deepest = max(deepest, deepest_mailbox(child))
    return deepest


@dataclass
class Observed:
    rss_mb: list[float] = field(default_factory=list)
    depths: list[tuple[int, int, str]] = field(default_factory=list)
    seconds: float = 0.0
    sampling_s: float = 0.0
    """Time the samples took, in the hub's process: not the hub's work."""


async def observe(hub: BenchHub, seconds: float) -> Observed:
    """RSS once a second and the deepest mailbox every ``DEPTH_EVERY_S``, for ``seconds``."""
    observed = Observed()
    process = psutil.Process()
    started = trio.current_time()
    ticks = max(1, round(seconds / DEPTH_EVERY_S))
    per_second = round(1 / DEPTH_EVERY_S)
    for tick in range(1, ticks + 1):
        await trio.sleep_until(started + tick * DEPTH_EVERY_S)
        sampling = time.perf_counter()
        observed.depths.append(deepest_mailbox(hub.system.snapshot()))
        if tick % per_second == 0 or tick == ticks:
            observed.rss_mb.append(process.memory_info().rss / 1e6)
        observed.sampling_s += time.perf_counter() - sampling
    observed.seconds = trio.current_time() - started
    return observed


async def count_pairings(path: Path, marks: list[tuple[float, int]]) -> None:
    """Note (time, pairings saved so far) once a second from the simulator's ``frames.json``."""
    while True:
        with contextlib.suppress(FileNotFoundError, ValueError):
            marks.append((time.monotonic(), len(json.loads(await trio.Path(path).read_bytes()))))
        await trio.sleep(1.0)


def pairing_rate(marks: list[tuple[float, int]], low: int, high: int) -> float:
    """Pairings per second between the moments ``low`` and ``high`` pairings were saved."""
    start = next(t for t, n in marks if n >= low)
    end = next(t for t, n in marks if n >= high)
    return (high - low) / max(end - start, 1.0)


@dataclass
class Results:
    idle: Observed
    busy: Observed
    before: MqttStats
    after: MqttStats
    sent: dict[str, int]
    pairing_s: float
    connect_s: float
    pairing_marks: list[tuple[float, int]]
    proxies: int
    cpu_pct: tuple[float, float]


async def mqtt_stats(hub: BenchHub) -> MqttStats:
    stats = await hub.refs.mqtt.ask(GetMqttStats())
    return stats


async def measure(directory: Path, frames: int, idle_s: float, observe_s: float) -> Results:
    settings = {**HUB_SETTINGS, "FRAMES__HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S)}
    async with running_hub(directory / "hub", **settings) as hub:
        admin = await hub.new_user("bench-admin", admin=True)
        _progress(f"hub RSS with no frames, {idle_s:g} s")
        idle = await observe(hub, idle_s)
        _progress(f"pairing {frames} frames, then connecting them")
        started, marks = time.time(), list[tuple[float, int]]()
        options = ("--heartbeat", str(HEARTBEAT_S))
        async with simulate(hub.base_url, admin, directory / "sim", frames, *options) as sim:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(count_pairings, sim.data_dir / "frames.json", marks)
                connected = await sim.first_per_frame(event_is("connected"), frames, CONNECT_WAIT_S)
                nursery.cancel_scope.cancel()
            await sim.first_per_frame(event_is("synced"), frames, CONNECT_WAIT_S)
            _progress(f"{frames} frames connected and synced; observing for {observe_s:g} s")
            topics = tuple(f"frames/+/{leaf}" for leaf in wire.FRAME_LEAVES_IN)
            listener = BrokerClient(await hub.broker(), topics)
            await trio.to_thread.run_sync(listener.open)
            processes = (psutil.Process(), psutil.Process(sim.process.pid))
            try:
                before, counts = await mqtt_stats(hub), listener.counts()
                cpu = [cpu_seconds(p) for p in processes]
                busy = await observe(hub, observe_s)
                after, sent = await mqtt_stats(hub), listener.counts() - counts
                used = [cpu_seconds(p) - c for p, c in zip(processes, cpu, strict=True)]
            finally:
                await trio.to_thread.run_sync(listener.close)
            proxies = len(hub.system.snapshot("/frames").children) - 1  # less the fleet
    return Results(
        idle=idle,
        busy=busy,
        before=before,
        after=after,
        sent=dict(sent),
        pairing_s=min(connected.values()) - started,
        connect_s=max(connected.values()) - min(connected.values()),
        pairing_marks=[*marks, (time.monotonic(), frames)],
        proxies=proxies,
        cpu_pct=(100 * (used[0] - busy.sampling_s) / busy.seconds, 100 * used[1] / busy.seconds),
    )


def main(
    json_output: bool, *, frames: int = FRAMES, idle_s: float = IDLE_S, observe_s: float = OBSERVE_S
) -> dict[str, Figure]:
    """Measure, print the table (and the JSON last line); return the figures."""
    with tempfile.TemporaryDirectory(prefix="framehub-bench-fleet-") as tmp:
        got = run_until_interrupted(measure, Path(tmp), frames, idle_s, observe_s)
    window = got.busy.seconds
    rss, idle = round(max(got.busy.rss_mb), 1), round(max(got.idle.rss_mb), 1)
    depth, capacity, deepest_path = max(got.busy.depths)
    received = got.after.received - got.before.received
    routed = got.after.routed - got.before.routed
    sent = sum(got.sent.values())
    tenth = max(1, frames // 10)
    report = Report(f"framehub fleet: {frames} simulated frames", peer_name="0 frames")
    rss_pair = ("hub_rss_mb", rss), ("hub_rss_idle_mb", idle)
    report.compare("hub RSS, max", "MB", *rss_pair, "rss_ratio_vs_idle", Target("<", RSS_TARGET_MB))
    bounded, absorbed = Target("<", capacity), Target(">=", 0.95)
    report.single("max mailbox depth", "messages", "max_mailbox_depth", depth, bounded)
    ratio = round(received / sent, 3) if sent else 0.0
    report.single("hub received / frames sent", "x", "received_over_sent", ratio, absorbed)
    per_frame_kb = round((rss - idle) * 1e3 / frames, 1)
    hub_cpu, simulator_cpu = (round(pct, 1) for pct in got.cpu_pct)
    first_rate, last_rate = _pairing(got, 0, tenth), _pairing(got, frames - tenth, frames)
    rows: list[tuple[str, str, str, Figure]] = [
        ("RSS per connected frame", "KB", "rss_per_frame_kb", per_frame_kb),
        (
            "heartbeats sent by frames",
            "/s",
            "heartbeats_per_s",
            _heartbeats_per_s(got.sent, window),
        ),
        ("MQTT sent by frames, all", "/s", "frames_sent_per_s", round(sent / window, 1)),
        ("MQTT received by the hub", "/s", "mqtt_received_per_s", round(received / window, 1)),
        ("MQTT routed to frame proxies", "/s", "mqtt_routed_per_s", round(routed / window, 1)),
        ("inbound dropped, whole run", "messages", "dropped", sum(got.after.dropped.values())),
        ("hub CPU over the window", "% of a CPU", "hub_cpu_pct", hub_cpu),
        ("simulator CPU over the window", "% of a CPU", "simulator_cpu_pct", simulator_cpu),
        ("pairing, start to first connect", "s", "pairing_s", round(got.pairing_s, 1)),
        (f"pairings/s, first {tenth}", "/s", "pairing_first_per_s", first_rate),
        (f"pairings/s, last {tenth}", "/s", "pairing_last_per_s", last_rate),
        ("connecting, first to last", "s", "connect_s", round(got.connect_s, 1)),
        ("frame proxies in the hub", "actors", "frame_proxies", got.proxies),
        ("frames connected", "frames", "frames", frames),
    ]
    for row in rows:
        report.single(*row)
    report.note(
        f"window {window:.1f} s; sampling took {got.busy.sampling_s:.2f} s of it (not counted"
        f" in hub CPU); deepest mailbox at {deepest_path}; frames sent by topic leaf:"
        f" {got.sent or 'nothing'}; dropped by reason: {got.after.dropped or 'none'}"
    )
    report.note(
        "hub in this process (its RSS includes the benchmark's own few MB), simulator"
        f" --no-render in another; {os.cpu_count()} CPUs for both and Mosquitto"
    )
    return report.finish(json_output)


def _heartbeats_per_s(sent: dict[str, int], seconds: float) -> float:
    return round(sent.get("heartbeat", 0) / seconds, 1)


def _pairing(got: Results, low: int, high: int) -> float:
    return round(pairing_rate(got.pairing_marks, low, high), 2)


if __name__ == "__main__":
    run_cli("python -m bench.fleet", __doc__, main)
