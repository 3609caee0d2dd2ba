"""Property-based fuzzing of every MQTT topic the hub subscribes to, against a running hub.

The hub runs whole (``running_hub``, its managed Mosquitto). Hypothesis draws the messages up
front (``tests/harness/fuzz/mqtt_cases``, seeded by ``--seed``; many more under
``--long``); they are published into the one live hub, on the paired frame's own topics with
its own credentials, and on unknown frames' and odd topics with the hub's own MQTT user (the
only user the broker lets publish there; its password is the managed broker's, asked of
``/infra/broker``). Then:

* the bridge heard exactly the messages on its subscriptions and dropped exactly the bad ones,
  each under its reason (``GetMqttStats`` and ``GET /metrics``);
* nothing restarted: the bridge (still on its first connection), the frame's proxy, the
  fleet, the telemetry and OTA actors;
* a heartbeat and a telemetry sample sent after the garbage are still taken;
* every sample offered to the telemetry actor is accounted for (stored or dropped by reason),
  and the samples table holds only well-formed rows of the paired frame.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from actors.mqtt import GetMqttStats, MqttStats
from actors.telemetry import METRIC_NAME_PATTERN, TelemetryStats
from tests.harness.frames import device, heartbeat
from tests.harness.fuzz.examples import drawn
from tests.harness.fuzz.mqtt_cases import PROXY_LEAVES, Case, boundary_cases, cases
from tests.harness.hub import Frame, Hub, User, running_hub
from tests.harness.mqtt import Client
from tests.harness.telemetry import as_frame, as_hub, stats, telemetry

CASES = 500
CASES_LONG = 12_000
CHUNK = 250
"""Publishes in flight at once per client (acknowledged together)."""
ROUND = 1_000
"""Cases published before waiting for the bridge to have heard them."""
WAIT_S = 60.0
DROP_REASONS = ("malformed", "oversized", "wrong_frame", "unknown_frame", "foreign_topic")
SETTINGS = {"TELEMETRY__FLUSH_INTERVAL_S": "0.05", "HTTP__RATE_LIMIT_PER_MINUTE": "100000"}


async def bridge(hub: Hub) -> MqttStats:
    reply: MqttStats = await hub.refs.mqtt.ask(GetMqttStats())
    return reply


async def poll(check: Any, timeout: float = WAIT_S) -> None:
    """Wait until ``await check()`` holds. The counters change without a commit, so they are
    polled (every 20 ms), bounded by ``timeout``."""
    with trio.fail_after(timeout):
        while True:
            if await check():
                return
            await trio.sleep(0.02)


async def publish_all(client: Client, batch: list[Case]) -> None:
    """Publish with QoS 1, ``CHUNK`` at a time, each chunk's acknowledgements awaited."""
    client.client.pending_calls_threshold = CHUNK * 2
    for start in range(0, len(batch), CHUNK):
        chunk = batch[start : start + CHUNK]
        await client.system.asyncio.run_all(
            client.client.publish, [(case.topic, case.payload, 1, False) for case in chunk]
        )


async def publish_in_rounds(
    hub: Hub, frame: Client, central: Client, generated: list[Case], received: int
) -> None:
    """Publish ``ROUND`` cases at a time (the frame's and the hub's user's at once), then
    wait until the bridge heard them all: its backlog stays far below its inbox's bound."""
    for start in range(0, len(generated), ROUND):
        batch = generated[start : start + ROUND]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish_all, frame, [c for c in batch if c.sender == "frame"])
            nursery.start_soon(publish_all, central, [c for c in batch if c.sender == "hub"])
        received += sum(case.heard for case in batch)

        async def heard(target: int = received) -> bool:
            return (await bridge(hub)).received >= target

        await poll(heard)


def frame_of(case: Case) -> str:
    return case.topic.split("/")[1]


def summary(generated: list[Case]) -> str:
    per_topic = Counter((case.leaf, case.sender) for case in generated)
    per_kind = Counter((case.kind, case.expect) for case in generated)
    lines = [f"{len(generated)} MQTT messages fuzzed"]
    lines += [
        f"  {leaf:>12} by {sender:<5}: {n}" for (leaf, sender), n in sorted(per_topic.items())
    ]
    lines += [f"  {kind:>28} -> {expect}: {n}" for (kind, expect), n in sorted(per_kind.items())]
    return "\n".join(lines)


