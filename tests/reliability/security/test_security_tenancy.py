"""Tenancy: a user reaches only their own photos, albums, playlists, schedules and
notifications; a frame only the photos of the albums it is assigned, for itself.

Each refusal is checked against the same request naming an id that does not exist: the two
answers must be the same (status and words, but for the id), so that a refusal never tells
whether someone else's photo or album exists. Nothing a refused request names may change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from actors.events import new_id
from tests.harness.hub import DEVICES, Frame, Hub, User, running_hub
from tests.harness.ota import firmware, image, new_campaign
from tests.harness.photos import jpeg
from tests.harness.replies import body_of
from tests.harness.security import assign, fill, refused, served_routes

DOWNLOAD = "/api/v1/files/download"


@dataclass(frozen=True)
class Holdings:
    """What one user owns."""

    user: User
    photo: str
    loose_photo: str
    """In none of their albums."""
    album: str
    playlist: str
    schedule: str
    photo_bytes: bytes


async def holdings(hub: Hub, user: User, frame: Frame, seed: int) -> Holdings:
    client, auth = hub.client, user.auth
    data = jpeg(seed=seed)
    photo = body_of(await hub.upload(user, data, f"{user.name}.jpg"))["file_id"]
    loose = body_of(await hub.upload(user, jpeg(seed=seed + 1)))["file_id"]
    album = body_of(await client.post("/api/v1/albums", json={"name": "Ours"}, headers=auth))
    body_of(
        await client.post(
            f"/api/v1/albums/{album['album_id']}/photos", json={"file_id": photo}, headers=auth
        )
    )
    playlist = body_of(
        await client.post(
            "/api/v1/playlists", json={"name": "P", "file_ids": [photo]}, headers=auth
        )
    )
    schedule = body_of(
        await client.post(
            "/api/v1/schedules",
            json={
                "frame_id": frame.device_id,
                "interval_s": 60,
                "playlist_id": playlist["playlist_id"],
            },
            headers=auth,
        )
    )
    return Holdings(
        user,
        photo,
        loose,
        album["album_id"],
        playlist["playlist_id"],
        schedule["schedule_id"],
        data,
    )


# Each operation on another's things: (what, method, path, JSON body). ``{file}``, ``{album}``,
# ``{playlist}``, ``{schedule}`` name the victim's (or, to compare, ids that do not exist);
# ``{own_*}`` the caller's own things; ``{frame}`` a paired frame.
OPERATIONS: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("read a photo", "GET", "/api/v1/photos/{file}", None),
    ("download an original", "GET", DOWNLOAD + "/{file}", None),
    ("download a thumbnail", "GET", DOWNLOAD + "/{file}?size=thumbnail", None),
    ("download the hd version", "GET", DOWNLOAD + "/{file}?size=hd", None),
    ("download a frame's version", "GET", DOWNLOAD + "/{file}?size=frame&frame_id={frame}", None),
    ("delete a photo", "DELETE", "/api/v1/files/{file}", None),
    ("read an album", "GET", "/api/v1/albums/{album}", None),
    ("delete an album", "DELETE", "/api/v1/albums/{album}", None),
    ("add the photo to its album", "POST", "/api/v1/albums/{album}/photos", {"file_id": "{file}"}),
    ("add an own photo to the album", "POST", "/api/v1/albums/{album}/photos",
     {"file_id": "{own_file}"}),
    ("add the photo to an own album", "POST", "/api/v1/albums/{own_album}/photos",
     {"file_id": "{file}"}),
    ("take the photo out of its album", "DELETE", "/api/v1/albums/{album}/photos/{file}", None),
    ("read a playlist", "GET", "/api/v1/playlists/{playlist}", None),
    ("rename a playlist", "PATCH", "/api/v1/playlists/{playlist}", {"name": "Mine"}),
    ("fill a playlist with own photos", "PATCH", "/api/v1/playlists/{playlist}",
     {"file_ids": ["{own_file}"]}),
    ("delete a playlist", "DELETE", "/api/v1/playlists/{playlist}", None),
    ("make a playlist of the photo", "POST", "/api/v1/playlists",
     {"name": "Taken", "file_ids": ["{own_file}", "{file}"]}),
    ("put the photo in an own playlist", "PATCH", "/api/v1/playlists/{own_playlist}",
     {"file_ids": ["{file}"]}),
    ("schedule a frame with the playlist", "POST", "/api/v1/schedules",
     {"frame_id": "{frame}", "interval_s": 60, "playlist_id": "{playlist}"}),
    ("delete a schedule", "DELETE", "/api/v1/schedules/{schedule}", None),
]  # fmt: skip


def _filled(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return fill(value, ids)
    if isinstance(value, list):
        return [_filled(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _filled(item, ids) for key, item in value.items()}
    return value


def words(response: httpx.Response, ids: dict[str, str]) -> tuple[int, str]:
    """The refusal's status and detail with the ids it names replaced by their roles."""
    detail = refused(response, response.status_code)["detail"]
    for role, value in ids.items():
        detail = detail.replace(value, f"<{role}>")
    return response.status_code, detail


