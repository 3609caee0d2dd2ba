"""Pairing frames and fetching frame-sized photos, end to end over HTTP with the real hub.

Each test starts the hub with ``actors.serve`` on a data directory in ``tmp_path`` and talks to
it with httpx (see ``tests/harness/hub.py``). Frames are paired the way the admin app pairs them,
and their tokens are the ones the pairing reply showed.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness.hub import DEVICES, Frame, Hub, User, running_hub
from tests.harness.photos import decoded, jpeg
from tests.harness.replies import body_of, download, problem

PAIRING = {
    "name": "Hall",
    "model": "FH-10",
    "hw_version": "rev2",
    "width": 1024,
    "height": 600,
    "orientation": "landscape",
}


def frame_url(file_id: str, frame_id: str | None = None) -> str:
    url = f"/api/v1/files/download/{file_id}?size=frame"
    return url if frame_id is None else f"{url}&frame_id={frame_id}"


async def uploaded(hub: Hub, user: User, seed: int) -> str:
    file_id: str = body_of(await hub.upload(user, jpeg(2400, 1600, seed=seed)))["file_id"]
    return file_id


async def cached_for(hub: Hub, user: User, file_id: str) -> list[str]:
    photo = body_of(await hub.client.get(f"/api/v1/photos/{file_id}", headers=user.auth), 200)
    frames: list[str] = photo["cached_for_frames"]
    return frames


async def test_only_admins_pair_frames_and_the_pairing_token_is_the_frames(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin, member = await hub.new_user("admin", admin=True), await hub.new_user("member")
        client = hub.client
        problem(await client.post(DEVICES, json=PAIRING), 401)
        problem(await client.post(DEVICES, json=PAIRING, headers=member.auth), 403)
        problem(await client.get(DEVICES, headers=member.auth), 403)
        problem(await client.get(DEVICES), 401)
        for wrong in (
            {**PAIRING, "width": 0},
            {**PAIRING, "height": 8193},
            {**PAIRING, "orientation": "sideways"},
            {**PAIRING, "name": ""},
            {**PAIRING, "model": "m" * 65},
            {**PAIRING, "serial": "x"},
            {key: value for key, value in PAIRING.items() if key != "hw_version"},
        ):
            problem(await client.post(DEVICES, json=wrong, headers=admin.auth), 422)
        assert body_of(await client.get(DEVICES, headers=admin.auth), 200)["items"] == []

        response = await client.post(DEVICES, json=PAIRING, headers=admin.auth)
        paired = body_of(response)
        device_id, token = paired.pop("device_id"), paired.pop("token")
        mqtt, public_key = paired.pop("mqtt"), paired.pop("public_key")
        assert paired == PAIRING
        ports = json.loads((hub.data_dir / "ports.json").read_text())
        assert (mqtt["host"], mqtt["port"]) == ("127.0.0.1", ports["mqtt"])
        assert mqtt["username"] == mqtt["client_id"] == f"frame-{device_id}"
        assert len(mqtt["password"]) >= 24
        assert isinstance(public_key, str)
        assert response.headers["location"] == f"{DEVICES}/{device_id}"
        frame = Frame(device_id, "Hall", token)
        me = body_of(await client.get("/api/v1/me", headers=frame.auth), 200)
        assert me == {"kind": "frame", "id": device_id, "name": "Hall", "admin": False}
        # A frame token is no admin's: it cannot pair or list frames.
        problem(await client.get(DEVICES, headers=frame.auth), 403)
        problem(await client.post(DEVICES, json=PAIRING, headers=frame.auth), 403)

        kitchen = await hub.pair_frame(admin, "Kitchen", orientation="portrait")
        shown = body_of(await client.get(f"{DEVICES}/{device_id}", headers=admin.auth), 200)
        assert shown["device_id"] == device_id and shown["created_at"]
        assert {key: shown[key] for key in PAIRING} == PAIRING
        problem(await client.get(f"{DEVICES}/{device_id}", headers=member.auth), 403)
        problem(await client.get(f"{DEVICES}/{'0' * 32}", headers=admin.auth), 404)
        first = body_of(await client.get(DEVICES, params={"limit": 1}, headers=admin.auth), 200)
        assert [d["device_id"] for d in first["items"]] == [device_id]
        rest = body_of(
            await client.get(
                DEVICES, params={"limit": 1, "cursor": first["next_cursor"]}, headers=admin.auth
            ),
            200,
        )
        assert [d["device_id"] for d in rest["items"]] == [kitchen.device_id]
        assert rest["next_cursor"] is None

        problem(await client.delete(f"{DEVICES}/{device_id}", headers=member.auth), 403)
        assert (
            await client.delete(f"{DEVICES}/{device_id}", headers=admin.auth)
        ).status_code == 204
        # Locked out at once: the token is refused on the very next request.
        problem(await client.get("/api/v1/me", headers=frame.auth), 401)
        problem(await client.get(f"{DEVICES}/{device_id}", headers=admin.auth), 404)
        problem(await client.delete(f"{DEVICES}/{device_id}", headers=admin.auth), 404)
        listed = body_of(await client.get(DEVICES, headers=admin.auth), 200)
        assert [d["device_id"] for d in listed["items"]] == [kitchen.device_id]
        assert body_of(await client.get("/api/v1/me", headers=kitchen.auth), 200)["kind"] == "frame"


async def test_a_user_gets_their_photo_covering_a_frames_panel_exactly(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        alice, bob = await hub.new_user("alice"), await hub.new_user("bob")
        hall = await hub.pair_frame(admin, "Hall", width=1024, height=600)
        # A 1024x600 panel hung upright: the photo is made 600 wide and 1024 high.
        stairs = await hub.pair_frame(
            admin, "Stairs", width=1024, height=600, orientation="portrait"
        )
        file_id = await uploaded(hub, alice, seed=11)
        bobs = await uploaded(hub, bob, seed=12)
        assert await cached_for(hub, alice, file_id) == []

        for frame, size in ((hall, (1024, 600)), (stairs, (600, 1024))):
            response = await download(hub, alice, frame_url(file_id, frame.device_id))
            assert response.headers["content-type"] == "image/jpeg"
            image = decoded(response.content)
            assert (image.format, image.size) == ("JPEG", size)
        assert await cached_for(hub, alice, file_id) == sorted([hall.device_id, stairs.device_id])

        client = hub.client
        # Another user's photo is as unknown as no photo; so is a frame never paired.
        problem(await client.get(frame_url(bobs, hall.device_id), headers=alice.auth), 404)
        problem(await client.get(frame_url("0" * 32, hall.device_id), headers=alice.auth), 404)
        problem(await client.get(frame_url(file_id, "0" * 32), headers=alice.auth), 404)
        problem(await client.get(frame_url(file_id), headers=alice.auth), 400)
        assert await cached_for(hub, bob, bobs) == []


async def test_a_frame_fetches_frame_versions_for_itself_only(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin, alice = await hub.new_user("admin", admin=True), await hub.new_user("alice")
        hall = await hub.pair_frame(admin, "Hall", width=800, height=480)
        kitchen = await hub.pair_frame(admin, "Kitchen")
        file_id = await uploaded(hub, alice, seed=21)
        # A frame fetches the photos of the albums it shows.
        client = hub.client
        album = body_of(await client.post("/api/v1/albums", json={"name": "H"}, headers=alice.auth))
        added = await client.post(
            f"/api/v1/albums/{album['album_id']}/photos",
            json={"file_id": file_id},
            headers=alice.auth,
        )
        body_of(added)
        shows = {"album_ids": [album["album_id"]]}
        body_of(
            await client.put(f"{DEVICES}/{hall.device_id}/albums", json=shows, headers=admin.auth),
            200,
        )

        own = await download(hub, hall, frame_url(file_id))
        assert decoded(own.content).size == (800, 480)
        named = await download(hub, hall, frame_url(file_id, hall.device_id))
        assert named.content == own.content
        assert await cached_for(hub, alice, file_id) == [hall.device_id]

        url = f"/api/v1/files/download/{file_id}"
        problem(await client.get(frame_url(file_id, kitchen.device_id), headers=hall.auth), 403)
        problem(await client.get(url, headers=hall.auth), 403)
        for size in ("original", "thumbnail", "hd"):
            problem(await client.get(f"{url}?size={size}", headers=hall.auth), 403)
        # Users keep their originals.
        original = await client.get(url, headers=alice.auth)
        assert original.status_code == 200 and decoded(original.content).size == (2400, 1600)


async def test_schedules_need_a_paired_frame_and_go_with_it(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin, alice = await hub.new_user("admin", admin=True), await hub.new_user("alice")
        hall, kitchen = await hub.pair_frame(admin, "Hall"), await hub.pair_frame(admin, "Kitchen")
        client, schedules = hub.client, "/api/v1/schedules"
        unknown = {"frame_id": "0" * 32, "interval_s": 60}
        problem(await client.post(schedules, json=unknown, headers=alice.auth), 404)

        made = [
            body_of(
                await client.post(
                    schedules, json={"frame_id": frame.device_id, "interval_s": 60}, headers=auth
                )
            )
            for frame, auth in ((hall, alice.auth), (hall, admin.auth), (kitchen, alice.auth))
        ]
        assert [s["frame_id"] for s in made] == [hall.device_id, hall.device_id, kitchen.device_id]
        file_id = await uploaded(hub, alice, seed=31)
        await download(hub, alice, frame_url(file_id, hall.device_id))
        await download(hub, alice, frame_url(file_id, kitchen.device_id))

        assert (
            await client.delete(f"{DEVICES}/{hall.device_id}", headers=admin.auth)
        ).status_code == 204
        # The media cache dropped the frame's schedules, everyone's, and its cache entries.
        mine = body_of(await client.get(schedules, headers=alice.auth), 200)
        assert [s["schedule_id"] for s in mine["items"]] == [made[2]["schedule_id"]]
        assert body_of(await client.get(schedules, headers=admin.auth), 200)["items"] == []
        assert await cached_for(hub, alice, file_id) == [kitchen.device_id]
        gone = {"frame_id": hall.device_id, "interval_s": 60}
        problem(await client.post(schedules, json=gone, headers=alice.auth), 404)
        problem(await client.get(frame_url(file_id, hall.device_id), headers=alice.auth), 404)
