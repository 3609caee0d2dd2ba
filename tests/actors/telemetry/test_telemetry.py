"""Telemetry ingest, storage and queries through the whole hub and a real Mosquitto.

Each test runs the hub (``running_hub``) with its managed broker and plays the frame with a
real MQTT client using the credentials its pairing showed. Sample times come from the
messages' timestamps, which the tests choose: they control the samples' time instead of
sleeping. Waiting is on the hub's commits (``hub.until``).
"""

from __future__ import annotations

import itertools
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

import wire
from actors.events import rfc3339
from actors.mqtt import (
    GetMqttStats,
    MqttStats,
)
from actors.telemetry import TelemetryInbound
from tests.harness.hub import DEVICES, Hub, User, running_hub
from tests.harness.replies import body_of, problem
from tests.harness.telemetry import (
    as_frame,
    as_hub,
    send,
    telemetry,
    until_stored,
)

_encode = msgspec.json.encode
METRICS = "/api/v1/metrics"


# -- helpers -----------------------------------------------------------------------------------


async def series(
    hub: Hub, admin: User, device_id: str, metric: str, **query: Any
) -> dict[str, Any]:
    reply = await hub.client.get(
        f"{DEVICES}/{device_id}/telemetry",
        params={"metric": metric, **query},
        headers=admin.auth,
    )
    return body_of(reply, 200)