async def as_unknown(
    hub: Hub, caller: User | Frame, method: str, path: str, body: Any, real: dict[str, str]
) -> tuple[int, str]:
    """Ask about ``real`` ids, then about unknown ones in their place: the two answers must be
    the same refusal; it is returned."""
    unknown = {role: new_id() for role in real}
    answers = []
    for ids in (real, unknown):
        response = await hub.client.request(
            method, fill(path, ids), json=_filled(body, ids), headers=caller.auth
        )
        answers.append(words(response, ids))
    assert answers[0] == answers[1], (method, path, answers)
    return answers[0]


async def view(hub: Hub, owner: Holdings) -> list[Any]:
    """Everything ``owner`` sees of their things."""
    client, auth = hub.client, owner.user.auth
    seen: list[Any] = [
        body_of(await client.get(url, headers=auth), 200)
        for url in (
            "/api/v1/photos",
            f"/api/v1/albums/{owner.album}",
            f"/api/v1/playlists/{owner.playlist}",
            "/api/v1/schedules",
            "/api/v1/albums",
            "/api/v1/playlists",
        )
    ]
    for file_id in (owner.photo, owner.loose_photo):
        original = await client.get(f"{DOWNLOAD}/{file_id}", headers=auth)
        assert original.status_code == 200
        seen.append(original.content)
    return seen


async def events_by(hub: Hub, user: User, besides: str | None = None) -> int:
    """How many events name ``user`` (every event a user's request causes does), leaving out
    those that name ``besides``."""
    rows = await hub.store.fetch_all(
        "SELECT CAST(payload AS TEXT) FROM events WHERE CAST(payload AS TEXT) LIKE ?",
        (f"%{user.user_id}%",),
    )
    return sum(1 for (payload,) in rows if besides is None or besides not in payload)


