"""The photo API end to end, as the phone app uses it.

Each test starts the real hub with ``actors.serve`` (the production tree of ``hub_tree``, the
real settings loader, a data directory in ``tmp_path``, an HTTP port picked by the OS), talks
to it over HTTP on 127.0.0.1 with httpx, and stops it with SIGTERM (see ``tests/harness/hub.py``).
Images are real files made with Pillow. Nothing waits by sleeping: the media and album actors
catch up with the journal before they answer, and ``Hub.analysed`` waits for the uploader's
asynchronous analysis (and what follows it: versions, album filing) by asking the actors to
catch up with the journal.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from PIL import ImageStat

from actors.console import GetConsoleAddress
from actors.events import AiMetadata
from actors.mqtt import GetBrokerAddress
from actors.uploader import AnalysisFinished
from supervision import FaultAction, FaultRule
from tests.harness.hub import UPLOAD, Hub, User, running_hub
from tests.harness.images import GREEN, RED, png_header_only
from tests.harness.photos import (
    FORMATS,
    decoded,
    jpeg,
    near,
    padded_jpeg,
    png,
    rotated_jpeg,
)
from tests.harness.photos_api import fits, new_album, versions_of
from tests.harness.replies import body_of, download, problem
from tests.harness.routes import declared_api_routes

THUMBNAIL_BOX = (300, 200)
HD_BOX = (1920, 1080)


# -- helpers -----------------------------------------------------------------------------------


async def photo_ids(hub: Hub, user: User) -> list[str]:
    """Every photo of ``user``'s list, following the cursor page by page."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = body_of(
            await hub.client.get("/api/v1/photos", params=params, headers=user.auth), 200
        )
        ids.extend(item["file_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


async def album_files(hub: Hub, user: User, album_id: str) -> list[str]:
    album = body_of(await hub.client.get(f"/api/v1/albums/{album_id}", headers=user.auth), 200)
    assert album["photo_count"] == len(album["file_ids"]), album
    files: list[str] = album["file_ids"]
    return files


# -- 1. every accepted format ------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(FORMATS))
async def test_each_accepted_format_uploads_and_downloads_with_its_versions(
    tmp_path: Path, kind: str
) -> None:
    content_type, make, upright = FORMATS[kind]
    data = make()
    async with running_hub(tmp_path) as hub:
        user = await hub.new_user()
        # The app names every file photo.jpg and declares image/jpeg: only the bytes count.
        response = await hub.upload(user, data, "photo.jpg", content_type="image/jpeg")
        stored = body_of(response)
        file_id = stored["file_id"]
        assert stored == {
            "file_id": file_id,
            "file_name": "photo.jpg",
            "content_type": content_type,
            "file_size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        assert response.headers["location"] == f"/api/v1/photos/{file_id}"

        await hub.analysed()
        photo = body_of(await hub.client.get(f"/api/v1/photos/{file_id}", headers=user.auth), 200)
        assert photo["file_id"] == file_id
        assert photo["file_name"] == "photo.jpg"
        assert photo["content_type"] == content_type
        assert photo["cached_for_frames"] == []
        assert photo["created_at"].endswith("Z")
        assert set(photo["ai_metadata"]) >= {"labels", "faces", "width", "height", "phash"}
        versions = versions_of(photo)
        assert list(versions) == ["thumbnail", "hd", "original"], photo["versions"]
        download_url = f"{hub.address.base_url}/api/v1/files/download/{file_id}"
        assert versions["original"]["url"] == download_url
        assert (versions["original"]["width"], versions["original"]["height"]) == upright

        original = await download(hub, user, download_url)
        assert original.content == data
        assert original.headers["content-type"] == content_type
        assert original.headers["etag"] == f'"{stored["sha256"]}"'

        for size, box in (("thumbnail", THUMBNAIL_BOX), ("hd", HD_BOX)):
            version = versions[size]
            assert version["url"] == f"{download_url}?size={size}"
            declared = (version["width"], version["height"])
            assert fits(declared, box, upright), (size, declared, upright)
            got = await download(hub, user, version["url"])
            assert got.headers["content-type"] == "image/jpeg"
            image = decoded(got.content)
            assert image.format == "JPEG" and image.mode == "RGB", (image.format, image.mode)
            assert image.size == declared, (size, image.size, declared)
            # The picture survived the conversion to 8-bit sRGB (not clipped to one tone).
            spread = ImageStat.Stat(image.convert("L")).stddev[0]
            assert spread > 5, (size, spread)


async def test_a_version_asked_for_before_the_analysis_is_made_on_the_spot_once(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        user = await hub.new_user()
        file_id = body_of(await hub.upload(user, jpeg(640, 480)))["file_id"]
        # Straight after the upload, as the app's gallery does: the version is there.
        thumbnail = await download(hub, user, f"/api/v1/files/download/{file_id}?size=thumbnail")
        assert decoded(thumbnail.content).size == (267, 200)
        await hub.analysed()
        photo = body_of(await hub.client.get(f"/api/v1/photos/{file_id}", headers=user.auth), 200)
        again = await download(hub, user, versions_of(photo)["thumbnail"]["url"])
        assert again.content == thumbnail.content
        names = await hub.event_names(file_id)
        assert names.count("media.version_created") == 2, names
        assert names.count("media.cache_ready") == 1, names


# -- 2. orientation ----------------------------------------------------------------------------


async def test_versions_of_a_photo_taken_sideways_are_upright(tmp_path: Path) -> None:
    data = rotated_jpeg(6)  # stored 320x480, turned a quarter; upright 480x320
    assert decoded(data).size == (320, 480)
    async with running_hub(tmp_path) as hub:
        user = await hub.new_user()
        file_id = body_of(await hub.upload(user, data, "IMG_0001.JPG"))["file_id"]
        await hub.analysed()
        photo = body_of(await hub.client.get(f"/api/v1/photos/{file_id}", headers=user.auth), 200)
        versions = versions_of(photo)
        assert (versions["original"]["width"], versions["original"]["height"]) == (480, 320)
        for size in ("thumbnail", "hd"):
            image = decoded((await download(hub, user, versions[size]["url"])).content)
            width, height = image.size
            assert width > height, (size, image.size)
            top_left = image.getpixel((width // 20, height // 20))
            top_right = image.getpixel((width - 1 - width // 20, height // 20))
            assert isinstance(top_left, tuple) and isinstance(top_right, tuple)
            assert near(top_left, RED), (size, top_left)
            assert near(top_right, GREEN), (size, top_right)
            # Versions go to frames and other people's screens: no EXIF, so no GPS.
            assert dict(image.getexif()) == {}, (size, dict(image.getexif()))
            assert "exif" not in image.info, size
        # The original is kept as it came, EXIF and all.
        original = await download(hub, user, versions["original"]["url"])
        assert original.content == data
        assert photo["ai_metadata"]["orientation"] == 6, photo["ai_metadata"]
        assert (photo["ai_metadata"]["width"], photo["ai_metadata"]["height"]) == (480, 320)


async def test_file_names_are_kept_safe_and_readable(tmp_path: Path) -> None:
    names = {
        "../../etc/passwd.jpg": "passwd.jpg",
        "..\\..\\Windows\\win.jpg": "win.jpg",
        ".hidden.jpg": "hidden.jpg",
        "...": "photo.png",
        "Cafe\u0301 \U0001f3d6.jpg": "Caf\u00e9 \U0001f3d6.jpg",
        "\u202egpj.exe": "gpj.exe",
        "x" * 230 + ".jpg": "x" * 196 + ".jpg",
    }
    async with running_hub(tmp_path) as hub:
        user = await hub.new_user()
        for seed, (sent, kept) in enumerate(names.items()):
            stored = body_of(await hub.upload(user, png(seed=200 + seed), sent))
            assert stored["file_name"] == kept, (sent, stored)
            photo = await hub.client.get(f"/api/v1/photos/{stored['file_id']}", headers=user.auth)
            assert body_of(photo, 200)["file_name"] == kept
        assert len(await photo_ids(hub, user)) == len(names)
        assert not (tmp_path / "etc").exists()
        assert all(hub.blobs_dir in path.parents for path in hub.blob_files())


# -- 3. duplicates -----------------------------------------------------------------------------


async def test_the_same_bytes_twice_are_one_photo_per_user(tmp_path: Path) -> None:
    data = jpeg(seed=11)
    async with running_hub(tmp_path) as hub:
        alice, bob = await hub.new_user("alice"), await hub.new_user("bob")
        first = body_of(await hub.upload(alice, data, "beach.jpg"))
        again = await hub.upload(alice, data, "beach (1).jpg")
        repeat = body_of(again, 200)
        assert repeat == first  # the existing photo, name and all
        assert again.headers["location"] == f"/api/v1/photos/{first['file_id']}"

        bobs = body_of(await hub.upload(bob, data, "from-alice.jpg"))
        assert bobs["file_id"] != first["file_id"]
        assert bobs["sha256"] == first["sha256"]
        assert bobs["file_name"] == "from-alice.jpg"

        # The app retries while the first attempt is still in flight: one photo.
        twice = jpeg(seed=12)
        replies: list[httpx.Response] = []

        async def send() -> None:
            replies.append(await hub.upload(alice, twice, "retry.jpg"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(send)
        assert sorted(r.status_code for r in replies) == [200, 201], [r.text for r in replies]
        assert replies[0].json() == replies[1].json()
        retried = replies[0].json()["file_id"]

        assert await photo_ids(hub, alice) == [retried, first["file_id"]]
        assert await photo_ids(hub, bob) == [bobs["file_id"]]
        await hub.analysed()
        names = await hub.event_names(first["file_id"])
        assert names.count("file.uploaded") == 1, names

        # Bob deletes his copy: Alice's photo, which shares the blob, is untouched.
        deleted = await hub.client.delete(f"/api/v1/files/{bobs['file_id']}", headers=bob.auth)
        assert deleted.status_code == 204, deleted.text
        photo = body_of(
            await hub.client.get(f"/api/v1/photos/{first['file_id']}", headers=alice.auth), 200
        )
        for version in photo["versions"]:
            await download(hub, alice, version["url"])
        original = await download(hub, alice, f"/api/v1/files/download/{first['file_id']}")
        assert original.content == data


async def test_a_list_pages_newest_first(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        user = await hub.new_user()
        uploaded = [body_of(await hub.upload(user, jpeg(seed=20 + i)))["file_id"] for i in range(5)]
        assert await photo_ids(hub, user) == uploaded[::-1]
        bad = await hub.client.get("/api/v1/photos", params={"limit": 0}, headers=user.auth)
        problem(bad, 400)
        bad = await hub.client.get("/api/v1/photos", params={"cursor": "x"}, headers=user.auth)
        problem(bad, 400)


async def test_deleting_a_reuploaded_thumbnail_keeps_the_thumbnail_of_its_photo(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        user = await hub.new_user()
        file_id = body_of(await hub.upload(user, jpeg(640, 480, seed=31)))["file_id"]
        await hub.analysed()
        thumbnail_url = f"/api/v1/files/download/{file_id}?size=thumbnail"
        thumbnail = (await download(hub, user, thumbnail_url)).content
        # The app saved the thumbnail to the camera roll, uploaded it, then deleted it.
        copy = body_of(await hub.upload(user, thumbnail, "saved.jpg"))
        assert copy["file_id"] != file_id
        deleted = await hub.client.delete(f"/api/v1/files/{copy['file_id']}", headers=user.auth)
        assert deleted.status_code == 204
        response = await hub.client.get(thumbnail_url, headers=user.auth)
        assert response.status_code == 200, (
            f"the first photo's thumbnail is gone: {response.status_code} {response.text}"
        )
        assert response.content == thumbnail


# -- 4. albums ---------------------------------------------------------------------------------


async def test_an_upload_is_filed_into_the_callers_album_only(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        alice, bob = await hub.new_user("alice"), await hub.new_user("bob")
        holidays = await new_album(hub, alice)
        stored = body_of(
            await hub.upload(alice, jpeg(seed=41), metadata={"album_id": holidays, "x": "y"})
        )
        file_id = stored["file_id"]
        await hub.analysed()
        assert await album_files(hub, alice, holidays) == [file_id]

        # Adding it again by hand changes nothing.
        url = f"/api/v1/albums/{holidays}/photos"
        added = [
            body_of(await hub.client.post(url, json={"file_id": file_id}, headers=alice.auth))
            for _ in range(2)
        ]
        assert added[0] == added[1]
        assert added[0]["album_id"] == holidays and added[0]["file_id"] == file_id
        assert await album_files(hub, alice, holidays) == [file_id]
        listed = body_of(await hub.client.get("/api/v1/albums", headers=alice.auth), 200)
        assert [(a["album_id"], a["photo_count"]) for a in listed["items"]] == [(holidays, 1)]

        # An upload naming Bob's album (or no album at all) is kept, but filed nowhere.
        bobs_album = await new_album(hub, bob, "Bob's")
        other = body_of(await hub.upload(alice, jpeg(seed=42), metadata={"album_id": bobs_album}))
        ghost = body_of(await hub.upload(alice, jpeg(seed=43), metadata={"album_id": "nope"}))
        await hub.analysed()
        assert await album_files(hub, bob, bobs_album) == []
        assert await album_files(hub, alice, holidays) == [file_id]
        assert set(await photo_ids(hub, alice)) == {
            file_id,
            other["file_id"],
            ghost["file_id"],
        }
        # Neither may anyone put a photo into someone else's album, or someone else's photo
        # into theirs.
        bobs_photo = body_of(await hub.upload(bob, jpeg(seed=44)))["file_id"]
        response = await hub.client.post(url, json={"file_id": bobs_photo}, headers=alice.auth)
        problem(response, 404)
        response = await hub.client.post(
            f"/api/v1/albums/{bobs_album}/photos", json={"file_id": file_id}, headers=alice.auth
        )
        problem(response, 404)
        problem(await hub.client.get(f"/api/v1/albums/{bobs_album}", headers=alice.auth), 404)
        assert await album_files(hub, alice, holidays) == [file_id]
        assert await album_files(hub, bob, bobs_album) == []

        # Out of the album and in again; deleting the album keeps the photo.
        removed = await hub.client.delete(f"{url}/{file_id}", headers=alice.auth)
        assert removed.status_code == 204
        assert await album_files(hub, alice, holidays) == []
        body_of(await hub.client.post(url, json={"file_id": file_id}, headers=alice.auth))
        assert await album_files(hub, alice, holidays) == [file_id]
        gone = await hub.client.delete(f"/api/v1/albums/{holidays}", headers=alice.auth)
        assert gone.status_code == 204
        problem(await hub.client.get(f"/api/v1/albums/{holidays}", headers=alice.auth), 404)
        assert file_id in await photo_ids(hub, alice)


# -- 5. deletion -------------------------------------------------------------------------------


async def test_deleting_a_photo_removes_it_everywhere(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        user = await hub.new_user()
        keep = body_of(await hub.upload(user, jpeg(seed=51)))["file_id"]
        await hub.analysed()
        before = hub.blob_files()
        album_id = await new_album(hub, user)
        data = png(seed=52)
        file_id = body_of(await hub.upload(user, data, metadata={"album_id": album_id}))["file_id"]
        await hub.analysed()
        playlist = body_of(
            await hub.client.post(
                "/api/v1/playlists",
                json={"name": "Living room", "file_ids": [file_id, keep]},
                headers=user.auth,
            )
        )
        assert await album_files(hub, user, album_id) == [file_id]
        photo = body_of(await hub.client.get(f"/api/v1/photos/{file_id}", headers=user.auth), 200)
        urls = [version["url"] for version in photo["versions"]]
        for url in urls:
            await download(hub, user, url)
        added = hub.blob_files() - before
        assert len(added) == 3, sorted(added)  # the original, its thumbnail and its HD version

        response = await hub.client.delete(f"/api/v1/files/{file_id}", headers=user.auth)
        assert response.status_code == 204 and response.content == b""

        problem(await hub.client.get(f"/api/v1/photos/{file_id}", headers=user.auth), 404)
        for url in urls:
            problem(await hub.client.get(url, headers=user.auth), 404)
        assert await album_files(hub, user, album_id) == []
        again = await hub.client.get(
            f"/api/v1/playlists/{playlist['playlist_id']}", headers=user.auth
        )
        assert body_of(again, 200)["file_ids"] == [keep]
        assert await photo_ids(hub, user) == [keep]
        assert hub.blob_files() == before
        assert hub.staged_files() == []
        problem(await hub.client.delete(f"/api/v1/files/{file_id}", headers=user.auth), 404)
        names = await hub.event_names(file_id)
        assert names.count("file.deleted") == 1, names
        assert names.count("album.photo_removed") == 1, names


async def test_a_very_long_file_name_keeps_its_extension(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        user = await hub.new_user()
        stored = body_of(await hub.upload(user, jpeg(seed=56), "x" * 300 + ".jpg"))
        assert stored["file_name"] == "x" * 196 + ".jpg", stored["file_name"]


async def test_a_photo_deleted_before_its_analysis_leaves_nothing(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        user = await hub.new_user()
        album_id = await new_album(hub, user)
        # Hold the analysis result back, so the deletion comes first.
        held = hub.system.faults.install(
            FaultRule(
                action=FaultAction.DROP, path="/domain/uploader", message_type="AnalysisFinished"
            )
        )
        file_id = body_of(await hub.upload(user, jpeg(seed=55), metadata={"album_id": album_id}))[
            "file_id"
        ]
        # The gallery shows a thumbnail at once (made on request), then the user deletes.
        await download(hub, user, f"/api/v1/files/download/{file_id}?size=thumbnail")
        assert len(hub.blob_files()) == 3  # the original and both standard versions
        response = await hub.client.delete(f"/api/v1/files/{file_id}", headers=user.auth)
        assert response.status_code == 204
        hub.system.faults.remove(held)
        # The analysis result arrives after the deletion and must find the photo gone.
        await hub.system.lookup("/domain/uploader").ask(
            AnalysisFinished(file_id=file_id, ai_metadata=AiMetadata())
        )
        await hub.analysed()

        names = await hub.event_names(file_id)
        assert "file.uploaded.with_ai" not in names, names
        assert names.count("file.deleted") == 1, names
        problem(await hub.client.get(f"/api/v1/photos/{file_id}", headers=user.auth), 404)
        assert await photo_ids(hub, user) == []
        assert await album_files(hub, user, album_id) == []
        assert hub.blob_files() == set()
        assert hub.staged_files() == []


# -- 6. bad input ------------------------------------------------------------------------------


async def test_refused_uploads_leave_nothing_behind(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    png_header_only(bomb, 20_000, 20_000)
    whole = jpeg(640, 480, seed=61)
    async with running_hub(tmp_path / "data", HTTP__MAX_UPLOAD_BYTES="200000") as hub:
        user = await hub.new_user()
        kept = body_of(await hub.upload(user, jpeg(seed=60)))["file_id"]
        await hub.analysed()
        blobs = hub.blob_files()
        assert len(blobs) == 3

        async def refused(response: httpx.Response, status: int, what: str) -> None:
            assert response.status_code == status, (what, response.status_code, response.text)
            problem(response, status)
            await hub.analysed()
            assert await photo_ids(hub, user) == [kept], what
            assert hub.blob_files() == blobs, what
            assert hub.staged_files() == [], what

        await refused(await hub.upload(user, b"", "empty.jpg"), 422, "an empty file")
        await refused(
            await hub.upload(user, b"hello, this is not a photo\n" * 20, "notes.jpg"),
            415,
            "text named .jpg",
        )
        await refused(
            await hub.upload(user, whole[: len(whole) // 2], "cut.jpg"), 422, "a truncated JPEG"
        )
        await refused(
            await hub.upload(user, bomb.read_bytes(), "bomb.png", content_type="image/png"),
            413,
            "a 400-megapixel PNG",
        )
        await refused(
            await hub.upload(user, b"\xff\xd8\xff\xe0" + os.urandom(300_000), "huge.jpg"),
            413,
            "a file over http.max_upload_bytes",
        )
        await refused(
            await hub.upload(user, padded_jpeg(200_001), "one-byte-over.jpg"),
            413,
            "a JPEG one byte over http.max_upload_bytes",
        )
        await refused(
            await hub.upload(user, jpeg(seed=62), metadata="{not json"), 400, "metadata not JSON"
        )
        await refused(
            await hub.upload(user, jpeg(seed=62), metadata={f"k{i}": "v" for i in range(21)}),
            422,
            "metadata with more than 20 keys",
        )
        await refused(
            await hub.upload(user, jpeg(seed=63), metadata='{"album_id": 5}'),
            400,
            "metadata not an object of strings",
        )
        await refused(
            await hub.upload(user, jpeg(seed=64), metadata={"k": "\x00"}),
            422,
            "metadata with control characters",
        )
        await refused(
            await hub.client.post(UPLOAD, headers=user.auth, files={"metadata": (None, "{}")}),
            400,
            "no file part",
        )
        await refused(
            await hub.client.post(UPLOAD, headers=user.auth, json={"file": "x"}),
            415,
            "not multipart",
        )

        # A path in the name is dropped: the photo is kept as passwd.jpg, inside the store.
        sneaky = body_of(await hub.upload(user, jpeg(seed=65), "../../etc/passwd.jpg"))
        assert sneaky["file_name"] == "passwd.jpg"
        photo = await hub.client.get(f"/api/v1/photos/{sneaky['file_id']}", headers=user.auth)
        assert body_of(photo, 200)["file_name"] == "passwd.jpg"
        assert not (tmp_path / "etc").exists()
        assert all(hub.blobs_dir in path.parents for path in hub.blob_files())
        # Exactly at the limit is allowed.
        at_limit = body_of(await hub.upload(user, padded_jpeg(200_000), "at-limit.jpg"))
        assert at_limit["file_size"] == 200_000


async def test_unknown_ids_and_malformed_requests_are_problems(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        user = await hub.new_user()
        file_id = body_of(await hub.upload(user, jpeg(seed=71)))["file_id"]
        unknown = "0" * 32
        client, auth = hub.client, user.auth
        problem(await client.get(f"/api/v1/photos/{unknown}", headers=auth), 404)
        problem(await client.get(f"/api/v1/files/download/{unknown}", headers=auth), 404)
        problem(await client.get(f"/api/v1/files/download/{unknown}?size=hd", headers=auth), 404)
        problem(await client.delete(f"/api/v1/files/{unknown}", headers=auth), 404)
        download_url = f"/api/v1/files/download/{file_id}"
        problem(await client.get(f"{download_url}?size=huge", headers=auth), 400)
        problem(await client.get(f"{download_url}?size=frame", headers=auth), 400)
        problem(await client.get(f"{download_url}?size=frame&frame_id=f1", headers=auth), 404)

        albums = "/api/v1/albums"
        problem(
            await client.post(
                albums,
                content=b'{"name": "x"',
                headers={**auth, "Content-Type": "application/json"},
            ),
            400,
        )
        problem(await client.post(albums, json={"name": 5}, headers=auth), 422)
        problem(await client.post(albums, json={}, headers=auth), 422)
        problem(await client.post(albums, json={"name": "a", "colour": "red"}, headers=auth), 422)
        problem(await client.post(albums, json={"name": "   "}, headers=auth), 422)
        problem(
            await client.post(
                albums, content=b"name=x", headers={**auth, "Content-Type": "text/plain"}
            ),
            415,
        )
        problem(
            await client.post(
                f"{albums}/{unknown}/photos", json={"file_id": file_id}, headers=auth
            ),
            404,
        )
        album_id = await new_album(hub, user)
        problem(
            await client.post(
                f"{albums}/{album_id}/photos", json={"file_id": unknown}, headers=auth
            ),
            404,
        )
        problem(await client.post(f"{albums}/{album_id}/photos", json={}, headers=auth), 422)
        assert await album_files(hub, user, album_id) == []
        assert (
            body_of(await client.get(albums, headers=auth), 200)["items"][0]["name"] == "Holidays"
        )
        problem(await client.put(f"/api/v1/photos/{file_id}", headers=auth), 405)


# -- 7. authentication and ownership ---------------------------------------------------------


async def test_callers_need_a_token_and_see_only_their_own_photos(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        alice, bob = await hub.new_user("alice"), await hub.new_user("bob")
        file_id = body_of(await hub.upload(alice, jpeg(seed=81)))["file_id"]
        await hub.analysed()
        client = hub.client
        photo_url = f"/api/v1/photos/{file_id}"
        download_url = f"/api/v1/files/download/{file_id}"

        for headers in ({}, {"Authorization": "Bearer " + "x" * 43}, {"Authorization": "Basic x"}):
            for response in (
                await client.get("/api/v1/photos", headers=headers),
                await client.get(photo_url, headers=headers),
                await client.get(download_url, headers=headers),
                await client.delete(f"/api/v1/files/{file_id}", headers=headers),
                await client.post(
                    UPLOAD, headers=headers, files={"file": ("a.jpg", jpeg(seed=82), "image/jpeg")}
                ),
            ):
                problem(response, 401)
                assert response.headers["www-authenticate"].startswith("Bearer"), response.headers
        assert hub.staged_files() == []

        problem(await client.get(photo_url, headers=bob.auth), 404)
        for size in ("original", "thumbnail", "hd"):
            problem(await client.get(f"{download_url}?size={size}", headers=bob.auth), 404)
        problem(await client.delete(f"/api/v1/files/{file_id}", headers=bob.auth), 404)
        bobs_album = await new_album(hub, bob)
        problem(
            await client.post(
                f"/api/v1/albums/{bobs_album}/photos", json={"file_id": file_id}, headers=bob.auth
            ),
            404,
        )
        problem(
            await client.post(
                "/api/v1/playlists", json={"name": "p", "file_ids": [file_id]}, headers=bob.auth
            ),
            404,
        )
        assert await album_files(hub, bob, bobs_album) == []
        assert await photo_ids(hub, bob) == []
        assert await photo_ids(hub, alice) == [file_id]
        # Bob's refused delete left Alice's photo whole.
        photo = body_of(await client.get(photo_url, headers=alice.auth), 200)
        assert len(photo["versions"]) == 3
        me = body_of(await client.get("/api/v1/me", headers=bob.auth), 200)
        assert me["id"] == bob.user_id, me


# -- 8. playlists and schedules ----------------------------------------------------------------


async def test_playlists_and_schedules_over_http(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        alice, bob = await hub.new_user("alice"), await hub.new_user("bob")
        admin = await hub.new_user("admin", admin=True)
        hall_frame = await hub.pair_frame(admin, "Hall")
        kitchen_frame = await hub.pair_frame(admin, "Kitchen")
        client = hub.client
        one, two = [
            body_of(await hub.upload(alice, jpeg(seed=90 + i)))["file_id"] for i in range(2)
        ]
        bobs_photo = body_of(await hub.upload(bob, jpeg(seed=99)))["file_id"]

        response = await client.post(
            "/api/v1/playlists",
            json={"name": " Kitchen ", "file_ids": [two, one]},
            headers=alice.auth,
        )
        playlist = body_of(response)
        playlist_id = playlist["playlist_id"]
        assert playlist["name"] == "Kitchen"
        assert playlist["file_ids"] == [two, one]
        assert playlist["owner_id"] == alice.user_id
        assert response.headers["location"] == f"/api/v1/playlists/{playlist_id}"
        url = f"/api/v1/playlists/{playlist_id}"
        assert body_of(await client.get(url, headers=alice.auth), 200) == playlist
        listed = body_of(await client.get("/api/v1/playlists", headers=alice.auth), 200)
        assert listed == {"items": [playlist], "next_cursor": None}
        assert body_of(await client.get("/api/v1/playlists", headers=bob.auth), 200)["items"] == []

        renamed = body_of(await client.patch(url, json={"name": "Hall"}, headers=alice.auth), 200)
        assert renamed["name"] == "Hall" and renamed["file_ids"] == [two, one]
        reordered = body_of(
            await client.patch(url, json={"file_ids": [one]}, headers=alice.auth), 200
        )
        assert reordered["name"] == "Hall" and reordered["file_ids"] == [one]
        assert body_of(await client.get(url, headers=alice.auth), 200) == reordered

        for body in (
            {"name": ""},
            {"name": 5},
            {"file_ids": [one, one]},
            {"file_ids": "one"},
            {"name": "x", "extra": 1},
        ):
            problem(await client.patch(url, json=body, headers=alice.auth), 422)
            problem(await client.post("/api/v1/playlists", json=body, headers=alice.auth), 422)
        problem(await client.patch(url, json={"file_ids": [bobs_photo]}, headers=alice.auth), 404)
        problem(await client.get(url, headers=bob.auth), 404)
        problem(await client.patch(url, json={"name": "Mine"}, headers=bob.auth), 404)
        problem(await client.delete(url, headers=bob.auth), 404)
        assert body_of(await client.get(url, headers=alice.auth), 200) == reordered

        schedules = "/api/v1/schedules"
        schedule = body_of(
            await client.post(
                schedules,
                json={
                    "frame_id": hall_frame.device_id,
                    "interval_s": 60,
                    "playlist_id": playlist_id,
                    "shuffle": True,
                    "quiet_start": "22:30",
                    "quiet_end": "07:00",
                },
                headers=alice.auth,
            )
        )
        assert schedule["owner_id"] == alice.user_id
        assert (schedule["frame_id"], schedule["interval_s"], schedule["shuffle"]) == (
            hall_frame.device_id,
            60,
            True,
        )
        assert (schedule["quiet_start"], schedule["quiet_end"]) == ("22:30", "07:00")
        other = body_of(
            await client.post(
                schedules,
                json={"frame_id": kitchen_frame.device_id, "interval_s": 600},
                headers=alice.auth,
            )
        )
        assert other["playlist_id"] is None and other["shuffle"] is False
        for body in (
            {"frame_id": hall_frame.device_id, "interval_s": 5},
            {"frame_id": hall_frame.device_id, "interval_s": 100_000},
            {"frame_id": "", "interval_s": 60},
            {"frame_id": hall_frame.device_id, "interval_s": 60, "quiet_start": "22:00"},
            {
                "frame_id": hall_frame.device_id,
                "interval_s": 60,
                "quiet_start": "25:00",
                "quiet_end": "07:00",
            },
            {
                "frame_id": hall_frame.device_id,
                "interval_s": 60,
                "quiet_start": "07:00",
                "quiet_end": "07:00",
            },
            {"interval_s": 60},
        ):
            problem(await client.post(schedules, json=body, headers=alice.auth), 422)
        problem(
            await client.post(
                schedules,
                json={
                    "frame_id": hall_frame.device_id,
                    "interval_s": 60,
                    "playlist_id": playlist_id,
                },
                headers=bob.auth,
            ),
            404,
        )
        page = body_of(await client.get(schedules, headers=alice.auth), 200)
        assert [s["schedule_id"] for s in page["items"]] == [
            schedule["schedule_id"],
            other["schedule_id"],
        ]
        hall = body_of(
            await client.get(
                schedules, params={"frame_id": hall_frame.device_id}, headers=alice.auth
            ),
            200,
        )
        assert hall["items"] == [schedule]
        assert body_of(await client.get(schedules, headers=bob.auth), 200)["items"] == []
        problem(
            await client.delete(f"{schedules}/{schedule['schedule_id']}", headers=bob.auth), 404
        )

        # Deleting the playlist keeps the schedule, without a playlist.
        assert (await client.delete(url, headers=alice.auth)).status_code == 204
        problem(await client.get(url, headers=alice.auth), 404)
        problem(await client.delete(url, headers=alice.auth), 404)
        hall = body_of(
            await client.get(
                schedules, params={"frame_id": hall_frame.device_id}, headers=alice.auth
            ),
            200,
        )
        assert hall["items"][0]["playlist_id"] is None
        gone = await client.delete(f"{schedules}/{schedule['schedule_id']}", headers=alice.auth)
        assert gone.status_code == 204
        problem(
            await client.delete(f"{schedules}/{schedule['schedule_id']}", headers=alice.auth), 404
        )
        page = body_of(await client.get(schedules, headers=alice.auth), 200)
        assert [s["schedule_id"] for s in page["items"]] == [other["schedule_id"]]


# -- 9. crashes mid-upload ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message_type"),
    [
        ("/domain/uploader", "StorePhoto"),
        ("/domain/uploader", "AnalysisFinished"),
        ("/domain/media", "JournalNudge"),
        ("/domain/album", "JournalNudge"),
    ],
)
async def test_a_crash_mid_upload_loses_and_duplicates_nothing(
    tmp_path: Path, path: str, message_type: str
) -> None:
    data = jpeg(seed=100)
    async with running_hub(tmp_path) as hub:
        user = await hub.new_user()
        album_id = await new_album(hub, user)
        await hub.analysed()
        hub.system.faults.install(
            FaultRule(action=FaultAction.CRASH, path=path, message_type=message_type, nth=1)
        )
        response = await hub.upload(user, data, metadata={"album_id": album_id})
        if message_type == "StorePhoto":
            # The phone is told the upload failed (500 here), and sends it again.
            assert 500 <= response.status_code <= 599, (response.status_code, response.text)
            body = problem(response, response.status_code)
            assert body["correlation_id"] == response.headers["x-correlation-id"]
            assert hub.staged_files() == []
            assert hub.blob_files() == set()
            assert await photo_ids(hub, user) == []
            response = await hub.upload(user, data, metadata={"album_id": album_id})
        # 201: the crashed attempt kept nothing, so this is the first copy.
        file_id = body_of(response)["file_id"]
        await hub.analysed()

        assert await photo_ids(hub, user) == [file_id]
        photo = body_of(await hub.client.get(f"/api/v1/photos/{file_id}", headers=user.auth), 200)
        assert [v["size"] for v in photo["versions"]] == ["thumbnail", "hd", "original"]
        for version in photo["versions"]:
            await download(hub, user, version["url"])
        assert await album_files(hub, user, album_id) == [file_id]

        names = await hub.event_names(file_id)
        assert names.count("file.uploaded") == 1, names
        assert names.count("file.uploaded.with_ai") == 1, names
        assert names.count("album.photo_added") == 1, names
        assert names.count("media.cache_ready") == 1, names
        (fault,) = hub.system.faults.installed()
        assert fault.fired == 1, fault
        assert hub.system.snapshot(path).restarts == 1
        assert hub.system.snapshot(path).state == "running"
        ready = await hub.client.get("/readyz")
        assert ready.status_code == 200, ready.text


# -- 10. the API description and probes --------------------------------------------------------


async def test_openapi_lists_every_route_and_the_probes_answer(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        problem(await hub.client.get("/openapi.json"), 401)
        user = await hub.new_user()
        response = await hub.client.get("/openapi.json", headers=user.auth)
        assert response.status_code == 200
        document = response.json()
        assert document["openapi"].startswith("3.1")
        paths = document["paths"]
        missing = [
            f"{route.method} {route.path}"
            for route in declared_api_routes()
            if route.method.lower() not in paths.get(route.path, {})
        ]
        assert missing == [], missing
        upload = paths[UPLOAD]["post"]
        assert {"201", "400", "413", "415", "422"} <= set(upload["responses"]), upload["responses"]
        assert document["servers"][0]["url"] == hub.address.base_url

        health = await hub.client.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = await hub.client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        problem(await hub.client.get("/api/v1/nothing-here"), 404)
        ports = json.loads((hub.data_dir / "ports.json").read_text())
        broker = await hub.system.lookup("/infra/broker").ask(GetBrokerAddress())
        console = await hub.refs.console.ask(GetConsoleAddress())
        assert ports == {"http": hub.address.port, "mqtt": broker.port, "console": console.port}
        # The managed broker and the console listen where ports.json says.
        with socket.create_connection(("127.0.0.1", ports["mqtt"]), timeout=5):
            pass
        with socket.create_connection(("127.0.0.1", ports["console"]), timeout=5):
            pass


async def test_links_in_replies_use_the_public_url(tmp_path: Path) -> None:
    public = "https://photos.example.org/hub"
    async with running_hub(tmp_path, HTTP__PUBLIC_URL=public + "/") as hub:
        assert hub.address.base_url == public
        user = await hub.new_user()
        file_id = body_of(await hub.upload(user, jpeg(seed=110)))["file_id"]
        await hub.analysed()
        page = body_of(await hub.client.get("/api/v1/photos", headers=user.auth), 200)
        (photo,) = page["items"]
        urls = [version["url"] for version in photo["versions"]]
        assert urls == [
            f"{public}/api/v1/files/download/{file_id}?size=thumbnail",
            f"{public}/api/v1/files/download/{file_id}?size=hd",
            f"{public}/api/v1/files/download/{file_id}",
        ]
