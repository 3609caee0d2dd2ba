"""Alert rules through the whole hub: evaluation on ingest with a for-duration and hysteresis,
one alert per rule and frame, acknowledging and resolving, scopes, restarts and deleted frames.

Sample times are the messages' timestamps, chosen by the tests: a rule's ``for_seconds`` is
crossed by publishing later timestamps, not by waiting.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from actors.events import AlertResolved, AlertTriggered, rfc3339
from tests.harness.hub import DEVICES, Frame, Hub, User, running_hub
from tests.harness.replies import body_of, problem
from tests.harness.telemetry import as_frame, as_hub, send, stats, telemetry, until_stored

RULES = "/api/v1/alert-rules"
ALERTS = "/api/v1/alerts"


async def new_rule(hub: Hub, admin: User, **fields: Any) -> dict[str, Any]:
    rule = {"comparison": ">", "for_seconds": 0, "severity": "warning", **fields}
    return body_of(await hub.client.post(RULES, json=rule, headers=admin.auth))


async def alerts(hub: Hub, admin: User, **query: Any) -> list[dict[str, Any]]:
    reply = body_of(await hub.client.get(ALERTS, params=query, headers=admin.auth), 200)
    items: list[dict[str, Any]] = reply["items"]
    return items


async def pair(hub: Hub, admin: User, name: str, model: str) -> Frame:
    reply = await hub.client.post(
        DEVICES,
        json={
            "name": name,
            "model": model,
            "hw_version": "rev1",
            "width": 800,
            "height": 480,
            "orientation": "landscape",
        },
        headers=admin.auth,
    )
    paired = body_of(reply)
    return Frame(paired["device_id"], paired["name"], paired["token"], paired["mqtt"])


async def test_an_alert_triggers_once_after_for_seconds_and_clears_with_hysteresis(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await hub.pair_frame(admin)
        rule = await new_rule(
            hub,
            admin,
            metric="temperature_c",
            device_id=frame.device_id,
            threshold=80,
            for_seconds=30,
            clear_threshold=70,
            severity="critical",
        )
        assert rule["enabled"] is True and rule["clear_threshold"] == 70
        created = await hub.events("alert.rule.created")
        assert [(e.rule_id, e.for_seconds, e.clear_threshold) for e in created] == [
            (rule["rule_id"], 30.0, 70.0)
        ]
        t0 = time.time() - 600
        stored = 0
        async with as_frame(hub, frame) as client:
            # Breaching for 20 s of sample time: not long enough.
            for offset in (0, 10, 20):
                await send(client, frame, t0 + offset, temperature_c=85.0)
            stored = (await until_stored(hub, stored + 3)).stored
            assert await alerts(hub, admin) == []

            # Breaching at 30 s: one alert, whatever follows.
            await send(client, frame, t0 + 30, temperature_c=90.5)
            for offset in range(31, 71):
                await send(client, frame, t0 + offset, temperature_c=95.0)
            stored = (await until_stored(hub, stored + 41)).stored
            (alert,) = await alerts(hub, admin)
            assert alert == {
                "alert_id": alert["alert_id"],
                "rule_id": rule["rule_id"],
                "device_id": frame.device_id,
                "metric": "temperature_c",
                "state": "active",
                "severity": "critical",
                "value": 90.5,
                "triggered_at": rfc3339(t0 + 30),
                "resolved_at": None,
                "acknowledged_at": None,
                "note": "",
            }
            (triggered,) = await hub.events("alert.triggered")
            assert isinstance(triggered, AlertTriggered)
            assert (triggered.alert_id, triggered.value) == (alert["alert_id"], 90.5)

            # Below the threshold but above the clear threshold: still active.
            await send(client, frame, t0 + 71, temperature_c=75.0)
            # Breaching again: still the same one alert.
            await send(client, frame, t0 + 72, temperature_c=99.0)
            await send(client, frame, t0 + 73, temperature_c=71.0)
            stored = (await until_stored(hub, stored + 3)).stored
            assert [a["state"] for a in await alerts(hub, admin)] == ["active"]

            # At the clear threshold: resolved by itself.
            await send(client, frame, t0 + 74, temperature_c=70.0)
            stored = (await until_stored(hub, stored + 1)).stored
            (resolved,) = await alerts(hub, admin)
            assert resolved["state"] == "resolved"
            assert resolved["resolved_at"] == rfc3339(t0 + 74)
            assert resolved["note"] == "cleared: temperature_c 70"
            (event,) = await hub.events("alert.resolved")
            assert isinstance(event, AlertResolved)
            assert (event.alert_id, event.automatic) == (alert["alert_id"], True)
            assert event.correlation_id == triggered.correlation_id

            # A new breach needs its own 30 s.
            for offset in (80, 100):
                await send(client, frame, t0 + offset, temperature_c=88.0)
            stored = (await until_stored(hub, stored + 2)).stored
            assert len(await alerts(hub, admin)) == 1
            await send(client, frame, t0 + 110, temperature_c=88.0)
            stored = (await until_stored(hub, stored + 1)).stored
            states = [a["state"] for a in await alerts(hub, admin)]
            assert states == ["active", "resolved"]
        assert len(await hub.events("alert.triggered")) == 2
        assert (await stats(hub)).open_alerts == 1


async def test_alerts_are_acknowledged_and_resolved_by_hand(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin, member = await hub.new_user("admin", admin=True), await hub.new_user("member")
        frame = await hub.pair_frame(admin)
        await new_rule(hub, admin, metric="load", threshold=1.0)
        t0 = time.time() - 300
        async with as_frame(hub, frame) as client:
            await send(client, frame, t0, load=2.0)
            await until_stored(hub, 1)
            (alert,) = await alerts(hub, admin, state="active")
            url = f"{ALERTS}/{alert['alert_id']}"

            problem(await hub.client.post(f"{url}/acknowledge", headers=member.auth), 403)
            acked = body_of(await hub.client.post(f"{url}/acknowledge", headers=admin.auth), 200)
            assert acked["state"] == "acknowledged" and acked["acknowledged_at"]
            again = body_of(await hub.client.post(f"{url}/acknowledge", headers=admin.auth), 200)
            assert again == acked
            (acknowledged,) = await hub.events("alert.acknowledged")
            assert (acknowledged.alert_id, acknowledged.audit.id) == (
                alert["alert_id"],
                admin.user_id,
            )
            assert await alerts(hub, admin, state="active") == []
            assert [a["alert_id"] for a in await alerts(hub, admin, state="acknowledged")] == [
                alert["alert_id"]
            ]

            # Still breaching while acknowledged: no second alert.
            await send(client, frame, t0 + 1, load=3.0)
            await until_stored(hub, 2)
            assert len(await alerts(hub, admin)) == 1

            note = {"note": "fan replaced"}
            resolved = body_of(
                await hub.client.post(f"{url}/resolve", json=note, headers=admin.auth), 200
            )
            assert resolved["state"] == "resolved" and resolved["note"] == "fan replaced"
            assert (
                resolved["resolved_at"] and resolved["acknowledged_at"] == acked["acknowledged_at"]
            )
            (event,) = await hub.events("alert.resolved")
            assert (event.alert_id, event.note, event.automatic) == (
                alert["alert_id"],
                "fan replaced",
                False,
            )
            assert event.audit.id == admin.user_id
            # The alert and its event committed together.
            row = await hub.store.fetch_one(
                "SELECT state, note FROM alerts WHERE alert_id = ?", (alert["alert_id"],)
            )
            assert row == ("resolved", "fan replaced")

            problem(await hub.client.post(f"{url}/resolve", json=note, headers=admin.auth), 409)
            problem(await hub.client.post(f"{url}/acknowledge", headers=admin.auth), 409)
            missing = f"{ALERTS}/{'0' * 32}"
            problem(await hub.client.post(f"{missing}/resolve", json=note, headers=admin.auth), 404)
            problem(await hub.client.post(f"{missing}/acknowledge", headers=admin.auth), 404)
            problem(
                await hub.client.post(f"{url}/resolve", json={"note": 5}, headers=admin.auth), 422
            )

            # Resolved by hand while the value still breaches: the next breaching sample
            # starts a new alert (for_seconds is 0 here).
            await send(client, frame, t0 + 2, load=4.0)
            await until_stored(hub, 3)
            newest, oldest = await alerts(hub, admin)
            assert (newest["state"], newest["value"], oldest["state"]) == (
                "active",
                4.0,
                "resolved",
            )
            # Pages: newest first, one at a time.
            first = body_of(
                await hub.client.get(ALERTS, params={"limit": 1}, headers=admin.auth), 200
            )
            assert [a["alert_id"] for a in first["items"]] == [newest["alert_id"]]
            second = body_of(
                await hub.client.get(
                    ALERTS, params={"limit": 1, "cursor": first["next_cursor"]}, headers=admin.auth
                ),
                200,
            )
            assert [a["alert_id"] for a in second["items"]] == [oldest["alert_id"]]
            assert second["next_cursor"] is None
            assert await alerts(hub, admin, device_id="0" * 32) == []
            problem(await hub.client.get(ALERTS, params={"state": "open"}, headers=admin.auth), 400)
            problem(await hub.client.get(ALERTS, params={"cursor": "x"}, headers=admin.auth), 400)


async def test_rules_match_only_the_frames_of_their_scope(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        hall = await pair(hub, admin, "Hall", "FH-10")
        kitchen = await pair(hub, admin, "Kitchen", "FH-20")
        study = await pair(hub, admin, "Study", "FH-20")
        one = await new_rule(hub, admin, metric="t", threshold=10, device_id=hall.device_id)
        model = await new_rule(hub, admin, metric="t", threshold=10, model="FH-20")
        every = await new_rule(hub, admin, metric="t", threshold=10, severity="info")
        other_metric = await new_rule(hub, admin, metric="u", threshold=10)
        at = time.time() - 60
        for frame in (hall, kitchen, study):
            async with as_frame(hub, frame) as client:
                await send(client, frame, at, t=11.0, u=1.0)
        await until_stored(hub, 6)
        fired = {(a["rule_id"], a["device_id"]) for a in await alerts(hub, admin)}
        assert fired == {
            (one["rule_id"], hall.device_id),
            (model["rule_id"], kitchen.device_id),
            (model["rule_id"], study.device_id),
            (every["rule_id"], hall.device_id),
            (every["rule_id"], kitchen.device_id),
            (every["rule_id"], study.device_id),
        }
        assert other_metric["rule_id"] not in {rule for rule, _ in fired}
        listed = body_of(await hub.client.get(RULES, headers=admin.auth), 200)["items"]
        assert [r["rule_id"] for r in listed] == [
            r["rule_id"] for r in (one, model, every, other_metric)
        ]

        base = {"metric": "t", "comparison": ">", "threshold": 10, "for_seconds": 0}
        for wrong, status in (
            ({**base, "severity": "info", "device_id": hall.device_id, "model": "FH-10"}, 422),
            ({**base, "severity": "info", "device_id": "0" * 32}, 404),
            ({**base, "severity": "info", "clear_threshold": 11}, 422),
            ({**base, "severity": "info", "comparison": "=="}, 422),
            ({**base, "severity": "fatal"}, 422),
            ({**base, "severity": "info", "for_seconds": -1}, 422),
            ({**base, "severity": "info", "metric": "no spaces"}, 422),
            (base, 422),
        ):
            problem(await hub.client.post(RULES, json=wrong, headers=admin.auth), status)
        below = {**base, "severity": "info", "comparison": "<", "clear_threshold": 9}
        problem(await hub.client.post(RULES, json=below, headers=admin.auth), 422)
        assert (
            body_of(
                await hub.client.post(
                    RULES, json={**below, "clear_threshold": 12}, headers=admin.auth
                )
            )["clear_threshold"]
            == 12
        )


async def test_rule_state_survives_a_hub_restart(tmp_path: Path) -> None:
    t0 = time.time() - 600
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await hub.pair_frame(admin)
        await new_rule(hub, admin, metric="temperature_c", threshold=50, for_seconds=60)
        async with as_frame(hub, frame) as client:
            await send(client, frame, t0, temperature_c=55.0)
            await send(client, frame, t0 + 30, temperature_c=56.0)
            await until_stored(hub, 2)
        assert await alerts(hub, admin) == []
    async with running_hub(tmp_path) as hub:
        async with as_frame(hub, frame) as client:
            await send(client, frame, t0 + 59, temperature_c=57.0)
            await until_stored(hub, 1)
            assert await alerts(hub, admin) == []
            # 60 s after the breach began, which the previous run saw.
            await send(client, frame, t0 + 60, temperature_c=58.0)
            await send(client, frame, t0 + 61, temperature_c=59.0)
            await until_stored(hub, 3)
        (alert,) = await alerts(hub, admin)
        assert (alert["triggered_at"], alert["value"]) == (rfc3339(t0 + 60), 58.0)
    async with running_hub(tmp_path) as hub:
        # The open alert is remembered too: more breaching samples add none.
        async with as_frame(hub, frame) as client:
            await send(client, frame, t0 + 200, temperature_c=60.0)
            await until_stored(hub, 1)
        assert len(await alerts(hub, admin)) == 1
        assert len(await hub.events("alert.triggered")) == 1


async def test_deleting_a_frame_disables_its_rules_and_resolves_its_alerts(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        doomed, kept = await hub.pair_frame(admin), await hub.pair_frame(admin, "Kitchen")
        own = await new_rule(hub, admin, metric="t", threshold=1, device_id=doomed.device_id)
        every = await new_rule(hub, admin, metric="t", threshold=1)
        at = time.time() - 60
        for frame in (doomed, kept):
            async with as_frame(hub, frame) as client:
                await send(client, frame, at, t=2.0)
        await until_stored(hub, 2)
        assert len(await alerts(hub, admin, state="active")) == 3

        deleted = await hub.client.delete(f"{DEVICES}/{doomed.device_id}", headers=admin.auth)
        assert deleted.status_code == 204

        async def handled() -> bool:
            return len(await hub.events("alert.resolved")) == 2

        await hub.until(handled)
        resolved = await hub.events("alert.resolved")
        assert {(e.device_id, e.note, e.automatic) for e in resolved} == {
            (doomed.device_id, "device deleted", True)
        }
        rules = body_of(await hub.client.get(RULES, headers=admin.auth), 200)["items"]
        assert {r["rule_id"]: r["enabled"] for r in rules} == {
            own["rule_id"]: False,
            every["rule_id"]: True,
        }
        remaining = await alerts(hub, admin, state="active")
        assert [(a["device_id"], a["rule_id"]) for a in remaining] == [
            (kept.device_id, every["rule_id"])
        ]
        # Its samples are no longer taken (the hub's own user may still publish for it).
        before = (await stats(hub)).stored
        async with as_hub(hub) as central:
            topic = f"frames/{doomed.device_id}/telemetry"
            await central.publish(topic, telemetry(doomed.device_id, at + 1, t=5.0))
        async with as_frame(hub, kept) as client:
            await send(client, kept, at + 1, t=0.5)
            counted = await until_stored(hub, before + 1)
        assert counted.dropped == {"unknown_device": 1}
        problem(
            await hub.client.get(
                f"{DEVICES}/{doomed.device_id}/telemetry",
                params={"metric": "t"},
                headers=admin.auth,
            ),
            404,
        )
        assert hub.system.snapshot("/domain/telemetry").restarts == 0
        # A rule for a deleted frame cannot be made.
        problem(
            await hub.client.post(
                RULES,
                json={
                    "metric": "t",
                    "comparison": ">",
                    "threshold": 1,
                    "for_seconds": 0,
                    "severity": "info",
                    "device_id": doomed.device_id,
                },
                headers=admin.auth,
            ),
            404,
        )
