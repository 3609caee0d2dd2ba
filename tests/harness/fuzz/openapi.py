"""A real hub for schemathesis: ``run.py serve`` in a child process on loopback ports, filled
over HTTP with one or more of everything the API names by id, and the ids the fuzzer may use.

The fuzzer's own requests are synchronous (``requests``), so everything here is too: the hub
is a child process (its readiness is its "framehub ready" log line, read by a thread), and the
objects are made with ``httpx.Client`` as a phone, an admin app and a frame make them.

``FuzzHub.ids(caller)`` says which real ids a generated request may name in its path or body:
a path parameter ``file_id`` draws from the photos, ``device_id`` from the frames, and so on.
Deleting routes draw from their own ``victims`` so that every other route still finds its
objects there however the deletions went.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from bench._hub import HubProcess
from tests.harness.photos import jpeg, png

WAIT_S = 60.0

KIND_OF = {
    "file_id": "photo",
    "album_id": "album",
    "device_id": "frame",
    "frame_id": "frame",
    "playlist_id": "playlist",
    "schedule_id": "schedule",
    "firmware_id": "firmware",
    "campaign_id": "campaign",
    "alert_id": "alert",
    "notification_id": "notification",
    "command_id": "command",
    "asset": "asset",
}
"""The kind of object a path parameter or body field of that name refers to."""

OWNED = frozenset({"photo", "album", "playlist", "schedule", "notification"})
"""Kinds of objects that belong to one user (frames, firmware, campaigns and alerts are the
hub's, behind admin-only routes)."""

PAIRING = {
    "model": "FH-10",
    "hw_version": "rev2",
    "width": 1024,
    "height": 600,
    "orientation": "landscape",
}


@dataclass
class Caller:
    """A token and the ids its requests may name: its own objects and some of others'."""

    name: str
    token: str = field(repr=False)
    keep: dict[str, list[str]] = field(default_factory=dict, repr=False)
    """Objects no generated request deletes (named by every route but the deleting ones)."""
    victims: dict[str, list[str]] = field(default_factory=dict, repr=False)
    """Objects the deleting routes may delete."""
    foreign: set[str] = field(default_factory=set, repr=False)
    """Another user's objects among these: a request that names one must not succeed."""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def add(self, kind: str, object_id: str, *, victim: bool = False) -> None:
        pool = self.victims if victim else self.keep
        pool.setdefault(kind, []).append(object_id)

    def ids(self, kind: str, *, deleting: bool) -> list[str]:
        return list((self.victims if deleting else self.keep).get(kind, []))


@dataclass
class FuzzHub:
    """The running hub, its callers and the ids they may name."""

    process: HubProcess
    log_path: Path
    admin: Caller
    member: Caller

    @property
    def base_url(self) -> str:
        return self.process.base_url

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_lines(self, needle: str) -> list[str]:
        """The hub's log lines that contain ``needle``."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [line for line in text.splitlines() if needle in line]

    def openapi(self, caller: Caller) -> dict[str, Any]:
        """``GET /openapi.json`` with ``caller``'s token."""
        response = httpx.get(f"{self.base_url}/openapi.json", headers=caller.auth, timeout=WAIT_S)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    def ready(self) -> httpx.Response:
        return httpx.get(f"{self.base_url}/readyz", timeout=WAIT_S)


def until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Re-check ``check`` until it returns something truthy (bounded by ``timeout``): how a
    client outside the hub waits for work the hub does after answering."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(0.05)


def _body(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, (
        response.request.url,
        response.status_code,
        response.text,
    )
    return response.json() if response.content else None


def _publish(mqtt: dict[str, Any], topic: str, payload: bytes) -> None:
    """Publish once with a frame's own MQTT credentials (QoS 1: the broker acknowledged it)."""

    async def run() -> None:
        async with aiomqtt.Client(
            mqtt["host"],
            int(mqtt["port"]),
            username=mqtt["username"],
            password=mqtt["password"],
            identifier=mqtt["client_id"],
        ) as client:
            await client.publish(topic, payload, qos=1)

    asyncio.run(run())


def _timestamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def populate(base_url: str, admin: Caller, member: Caller) -> None:
    """Make the objects the routes name, as the apps and a frame make them."""
    with httpx.Client(base_url=base_url, timeout=WAIT_S) as client:

        def post(caller: Caller, url: str, status: int = 201, **kwargs: Any) -> Any:
            return _body(client.post(url, headers=caller.auth, **kwargs), status)

        def get(caller: Caller, url: str, **kwargs: Any) -> Any:
            return _body(client.get(url, headers=caller.auth, **kwargs), 200)

        def upload(caller: Caller, data: bytes, name: str) -> str:
            made = post(caller, "/api/v1/storage/photos/upload", files={"file": (name, data)})
            return str(made["file_id"])

        def versions(caller: Caller, file_id: str) -> set[str]:
            photo = get(caller, f"/api/v1/photos/{file_id}")
            return {version["size"] for version in photo["versions"]}

        # Frames: paired by the admin (only admins may). Each one's own token is a caller of
        # the frame routes elsewhere; here they are objects the routes name.
        frames = []
        for index, victim in enumerate((False, False, True, True)):
            paired = post(admin, "/api/v1/devices", json={"name": f"Frame {index}", **PAIRING})
            frames.append(paired)
            admin.add("frame", paired["device_id"], victim=victim)
        keeper = frames[0]

        # Photos: JPEG and PNG, the admin's and the member's (each sees only its own).
        for caller, base in ((admin, 10), (member, 20)):
            for offset, victim in enumerate((False, False, True, True)):
                data = (jpeg if offset % 2 == 0 else png)(320, 240, seed=base + offset)
                caller.add("photo", upload(caller, data, f"p{offset}.jpg"), victim=victim)

        # Versions (thumbnail, hd) follow an upload's analysis: wait until the kept ones exist.
        for caller in (admin, member):
            for file_id in caller.keep["photo"]:
                until(
                    lambda c=caller, f=file_id: versions(c, f) >= {"thumbnail", "hd"},
                    f"the versions of {file_id}",
                )

        # Albums with photos, one assigned to a frame.
        for caller in (admin, member):
            for index, victim in enumerate((False, False, True)):
                album = post(caller, "/api/v1/albums", json={"name": f"Album {index}"})
                caller.add("album", album["album_id"], victim=victim)
                for file_id in caller.keep["photo"]:
                    url = f"/api/v1/albums/{album['album_id']}/photos"
                    post(caller, url, json={"file_id": file_id})
        client.put(
            f"/api/v1/devices/{keeper['device_id']}/albums",
            json={"album_ids": admin.keep["album"][:1]},
            headers=admin.auth,
        ).raise_for_status()

        # Playlists and schedules.
        for caller in (admin, member):
            for index, victim in enumerate((False, True, True)):
                playlist = post(
                    caller,
                    "/api/v1/playlists",
                    json={"name": f"Playlist {index}", "file_ids": caller.keep["photo"]},
                )
                caller.add("playlist", playlist["playlist_id"], victim=victim)
            for index, victim in enumerate((False, True, True)):
                schedule = post(
                    caller,
                    "/api/v1/schedules",
                    json={
                        "frame_id": keeper["device_id"],
                        "interval_s": 60 + index,
                        "playlist_id": caller.keep["playlist"][0],
                        "quiet_start": "22:00",
                        "quiet_end": "07:00",
                    },
                )
                caller.add("schedule", schedule["schedule_id"], victim=victim)

        # A command to a frame (it is offline: the command waits for it).
        for device, body in (
            (keeper, {"command": "show", "args": {"file_id": admin.keep["photo"][0]}}),
            (frames[1], {"command": "next"}),
        ):
            command = post(admin, f"/api/v1/devices/{device['device_id']}/commands", 202, json=body)
            admin.add("command", command["command_id"])

        # Firmware and campaigns: a draft, a started one and a cancelled one.
        for index, version in enumerate(("2.0.0", "2.1.0")):
            firmware = post(
                admin,
                "/api/v1/firmware",
                files={"file": (f"fh10-{version}.bin", os.urandom(4096 + index))},
                data={"version": version, "model": "FH-10", "min_hw_version": "rev1"},
            )
            admin.add("firmware", firmware["firmware_id"])
        targets = [device["device_id"] for device in frames[:2]]
        for name, action in (("draft", None), ("started", "start"), ("cancelled", "cancel")):
            campaign = post(
                admin,
                "/api/v1/campaigns",
                json={
                    "name": name,
                    "firmware_id": admin.keep["firmware"][0],
                    "device_ids": targets,
                    "batch_size": 1,
                },
            )
            admin.add("campaign", campaign["campaign_id"])
            if action == "cancel":
                post(admin, f"/api/v1/campaigns/{campaign['campaign_id']}/start", 200)
            if action is not None:
                post(admin, f"/api/v1/campaigns/{campaign['campaign_id']}/{action}", 200)

        # Telemetry: a metric, rules, and samples from a frame that breach them (alerts, and
        # with them notifications for the admins).
        post(admin, "/api/v1/metrics", json={"name": "temperature_c", "unit": "C"})
        for severity in ("warning", "critical"):
            post(
                admin,
                "/api/v1/alert-rules",
                json={
                    "metric": "temperature_c",
                    "comparison": ">",
                    "threshold": 50 if severity == "warning" else 70,
                    "for_seconds": 0,
                    "severity": severity,
                    "device_id": keeper["device_id"],
                },
            )
        sample = {
            "frame_id": keeper["device_id"],
            "metrics": {"temperature_c": 90.0},
            "timestamp": _timestamp(time.time()),
        }
        _publish(
            keeper["mqtt"], f"frames/{keeper['device_id']}/telemetry", json.dumps(sample).encode()
        )
        alerts = until(
            lambda: len(items := get(admin, "/api/v1/alerts")["items"]) >= 2 and items,
            "the alerts of the breaching sample",
        )
        for alert in alerts:
            admin.add("alert", alert["alert_id"])
        notifications = until(
            lambda: get(admin, "/api/v1/notifications")["items"], "the admin's notifications"
        )
        for notification in notifications:
            admin.add("notification", notification["notification_id"])

        for caller in (admin, member):
            for asset in ("console.css", "console.js"):
                caller.add("asset", asset)


@contextmanager
def fuzz_hub(directory: Path, **settings: str) -> Iterator[FuzzHub]:
    """A started hub with an admin, a member and their objects; stopped at the end."""
    log_path = directory / "hub.log"
    with HubProcess(directory, log=log_path, LOG_LEVEL="INFO", **settings) as hub:
        admin = Caller("admin", hub.add_user("admin", admin=True))
        made = _body(
            httpx.post(
                f"{hub.base_url}/api/v1/users",
                json={"name": "member"},
                headers=admin.auth,
                timeout=WAIT_S,
            ),
            201,
        )
        member = Caller("member", made["token"])
        populate(hub.base_url, admin, member)
        # What the member may name: its own objects and the admin's, which it must not reach
        # (nor delete: they are among its victims too).
        for kind, ids in admin.keep.items():
            for object_id in ids:
                member.add(kind, object_id)
                if kind in OWNED:
                    member.add(kind, object_id, victim=True)
                    member.foreign.add(object_id)
        yield FuzzHub(hub, log_path, admin, member)