def parse(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def minute_start(now: float, minutes_ago: int) -> float:
    return (math.floor(now / 60) - minutes_ago) * 60.0


# -- tests -------------------------------------------------------------------------------------


async def test_samples_are_stored_and_queried_raw_and_as_minute_aggregates(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await hub.pair_frame(admin)
        first_minute = minute_start(time.time(), 5)
        # Two minutes of samples: values chosen so min, max and mean differ per minute.
        readings = [(1.0, 20.5, -60), (20.0, 23.0, -58), (59.5, 21.5, -61), (61.0, 30.0, -40)]
        readings.append((90.0, 28.0, -44))
        sent = [
            (first_minute + offset, temperature, rssi) for offset, temperature, rssi in readings
        ]
        async with as_frame(hub, frame) as client:
            for at, temperature, rssi in sent:
                await send(client, frame, at, temperature_c=temperature, wifi_rssi=rssi)
            beat = {
                "frame_id": frame.device_id,
                "firmware_version": "1.0.0",
                "uptime_s": 42.5,
                "free_bytes": 123_456_789,
                "timestamp": rfc3339(first_minute + 100),
            }
            await client.publish(f"frames/{frame.device_id}/heartbeat", _encode(beat), qos=1)
            counted = await until_stored(hub, 2 * len(sent) + 2)
        assert counted.ingested == counted.stored == 12
        assert counted.dropped == {}

        since, until = rfc3339(first_minute), rfc3339(first_minute + 180)
        raw = await series(hub, admin, frame.device_id, "temperature_c", since=since, until=until)
        assert raw["resolution"] == "raw" and raw["aggregates"] == [] and not raw["truncated"]
        assert raw["samples"] == [{"ts": rfc3339(at), "value": value} for at, value, _ in sent]

        minutes = await series(
            hub,
            admin,
            frame.device_id,
            "temperature_c",
            since=since,
            until=until,
            resolution="minute",
        )
        assert minutes["samples"] == []
        expected = []
        for minute in (first_minute, first_minute + 60):
            values = [v for at, v, _ in sent if minute <= at < minute + 60]
            expected.append(
                {
                    "minute": rfc3339(minute),
                    "min": min(values),
                    "max": max(values),
                    "avg": sum(values) / len(values),
                    "count": len(values),
                }
            )
        assert minutes["aggregates"] == expected

        # The default window is the last hour; limit cuts the range short and says so.
        default = await series(hub, admin, frame.device_id, "wifi_rssi")
        assert [p["value"] for p in default["samples"]] == [rssi for _, _, rssi in sent]
        cut = await series(hub, admin, frame.device_id, "wifi_rssi", limit=2)
        assert len(cut["samples"]) == 2 and cut["truncated"]
        # Heartbeats are samples too.
        free = await series(hub, admin, frame.device_id, "free_bytes")
        assert free["samples"] == [{"ts": rfc3339(first_minute + 100), "value": 123_456_789.0}]
        uptime = await series(hub, admin, frame.device_id, "uptime_s")
        assert [p["value"] for p in uptime["samples"]] == [42.5]
        # A metric never seen: nothing, not an error.
        assert (await series(hub, admin, frame.device_id, "humidity"))["samples"] == []

        url = f"{DEVICES}/{frame.device_id}/telemetry"
        problem(
            await hub.client.get(
                f"{DEVICES}/{'0' * 32}/telemetry", params={"metric": "x"}, headers=admin.auth
            ),
            404,
        )
        problem(await hub.client.get(url, params={"metric": "bad name"}, headers=admin.auth), 400)
        problem(
            await hub.client.get(
                url, params={"metric": "x", "since": "yesterday"}, headers=admin.auth
            ),
            400,
        )
        problem(
            await hub.client.get(url, params={"metric": "x", "limit": "10001"}, headers=admin.auth),
            400,
        )
        problem(
            await hub.client.get(
                url, params={"metric": "x", "since": until, "until": since}, headers=admin.auth
            ),
            422,
        )
        member = await hub.new_user("member")
        problem(await hub.client.get(url, params={"metric": "x"}, headers=member.auth), 403)


async def test_metrics_are_defined_redefined_and_listed(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin, member = await hub.new_user("admin", admin=True), await hub.new_user("member")
        made = body_of(
            await hub.client.post(
                METRICS, json={"name": "temperature_c", "unit": "°C"}, headers=admin.auth
            )
        )
        assert made["name"] == "temperature_c" and made["unit"] == "°C"
        assert made["kind"] == "gauge" and made["retention_days"] is None
        counter = {"name": "reboots", "unit": "", "kind": "counter", "retention_days": 30}
        body_of(await hub.client.post(METRICS, json=counter, headers=admin.auth))
        # The same definition again changes nothing; a new unit or retention replaces it.
        body_of(await hub.client.post(METRICS, json=counter, headers=admin.auth))
        changed = body_of(
            await hub.client.post(
                METRICS,
                json={"name": "temperature_c", "unit": "K", "retention_days": 2.5},
                headers=admin.auth,
            )
        )
        assert (changed["unit"], changed["retention_days"]) == ("K", 2.5)
        assert changed["defined_at"] == made["defined_at"]
        listed = body_of(await hub.client.get(METRICS, headers=admin.auth), 200)
        assert [(m["name"], m["unit"], m["kind"]) for m in listed["items"]] == [
            ("temperature_c", "K", "gauge"),
            ("reboots", "", "counter"),
        ]
        defined = await hub.events("metric.defined")
        assert [(e.name, e.unit, e.retention_days) for e in defined] == [
            ("temperature_c", "°C", None),
            ("reboots", "", 30.0),
            ("temperature_c", "K", 2.5),
        ]
        assert defined[0].audit.id == admin.user_id

        for wrong in (
            {"name": "bad name", "unit": "x"},
            {"name": "x" * 65, "unit": "x"},
            {"name": "ok", "unit": "x", "kind": "histogram"},
            {"name": "ok", "unit": "x", "retention_days": 0},
            {"name": "ok"},
            {"name": "ok", "unit": "x", "extra": 1},
        ):
            problem(await hub.client.post(METRICS, json=wrong, headers=admin.auth), 422)
        problem(
            await hub.client.post(METRICS, json={"name": "ok", "unit": ""}, headers=member.auth),
            403,
        )


async def test_sightings_are_coalesced_and_update_the_registry(tmp_path: Path) -> None:
    interval = 1.0
    async with running_hub(tmp_path, TELEMETRY__SEEN_INTERVAL_S=str(interval)) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await hub.pair_frame(admin)
        base = time.time() - 100
        messages = 40
        async with as_frame(hub, frame) as client:
            for i in range(messages):
                await send(client, frame, base + i, brightness=float(i), wifi_rssi=-50.0)

            async def all_seen() -> bool:
                seen = await hub.events("telemetry.data.received")
                return sum(e.samples for e in seen) == 2 * messages

            await hub.until(all_seen)
        seen = await hub.events("telemetry.data.received")
        # Far fewer events than messages, never two within the interval.
        assert 1 <= len(seen) <= 5
        moments = [parse(e.occurred_at) for e in seen]
        assert all(b - a >= interval * 0.9 for a, b in itertools.pairwise(moments))
        assert {e.device_id for e in seen} == {frame.device_id}
        assert seen[-1].last_sample_at == rfc3339(base + messages - 1)

        async def last_seen() -> bool:
            shown = body_of(
                await hub.client.get(f"{DEVICES}/{frame.device_id}", headers=admin.auth), 200
            )
            return bool(shown["last_seen"] == rfc3339(base + messages - 1))

        await hub.until(last_seen)


async def test_bad_input_is_dropped_and_counted_and_good_samples_still_stored(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame, other = await hub.pair_frame(admin), await hub.pair_frame(admin, "Kitchen")
        now = time.time()
        topic = f"frames/{frame.device_id}/telemetry"
        huge = {f"m{i:03d}": float(i) for i in range(100)}
        async with as_frame(hub, frame) as client:
            # Dropped by the bridge, whole: not JSON numbers, wrong types, another frame's id.
            for payload in (
                b'{"frame_id": "%s", "metrics": {"t": NaN}, "timestamp": "x"}'
                % frame.device_id.encode(),
                telemetry(frame.device_id, now, t=None),
                telemetry(frame.device_id, now, t="NaN"),
                telemetry(frame.device_id, now, t="Infinity"),
                b'{"frame_id": "%s", "metrics": {"t": 1e999}, "timestamp": "x"}'
                % frame.device_id.encode(),
                _encode({"frame_id": frame.device_id, "metrics": [1, 2], "timestamp": "x"}),
                _encode({"frame_id": frame.device_id, "metrics": {"t": True}, "timestamp": "x"}),
                telemetry(other.device_id, now, t=1.0),
            ):
                await client.publish(topic, payload)
            # Taken in part: bad names dropped, the first 64 of a huge message kept.
            await send(client, frame, now - 10, **{"bad name": 1.0, "ünïcode": 2.0, "ok": 3.0})
            await send(client, frame, now - 9, **{"x" * 65: 1.0, "": 2.0})
            await client.publish(topic, telemetry(frame.device_id, now - 8, **huge))
            # Unusable timestamps: the sample takes the arrival time.
            for stamp in (
                "yesterday",
                rfc3339(now + 3600),
                "2001-01-01T00:00:00Z",
                "2026-01-01T10:00:00",
            ):
                await client.publish(topic, telemetry(frame.device_id, stamp, late=1.0))
            await until_stored(hub, 1 + 64 + 4)
        # Non-finite values reach the actor only from inside the hub: still refused.
        beat = wire.Heartbeat(
            frame_id=frame.device_id,
            firmware_version="1",
            uptime_s=math.inf,
            free_bytes=1,
            timestamp=rfc3339(now),
        )
        sample = wire.Telemetry(
            frame_id=frame.device_id,
            metrics={"a": math.nan, "b": -math.inf, "ok": 4.0},
            timestamp=rfc3339(now - 5),
        )
        await hub.refs.telemetry.tell(
            TelemetryInbound(items=[sample, beat], received_at=time.time())
        )
        counted = await until_stored(hub, 1 + 64 + 4 + 2)
        assert counted.dropped == {
            "bad_metric_name": 4,
            "too_many_metrics": 36,
            "non_finite": 3,
        }
        assert counted.timestamps_replaced == 4
        assert counted.stored == counted.ingested == 71
        bridge: MqttStats = await hub.refs.mqtt.ask(GetMqttStats())
        assert bridge.dropped == {"malformed": 7, "wrong_frame": 1}

        ok = await series(hub, admin, frame.device_id, "ok")
        assert [p["value"] for p in ok["samples"]] == [3.0, 4.0]
        kept = await series(hub, admin, frame.device_id, "m063")
        assert [p["value"] for p in kept["samples"]] == [63.0]
        assert (await series(hub, admin, frame.device_id, "m064"))["samples"] == []
        late = await series(hub, admin, frame.device_id, "late", since=rfc3339(now - 5))
        assert len(late["samples"]) == 4
        assert all(parse(p["ts"]) >= now - 1 for p in late["samples"])
        assert (await series(hub, admin, other.device_id, "t"))["samples"] == []

        assert hub.system.snapshot("/domain/telemetry").restarts == 0
        assert hub.system.snapshot("/infra/mqtt").restarts == 0
        metrics = (await hub.client.get("/metrics", headers=admin.auth)).text
        assert 'framehub_telemetry_dropped_total{reason="too_many_metrics"} 36\n' in metrics
        assert "framehub_telemetry_stored_total 71\n" in metrics
        assert 'framehub_actor_restarts_total{path="/domain/telemetry"} 0\n' in metrics


async def test_a_frame_cannot_make_metrics_without_end(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await hub.pair_frame(admin)
        now = time.time()
        async with as_frame(hub, frame) as client:
            for k in range(5):
                names = {f"n{k}_{i:02d}": float(i) for i in range(64)}
                await send(client, frame, now - 10 + k, **names)
            # Known metrics are still taken.
            await send(client, frame, now - 1, n0_00=7.0)
            counted = await until_stored(hub, 257)
        assert counted.dropped == {"too_many_series": 64}
        assert counted.series == 256
        kept = await series(hub, admin, frame.device_id, "n0_00")
        assert [p["value"] for p in kept["samples"]] == [0.0, 7.0]
        assert (await series(hub, admin, frame.device_id, "n4_00"))["samples"] == []


async def test_samples_of_unknown_frames_are_dropped(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await hub.pair_frame(admin)
        stranger = "f" * 32
        async with as_hub(hub) as central:
            await central.publish(
                f"frames/{stranger}/telemetry", telemetry(stranger, time.time(), t=1.0, u=2.0)
            )
        async with as_frame(hub, frame) as client:
            await send(client, frame, time.time(), t=1.0)
            counted = await until_stored(hub, 1)
        assert counted.dropped == {"unknown_device": 2}


async def test_retention_prunes_raw_samples_and_aggregates(tmp_path: Path) -> None:
    settings = {"TELEMETRY__AGGREGATE_RETENTION_DAYS": "0.01"}  # 14.4 minutes
    now = time.time()
    async with running_hub(tmp_path, **settings) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await hub.pair_frame(admin)
        body_of(
            await hub.client.post(
                METRICS,
                json={"name": "brief", "unit": "", "retention_days": 1e-5},  # 0.864 s
                headers=admin.auth,
            )
        )
        async with as_frame(hub, frame) as client:
            await send(client, frame, now - 5, brief=1.0, kept=2.0)
            await send(client, frame, now - 20 * 60, old=3.0)
            await until_stored(hub, 3)
        assert len((await series(hub, admin, frame.device_id, "brief"))["samples"]) == 1
    # Retention is applied at start (and every hour).
    async with running_hub(tmp_path, **settings) as hub:

        async def pruned() -> bool:
            return (await series(hub, admin, frame.device_id, "brief"))["samples"] == []

        await hub.until(pruned)
        assert len((await series(hub, admin, frame.device_id, "kept"))["samples"]) == 1
        old = await series(
            hub, admin, frame.device_id, "old", since=rfc3339(now - 3600), resolution="minute"
        )
        assert old["aggregates"] == []
        raw = await series(hub, admin, frame.device_id, "old", since=rfc3339(now - 3600))
        assert len(raw["samples"]) == 1
        recent = await series(hub, admin, frame.device_id, "brief", resolution="minute")
        assert [a["count"] for a in recent["aggregates"]] == [1]