async def test_hostile_messages_on_every_inbound_topic_are_dropped_and_counted(
    tmp_path: Path, seed: int, long_run: bool
) -> None:
    async with running_hub(tmp_path, **SETTINGS) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await hub.pair_frame(admin)
        own = frame.device_id
        generated = await drawn(cases(own), CASES_LONG if long_run else CASES, seed)
        generated += boundary_cases(own)
        print(summary(generated))
        expected = Counter(case.expect for case in generated)
        assert set(expected) >= {"routed", "unheard", *DROP_REASONS}, expected
        heard = sum(case.heard for case in generated)
        to_proxy = sum(
            case.expect == "routed" and case.leaf in PROXY_LEAVES and frame_of(case) == own
            for case in generated
        )
        own_samples = sum(case.samples() for case in generated if frame_of(case) == own)
        stranger_samples = sum(case.samples() for case in generated if frame_of(case) != own)

        before, telemetry_before = await bridge(hub), await stats(hub)
        async with as_frame(hub, frame) as as_own, as_hub(hub) as central:
            # The sentinel metric's series exists before the garbage (which may use up the
            # frame's distinct series), so that its sample after the garbage is stored.
            await sample(hub, frame, as_own, 41.0)
            await publish_in_rounds(hub, as_own, central, generated, before.received + 1)
            await still_served(hub, admin, frame, as_own)
        # The sentinel's two samples and the heartbeat after the garbage: 3 messages, 4 samples.
        own_samples += 4

        after = await bridge(hub)
        assert after.received == before.received + heard + 3
        dropped = {
            reason: after.dropped.get(reason, 0) - before.dropped.get(reason, 0)
            for reason in {*after.dropped, *DROP_REASONS}
        }
        for reason in DROP_REASONS:
            assert dropped[reason] == expected[reason], (reason, dropped, expected)
        assert dropped.get("no_receiver", 0) == dropped.get("inbox_full", 0) == 0, dropped
        assert dropped.get("proxy_busy", 0) <= to_proxy, dropped
        assert after.connected and after.connects == before.connects == 1, after
        for path in ("/infra/mqtt", f"/frames/{own}", "/frames/fleet", "/domain/telemetry"):
            snapshot = hub.system.snapshot(path)
            assert (snapshot.state, snapshot.restarts) == ("running", 0), (path, snapshot)
        assert hub.system.snapshot("/domain/ota").restarts == 0

        metrics = (await hub.client.get("/metrics", headers=admin.auth)).text
        for reason in DROP_REASONS:
            line = f'framehub_mqtt_dropped_total{{reason="{reason}"}} {after.dropped[reason]}\n'
            assert line in metrics, (line, metrics)
        assert (await hub.client.get("/readyz")).status_code == 200

        # Every sample is accounted for, and only well-formed ones of the frame were stored.
        async def flushed() -> bool:
            now = await stats(hub)
            return now.buffered == 0 and now.stored == now.ingested

        await hub.until(flushed)
        telemetry_after = await stats(hub)
        check_samples(telemetry_before, telemetry_after, own_samples, stranger_samples)
        await check_rows(hub, own, telemetry_after.stored)


async def still_served(hub: Hub, admin: User, frame: Frame, client: Client) -> None:
    """A heartbeat and a telemetry sample sent after all the garbage are taken."""
    marker = "after-the-garbage"
    beat = heartbeat(frame, current_file_id=marker)
    await client.publish(f"frames/{frame.device_id}/heartbeat", beat, qos=1)

    async def applied() -> bool:
        twin = await device(hub, admin, frame)
        return bool(twin["current_file_id"] == marker and twin["online"])

    await hub.until(applied)
    await sample(hub, frame, client, 42.0)


async def sample(hub: Hub, frame: Frame, client: Client, value: float) -> None:
    """Send the frame's ``sentinel`` metric and wait until the sample is stored."""
    payload = telemetry(frame.device_id, time.time(), sentinel=value)
    await client.publish(f"frames/{frame.device_id}/telemetry", payload, qos=1)

    async def stored() -> bool:
        row = await hub.store.fetch_one(
            "SELECT count(*) FROM samples JOIN series USING (series_id) "
            "WHERE device_id = ? AND metric = 'sentinel' AND value = ?",
            (frame.device_id, value),
        )
        return row is not None and row[0] == 1

    await hub.until(stored)


def check_samples(
    before: TelemetryStats, after: TelemetryStats, own_samples: int, stranger_samples: int
) -> None:
    def delta(reason: str) -> int:
        return after.dropped.get(reason, 0) - before.dropped.get(reason, 0)

    assert delta("unknown_device") == stranger_samples, (before, after)
    assert delta("non_finite") == 0, after
    refused = sum(delta(r) for r in ("bad_metric_name", "too_many_metrics", "too_many_series"))
    assert after.ingested - before.ingested + refused == own_samples, (before, after, own_samples)


async def check_rows(hub: Hub, own: str, stored: int) -> None:
    series = await hub.store.fetch_all("SELECT device_id, metric FROM series")
    assert {device_id for device_id, _ in series} == {own}, series[:10]
    bad = [metric for _, metric in series if not re.fullmatch(METRIC_NAME_PATTERN, metric)]
    assert bad == [], bad
    rows = await hub.store.fetch_all("SELECT ts, value FROM samples")
    assert len(rows) == stored
    assert all(math.isfinite(ts) and math.isfinite(value) for ts, value in rows)
    minutes = await hub.store.fetch_all(
        "SELECT min_value, max_value, sum_value, count FROM minute_aggregates"
    )
    assert all(math.isfinite(v) for row in minutes for v in row[:3]), minutes
    assert sum(row[3] for row in minutes) == stored