async def test_a_user_cannot_reach_another_users_things_nor_learn_they_exist(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        hall = await hub.pair_frame(admin, "Hall")
        alice = await holdings(hub, await hub.new_user("alice"), hall, seed=11)
        bob = await holdings(hub, await hub.new_user("bob"), hall, seed=21)
        await hub.analysed()
        before = {who.user.name: await view(hub, who) for who in (alice, bob)}
        caused = {who.user.name: await events_by(hub, who.user) for who in (alice, bob)}

        asked = 0
        for victim, intruder in ((alice, bob), (bob, alice)):
            own = {
                "own_file": intruder.photo,
                "own_album": intruder.album,
                "own_playlist": intruder.playlist,
                "frame": hall.device_id,
            }
            for what, method, path, body in OPERATIONS:
                named = path + str(body)
                photos = [victim.photo, victim.loose_photo] if "{file}" in named else [victim.photo]
                for file_id in photos:
                    real = {
                        "file": file_id,
                        "album": victim.album,
                        "playlist": victim.playlist,
                        "schedule": victim.schedule,
                    }
                    ids = {role: value for role, value in real.items() if f"{{{role}}}" in named}
                    template = {**own, **{role: f"{{{role}}}" for role in ids}}
                    refusal = await as_unknown(
                        hub,
                        intruder.user,
                        method,
                        fill(path, template),
                        _filled(body, template),
                        ids,
                    )
                    asked += 1
                    assert refusal[0] == 404, (what, refusal)

        # Lists show the caller's own things only.
        for who, other in ((alice, bob), (bob, alice)):
            for url in (
                "/api/v1/photos",
                "/api/v1/albums",
                "/api/v1/playlists",
                "/api/v1/schedules",
            ):
                listed = (await hub.client.get(url, headers=who.user.auth)).text
                for foreign in (other.photo, other.loose_photo, other.album, other.playlist):
                    assert foreign not in listed, (who.user.name, url)
                assert other.schedule not in listed

        # Uploading the other's very bytes, naming their album: a new photo of one's own (201,
        # not "you have this already"), filed nowhere.
        copied = await hub.upload(bob.user, alice.photo_bytes, metadata={"album_id": alice.album})
        copy = body_of(copied, 201)["file_id"]
        assert copy not in (alice.photo, alice.loose_photo)
        await hub.analysed()

        after = {who.user.name: await view(hub, who) for who in (alice, bob)}
        assert after["alice"] == before["alice"]
        photos_after, *rest_after = after["bob"]
        photos_before, *rest_before = before["bob"]
        assert rest_after == rest_before
        assert [p["file_id"] for p in photos_after["items"]] == [copy] + [
            p["file_id"] for p in photos_before["items"]
        ]
        # The refused requests caused nothing: the only new events are Bob's upload's.
        assert await events_by(hub, alice.user) == caused["alice"]
        assert await events_by(hub, bob.user, besides=copy) == caused["bob"]
        print(f"\n{asked} refusals between two users, each the same as for an unknown id")


async def test_an_admins_notifications_are_their_own(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        first = await hub.new_user("first", admin=True)
        second = await hub.new_user("second", admin=True)
        member = await hub.new_user("member")
        await hub.pair_frame(first)
        image_id = (await firmware(hub, first, image()))["firmware_id"]
        await new_campaign(hub, first, firmware_id=image_id, models=["FH-10"], batch_size=1)

        async def notified(admin: User) -> list[dict[str, Any]]:
            page = await hub.client.get("/api/v1/notifications", headers=admin.auth)
            items: list[dict[str, Any]] = body_of(page, 200)["items"]
            return items

        async def both_told() -> bool:
            return bool(await notified(first)) and bool(await notified(second))

        await hub.until(both_told)
        mine, theirs = (await notified(first))[0], (await notified(second))[0]
        assert mine["notification_id"] != theirs["notification_id"]
        for caller, foreign in ((second, mine), (first, theirs), (member, mine)):
            path = "/api/v1/notifications/{notification}/read"
            refusal = await as_unknown(
                hub, caller, "POST", path, None, {"notification": foreign["notification_id"]}
            )
            assert refusal[0] == 404
        assert await notified(member) == []
        assert [n["read_at"] for n in await notified(first)] == [None]
        assert [n["read_at"] for n in await notified(second)] == [None]


async def test_a_frame_gets_only_its_albums_photos_for_itself_and_nothing_of_another_frame(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        hall, kitchen = await hub.pair_frame(admin, "Hall"), await hub.pair_frame(admin, "Kitchen")
        alice = await holdings(hub, await hub.new_user("alice"), hall, seed=31)
        bob = await holdings(hub, await hub.new_user("bob"), kitchen, seed=41)
        unshown = body_of(
            await hub.client.post(
                "/api/v1/albums", json={"name": "Unshown"}, headers=alice.user.auth
            )
        )["album_id"]
        kept = body_of(await hub.upload(alice.user, jpeg(seed=35)))["file_id"]
        body_of(
            await hub.client.post(
                f"/api/v1/albums/{unshown}/photos", json={"file_id": kept}, headers=alice.user.auth
            )
        )
        await assign(hub, admin, hall, alice.album)
        await assign(hub, admin, kitchen, bob.album)
        await hub.analysed()

        def url(size: str, frame: Frame | None = None) -> str:
            tail = f"&frame_id={frame.device_id}" if frame else ""
            return DOWNLOAD + "/{file}?size=" + size + tail

        # Its own album's photo, for itself: yes.
        shown = await hub.client.get(fill(url("frame"), {"file": alice.photo}), headers=hall.auth)
        assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
        # Any other photo is as unknown as no photo: another frame's, one in an album no frame
        # shows, one in no album, another user's.
        for file_id in (bob.photo, kept, alice.loose_photo, bob.loose_photo):
            for asked in (url("frame"), url("frame", hall)):
                refusal = await as_unknown(hub, hall, "GET", asked, None, {"file": file_id})
                assert refusal[0] == 404
        # Never another frame's version, nor an original or a user's size: refused alike
        # whether the photo exists or not.
        for file_id in (alice.photo, bob.photo):
            for asked in (url("frame", kitchen), url("original"), url("thumbnail"), url("hd")):
                refusal = await as_unknown(hub, hall, "GET", asked, None, {"file": file_id})
                assert refusal[0] == 403

        # The assignment is what counts, as it is now.
        await assign(hub, admin, hall)
        refusal = await as_unknown(hub, hall, "GET", url("frame"), None, {"file": alice.photo})
        assert refusal[0] == 404

        # Nothing of another frame: every route about a device, and the firmware and campaign
        # administration, refuse a frame's token (read from the router, with real ids).
        command = body_of(
            await hub.client.post(
                f"{DEVICES}/{kitchen.device_id}/commands",
                json={"command": "sync"},
                headers=admin.auth,
            ),
            202,
        )
        image_id = (await firmware(hub, admin, image()))["firmware_id"]
        campaign = await new_campaign(
            hub, admin, firmware_id=image_id, device_ids=[kitchen.device_id], batch_size=1
        )
        real = {
            "device_id": kitchen.device_id,
            "command_id": command["command_id"],
            "firmware_id": image_id,
            "campaign_id": campaign["campaign_id"],
        }
        kitchen_before = body_of(
            await hub.client.get(f"{DEVICES}/{kitchen.device_id}", headers=admin.auth), 200
        )
        reached = 0
        for route in await served_routes(hub):
            about_devices = "{device_id}" in route.path or route.path.startswith(
                ("/api/v1/campaigns", "/api/v1/devices", "/api/v1/alert")
            )
            administers_firmware = (
                route.path.startswith("/api/v1/firmware") and route.auth == "admin"
            )
            if about_devices or administers_firmware:
                response = await hub.client.request(
                    route.method, fill(route.path, real), headers=hall.auth
                )
                refused(response, 403, kitchen.token)
                reached += 1
        assert reached >= 15
        kitchen_after = body_of(
            await hub.client.get(f"{DEVICES}/{kitchen.device_id}", headers=admin.auth), 200
        )
        assert kitchen_after["album_ids"] == kitchen_before["album_ids"] == [bob.album]
        me = body_of(await hub.client.get("/api/v1/me", headers=hall.auth), 200)
        assert me == {"kind": "frame", "id": hall.device_id, "name": "Hall", "admin": False}
