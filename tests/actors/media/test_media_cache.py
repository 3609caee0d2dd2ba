"""The media cache: photo metadata, sized versions, frame versions, playlists and schedules.

Real JPEGs made with Pillow sit in a real blob store; the uploader's events go through the
real journal in a real SQLite file. Requests catch up with the journal before answering, so a
request right after a publish sees its effects; where the actor must recover first (a crash,
a retried write) the test waits for the event that marks the outcome.
"""

from __future__ import annotations

import errno
import io
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from PIL import Image, ImageDraw

from actors.blobs import BlobStore, WriteHook
from actors.errors import BadRequest, Invalid, NotFound
from actors.events import (
    AiMetadata,
    AnyEvent,
    Audit,
    DeviceDeleted,
    Event,
    Face,
    FileDeleted,
    FileUploaded,
    FileUploadedWithAi,
)
from actors.journal import Journal
from actors.media import (
    CreatePlaylist,
    CreateSchedule,
    DeletePlaylist,
    DeleteSchedule,
    GetFrameVersion,
    GetPhoto,
    GetPlaylist,
    GetVersion,
    ListPhotos,
    ListPlaylists,
    ListSchedules,
    MediaCache,
    PhotoView,
    UpdatePlaylist,
    VersionBlob,
)
from actors.store import Entry, Store
from supervision import (
    ActorRef,
    ActorSystem,
    Backoff,
    ChildSpec,
    FaultAction,
    FaultRule,
    Intensity,
    open_asyncio_bridge,
    open_system,
    supervisor,
)

BASE = "http://hub.local:8080"
_decode = msgspec.json.Decoder(AnyEvent).decode


class Published:
    """Counts committed events by name (a store commit listener) and lets a test wait for one."""

    def __init__(self, store: Store) -> None:
        self.names: Counter[str] = Counter()
        self._changed = trio.Event()
        store.commit_listeners.append(self._seen)

    def _seen(self, entries: list[Entry]) -> None:
        self.names.update(entry.event.event_name for entry in entries)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, name: str, count: int = 1) -> None:
        with trio.fail_after(10):
            while self.names[name] < count:
                await self._changed.wait()


class Hub:
    def __init__(
        self, store: Store, blobs: BlobStore, system: ActorSystem, published: Published
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.system = system
        self.published = published
        self.media: ActorRef[Any] = system.lookup("/domain/media")

    async def publish(self, *events: Event) -> None:
        async with self.store.transaction() as tx:
            for event in events:
                tx.publish(event)

    async def events(self, name: str) -> list[Any]:
        rows = await self.store.fetch_all(
            "SELECT payload FROM events WHERE name = ? ORDER BY seq", (name,)
        )
        return [_decode(row[0]) for row in rows]

    async def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return await self.store.fetch_all(sql, params)

    async def photo(self, file_id: str, user_id: str | None = "alice") -> PhotoView:
        view = await self.media.ask(GetPhoto(user_id=user_id, file_id=file_id, base_url=BASE))
        assert isinstance(view, PhotoView)
        return view


@asynccontextmanager
async def open_media(tmp_path: Path, *, write: WriteHook = os.write) -> AsyncIterator[Hub]:
    """The media actor at ``/domain/media``, restarted at once whenever it crashes."""
    async with (
        open_asyncio_bridge() as bridge,
        Store.open(tmp_path / "hub.db", bridge) as store,
    ):
        journal = Journal(store, retry_base_s=0.01)
        blobs = BlobStore(tmp_path / "blobs", write=write)
        limiter = trio.CapacityLimiter(2)
        media = ChildSpec("media", lambda: MediaCache(store, journal, blobs, limiter))
        domain = supervisor(
            "domain",
            [media],
            intensity=Intensity(max_restarts=100, within_s=1.0),
            backoff=Backoff(min_s=0.0, max_s=0.0, jitter=0.0),
        )
        async with open_system(supervisor("root", [domain]), bridge=bridge) as system:
            yield Hub(store, blobs, system, Published(store))


def jpeg(
    width: int = 1600, height: int = 1200, red_square: tuple[int, int, int] | None = None
) -> bytes:
    """A blue photo, with a red square (left, top, side) if given."""
    image = Image.new("RGB", (width, height), (30, 60, 200))
    draw = ImageDraw.Draw(image)
    for x in range(0, width, 40):
        draw.line([(x, 0), (x, height)], fill=(30, 60 + x % 120, 200), width=8)
    if red_square is not None:
        left, top, side = red_square
        draw.rectangle([left, top, left + side, top + side], fill=(230, 20, 20))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def uploaded(
    file_id: str, sha256: str, *, user: str = "alice", content_type: str = "image/jpeg"
) -> FileUploaded:
    return FileUploaded(
        audit=Audit.user(user),
        correlation_id=f"upload-{file_id}",
        file_id=file_id,
        user_id=user,
        file_name=f"{file_id}.jpg",
        file_size=1000,
        content_type=content_type,
        storage_path=f"blobs/{sha256}",
        sha256=sha256,
    )


def analysed(
    file_id: str,
    sha256: str,
    *,
    user: str = "alice",
    size: tuple[int, int] = (1600, 1200),
    faces: list[Face] | None = None,
) -> FileUploadedWithAi:
    return FileUploadedWithAi(
        audit=Audit.user(user),
        correlation_id=f"upload-{file_id}",
        file_id=file_id,
        user_id=user,
        file_name=f"{file_id}.jpg",
        file_size=1000,
        content_type="image/jpeg",
        storage_path=f"blobs/{sha256}",
        sha256=sha256,
        ai_metadata=AiMetadata(
            labels=["sky"], faces=faces or [], width=size[0], height=size[1], phash="00ff"
        ),
    )


async def upload(hub: Hub, file_id: str, data: bytes, **options: Any) -> str:
    """Store ``data`` as the uploader would and publish both of its events; returns the sha."""
    sha256 = await hub.blobs.put_bytes(data)
    user = options.get("user", "alice")
    await hub.publish(uploaded(file_id, sha256, user=user), analysed(file_id, sha256, **options))
    return sha256


def size_of(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "JPEG"
        return image.size


async def test_versions_are_made_once_per_upload_within_their_bounds(tmp_path: Path) -> None:
    async with open_media(tmp_path) as hub:
        sha = await hub.blobs.put_bytes(jpeg())
        events = (uploaded("f1", sha), analysed("f1", sha))
        await hub.publish(*events)
        view = await hub.photo("f1")
        # The same events delivered again change nothing and publish nothing.
        await hub.publish(*events)
        await hub.publish(events[1])
        assert await hub.photo("f1") == view

        sizes = {v.size: (v.width, v.height) for v in view.versions}
        assert sizes == {"thumbnail": (267, 200), "hd": (1440, 1080), "original": (1600, 1200)}
        for size in ("thumbnail", "hd"):
            blob = await hub.media.ask(GetVersion(user_id="alice", file_id="f1", size=size))
            assert isinstance(blob, VersionBlob)
            assert size_of(blob.path) == sizes[size]
            assert blob.path == str(hub.blobs.path(blob.sha256))
        assert await hub.rows("SELECT size FROM photo_versions ORDER BY size") == [
            ("hd",),
            ("thumbnail",),
        ]
        created = await hub.events("media.version_created")
        assert sorted(e.size for e in created) == ["hd", "thumbnail"]
        ready = await hub.events("media.cache_ready")
        assert [(e.file_id, e.sizes) for e in ready] == [("f1", ["thumbnail", "hd"])]
        updated = await hub.events("photo.metadata_updated")
        assert [e.ai_metadata.labels for e in updated] == [["sky"]]
        for event in [*created, *ready, *updated]:
            assert event.correlation_id == "upload-f1"
            assert event.audit == Audit.user("alice")


async def test_a_wide_photo_keeps_both_versions_inside_their_boxes(tmp_path: Path) -> None:
    async with open_media(tmp_path) as hub:
        await upload(hub, "pano", jpeg(4000, 900), size=(4000, 900))
        view = await hub.photo("pano")
        sizes = {v.size: (v.width, v.height) for v in view.versions}
        assert sizes["thumbnail"] == (300, 68)
        assert sizes["hd"] == (1920, 432)


async def test_metadata_is_kept_for_images_only(tmp_path: Path) -> None:
    async with open_media(tmp_path) as hub:
        sha = await hub.blobs.put_bytes(b"%PDF-1.7 not a photo")
        await hub.publish(
            uploaded("doc", sha, content_type="application/pdf"), uploaded("img", "cd" * 32)
        )
        with pytest.raises(NotFound):
            await hub.photo("doc")
        view = await hub.photo("img")
        # Before the analysis arrives: known, but no versions and nothing analysed.
        assert (view.versions, view.ai_metadata) == ([], AiMetadata())
        assert await hub.rows("SELECT file_id, sha256 FROM photo_metadata") == [("img", "cd" * 32)]


async def test_a_version_asked_for_before_the_analysis_is_made_on_the_spot(
    tmp_path: Path,
) -> None:
    async with open_media(tmp_path) as hub:
        sha = await hub.blobs.put_bytes(jpeg())
        await hub.publish(uploaded("f1", sha))
        blob = await hub.media.ask(GetVersion(user_id="alice", file_id="f1", size="hd"))
        assert size_of(blob.path) == (1440, 1080)
        await hub.publish(analysed("f1", sha))
        view = await hub.photo("f1")
        assert [v.size for v in view.versions] == ["thumbnail", "hd", "original"]
        assert view.ai_metadata.labels == ["sky"]
        assert sorted(e.size for e in await hub.events("media.version_created")) == [
            "hd",
            "thumbnail",
        ]
        assert len(await hub.events("media.cache_ready")) == 1
        assert len(await hub.events("photo.metadata_updated")) == 1


async def test_get_photo_answers_the_seed_shape_with_absolute_urls(tmp_path: Path) -> None:
    async with open_media(tmp_path) as hub:
        await upload(hub, "f1", jpeg(), faces=[Face(x=10, y=20, width=30, height=40)])
        await hub.media.ask(GetFrameVersion(file_id="f1", width=800, height=480, frame_id="fr-1"))
        body = msgspec.json.decode(msgspec.json.encode(await hub.photo("f1")))
        assert {"file_id", "file_name", "content_type", "versions", "ai_metadata"} <= set(body)
        assert body["file_id"] == "f1"
        assert (body["file_name"], body["content_type"]) == ("f1.jpg", "image/jpeg")
        download = f"{BASE}/api/v1/files/download/f1"
        assert body["versions"] == [
            {"size": "thumbnail", "width": 267, "height": 200, "url": f"{download}?size=thumbnail"},
            {"size": "hd", "width": 1440, "height": 1080, "url": f"{download}?size=hd"},
            {"size": "original", "width": 1600, "height": 1200, "url": download},
        ]
        assert body["ai_metadata"]["labels"] == ["sky"]
        assert body["ai_metadata"]["faces"] == [{"x": 10, "y": 20, "width": 30, "height": 40}]
        assert body["cached_for_frames"] == ["fr-1"]

        # Another user's photo is unknown to them; a frame (no user) the gateway let in sees it.
        for request in (
            GetPhoto(user_id="bob", file_id="f1", base_url=BASE),
            GetPhoto(user_id="alice", file_id="nope", base_url=BASE),
            GetVersion(user_id="bob", file_id="f1", size="thumbnail"),
        ):
            with pytest.raises(NotFound):
                await hub.media.ask(request)
        assert (await hub.photo("f1", user_id=None)).file_id == "f1"

        await upload(hub, "f2", jpeg(800, 600), size=(800, 600))
        await upload(hub, "fb", jpeg(800, 600), user="bob", size=(800, 600))
        page = await hub.media.ask(ListPhotos(user_id="alice", base_url=BASE, limit=1))
        assert [p.file_id for p in page.items] == ["f2"]
        rest = await hub.media.ask(
            ListPhotos(user_id="alice", base_url=BASE, limit=1, cursor=page.next_cursor)
        )
        assert ([p.file_id for p in rest.items], rest.next_cursor) == (["f1"], None)


async def test_a_frame_version_is_made_on_demand_panel_sized_and_cached(tmp_path: Path) -> None:
    async with open_media(tmp_path) as hub:
        # A wide photo with a face at its far left: a centred square crop would miss it.
        face = Face(x=100, y=450, width=300, height=300)
        await upload(hub, "f1", jpeg(2400, 1200, red_square=(100, 450, 300)), faces=[face])
        assert await hub.rows("SELECT size FROM photo_versions WHERE size LIKE 'frame%'") == []

        first = await hub.media.ask(
            GetFrameVersion(file_id="f1", width=600, height=600, fill=True, frame_id="fr-1")
        )
        assert isinstance(first, VersionBlob)
        assert (first.width, first.height) == (600, 600)
        with Image.open(first.path) as image:
            assert image.size == (600, 600)
            red, green, blue = image.convert("RGB").getpixel((125, 300))  # type: ignore[misc]
        assert red > 180 and green < 80 and blue < 80, "the crop did not keep the face"

        second = await hub.media.ask(
            GetFrameVersion(file_id="f1", width=600, height=600, frame_id="fr-2")
        )
        again = await hub.media.ask(
            GetFrameVersion(file_id="f1", width=600, height=600, frame_id="fr-1")
        )
        assert second == again == first
        fit = await hub.media.ask(
            GetFrameVersion(file_id="f1", width=600, height=600, fill=False, frame_id="fr-3")
        )
        assert (fit.width, fit.height) == (600, 300)

        assert await hub.rows(
            "SELECT size, width, height, sha256 FROM photo_versions WHERE size LIKE 'frame%' "
            "ORDER BY size"
        ) == [
            ("frame-600x600", 600, 600, first.sha256),
            ("frame-600x600-fit", 600, 300, fit.sha256),
        ]
        assert await hub.rows("SELECT frame_id, size FROM photo_cache ORDER BY frame_id") == [
            ("fr-1", "frame-600x600"),
            ("fr-2", "frame-600x600"),
            ("fr-3", "frame-600x600-fit"),
        ]
        made = [e.size for e in await hub.events("media.version_created")]
        assert made.count("frame-600x600") == 1
        assert (await hub.photo("f1")).cached_for_frames == ["fr-1", "fr-2", "fr-3"]
        assert len(await hub.events("media.cache_ready")) == 1

        with pytest.raises(Invalid):
            await hub.media.ask(GetFrameVersion(file_id="f1", width=0, height=600))
        with pytest.raises(NotFound):
            await hub.media.ask(GetFrameVersion(file_id="nope", width=600, height=600))


async def test_a_deleted_file_takes_its_versions_metadata_cache_and_playlist_entries(
    tmp_path: Path,
) -> None:
    async with open_media(tmp_path) as hub:
        photo = jpeg()
        original = await upload(hub, "f1", photo)
        await upload(hub, "f2", jpeg(1000, 1000), size=(1000, 1000))
        # Bob uploaded the very same photo: its versions are the same blobs as f1's.
        await upload(hub, "fb", photo, user="bob")
        frame = await hub.media.ask(
            GetFrameVersion(file_id="f1", width=1024, height=600, frame_id="fr-1")
        )
        playlist = await hub.media.ask(
            CreatePlaylist(user_id="alice", name="Best", file_ids=["f1", "f2"])
        )
        versions = dict(
            await hub.rows("SELECT size, sha256 FROM photo_versions WHERE file_id = 'f1'")
        )
        assert set(versions) == {"thumbnail", "hd", "frame-1024x600"}

        await hub.publish(FileDeleted(audit=Audit.user("alice"), file_id="f1", user_id="alice"))
        with pytest.raises(NotFound):
            await hub.photo("f1")
        for table in ("photo_versions", "photo_metadata", "photo_cache", "playlist_items"):
            assert await hub.rows(f"SELECT * FROM {table} WHERE file_id = 'f1'") == [], table
        kept = await hub.media.ask(GetPlaylist(user_id="alice", playlist_id=playlist.playlist_id))
        assert kept.file_ids == ["f2"]
        # The frame version was f1's alone: gone. Thumbnail and HD are bob's too: kept.
        assert not hub.blobs.exists(frame.sha256)
        assert hub.blobs.exists(versions["thumbnail"]) and hub.blobs.exists(versions["hd"])
        # The original is the uploader's to delete, never the media cache's.
        assert hub.blobs.exists(original)

        # Bob deletes his copy and uploads it again in one batch: the blobs are needed again.
        original_b = await hub.blobs.put_bytes(photo)
        await hub.publish(
            FileDeleted(audit=Audit.user("bob"), file_id="fb", user_id="bob"),
            uploaded("fc", original_b, user="bob"),
            analysed("fc", original_b, user="bob"),
        )
        assert (await hub.photo("fc", user_id="bob")).versions
        assert hub.blobs.exists(versions["thumbnail"]) and hub.blobs.exists(versions["hd"])

        await hub.publish(FileDeleted(audit=Audit.user("bob"), file_id="fc", user_id="bob"))
        await hub.photo("f2")
        assert not hub.blobs.exists(versions["thumbnail"])
        assert not hub.blobs.exists(versions["hd"])
        remaining = {sha for (sha,) in await hub.rows("SELECT sha256 FROM photo_versions")}
        assert remaining and all(hub.blobs.exists(sha) for sha in remaining)


async def test_a_deleted_frame_loses_its_schedules_and_cache_but_playlists_stay(
    tmp_path: Path,
) -> None:
    async with open_media(tmp_path) as hub:
        await upload(hub, "f1", jpeg(800, 600), size=(800, 600))
        playlist = await hub.media.ask(CreatePlaylist(user_id="alice", name="P", file_ids=["f1"]))
        for frame_id in ("fr-1", "fr-2"):
            await hub.media.ask(
                CreateSchedule(
                    user_id="alice",
                    frame_id=frame_id,
                    playlist_id=playlist.playlist_id,
                    interval_s=60,
                )
            )
            await hub.media.ask(
                GetFrameVersion(file_id="f1", width=400, height=300, frame_id=frame_id)
            )
        await hub.publish(DeviceDeleted(audit=Audit.system("registry"), device_id="fr-1"))

        schedules = await hub.media.ask(ListSchedules(user_id="alice"))
        assert [s.frame_id for s in schedules.items] == ["fr-2"]
        assert await hub.rows("SELECT frame_id FROM rotation_schedules") == [("fr-2",)]
        assert await hub.rows("SELECT frame_id FROM photo_cache") == [("fr-2",)]
        assert (await hub.photo("f1")).cached_for_frames == ["fr-2"]
        kept = await hub.media.ask(GetPlaylist(user_id="alice", playlist_id=playlist.playlist_id))
        assert kept.file_ids == ["f1"]


async def test_playlists_and_schedules_are_validated_and_private(tmp_path: Path) -> None:
    async with open_media(tmp_path) as hub:
        await upload(hub, "f1", jpeg(800, 600), size=(800, 600))
        await upload(hub, "f2", jpeg(600, 800), size=(600, 800))
        await upload(hub, "fb", jpeg(800, 600), user="bob", size=(800, 600))
        media = hub.media

        async def refused(error: type[Exception], request: Any) -> None:
            with pytest.raises(error):
                await media.ask(request)

        await refused(Invalid, CreatePlaylist(user_id="alice", name=" "))
        await refused(Invalid, CreatePlaylist(user_id="alice", name="x" * 101))
        await refused(Invalid, CreatePlaylist(user_id="alice", name="P", file_ids=["f1", "f1"]))
        await refused(NotFound, CreatePlaylist(user_id="alice", name="P", file_ids=["fb"]))
        await refused(NotFound, CreatePlaylist(user_id="alice", name="P", file_ids=["nope"]))

        first = await media.ask(CreatePlaylist(user_id="alice", name="First", file_ids=["f1"]))
        second = await media.ask(CreatePlaylist(user_id="alice", name="Second"))
        bobs = await media.ask(CreatePlaylist(user_id="bob", name="Bob's", file_ids=["fb"]))
        updated = await media.ask(
            UpdatePlaylist(user_id="alice", playlist_id=first.playlist_id, file_ids=["f2", "f1"])
        )
        assert (updated.name, updated.file_ids) == ("First", ["f2", "f1"])
        renamed = await media.ask(
            UpdatePlaylist(user_id="alice", playlist_id=first.playlist_id, name="Renamed")
        )
        assert (renamed.name, renamed.file_ids) == ("Renamed", ["f2", "f1"])
        assert await hub.rows(
            "SELECT file_id, position FROM playlist_items WHERE playlist_id = ? ORDER BY position",
            first.playlist_id,
        ) == [("f2", 0), ("f1", 1)]
        await refused(
            NotFound, UpdatePlaylist(user_id="alice", playlist_id=bobs.playlist_id, name="Mine")
        )
        await refused(
            NotFound,
            UpdatePlaylist(user_id="alice", playlist_id=first.playlist_id, file_ids=["fb"]),
        )
        await refused(NotFound, GetPlaylist(user_id="alice", playlist_id=bobs.playlist_id))
        await refused(NotFound, DeletePlaylist(user_id="alice", playlist_id=bobs.playlist_id))
        page = await media.ask(ListPlaylists(user_id="alice", limit=1))
        rest = await media.ask(ListPlaylists(user_id="alice", limit=1, cursor=page.next_cursor))
        assert [p.playlist_id for p in page.items + rest.items] == [
            first.playlist_id,
            second.playlist_id,
        ]
        assert rest.next_cursor is None
        await refused(BadRequest, ListPlaylists(user_id="alice", limit=0))

        def schedule(**fields: Any) -> CreateSchedule:
            return CreateSchedule(
                **{"user_id": "alice", "frame_id": "fr-1", "interval_s": 60, **fields}
            )

        for fields in (
            {"interval_s": 9},
            {"interval_s": 86_401},
            {"quiet_start": "22:00"},
            {"quiet_start": "24:00", "quiet_end": "07:00"},
            {"quiet_start": "22:00", "quiet_end": "7:00"},
            {"quiet_start": "22:00", "quiet_end": "22:00"},
            {"frame_id": ""},
        ):
            await refused(Invalid, schedule(**fields))
        await refused(NotFound, schedule(playlist_id=bobs.playlist_id))
        night = await media.ask(
            schedule(
                playlist_id=first.playlist_id,
                interval_s=10,
                shuffle=True,
                quiet_start="22:30",
                quiet_end="07:00",
            )
        )
        assert (night.interval_s, night.shuffle, night.quiet_start, night.quiet_end) == (
            10,
            True,
            "22:30",
            "07:00",
        )
        other = await media.ask(schedule(frame_id="fr-2", interval_s=86_400))
        assert (other.playlist_id, other.quiet_start) == (None, None)
        only_fr2 = await media.ask(ListSchedules(user_id="alice", frame_id="fr-2"))
        assert [s.schedule_id for s in only_fr2.items] == [other.schedule_id]
        assert (await media.ask(ListSchedules(user_id="bob"))).items == []
        await refused(NotFound, DeleteSchedule(user_id="bob", schedule_id=night.schedule_id))

        # A deleted playlist leaves its schedules running without one.
        await media.ask(DeletePlaylist(user_id="alice", playlist_id=first.playlist_id))
        await refused(NotFound, GetPlaylist(user_id="alice", playlist_id=first.playlist_id))
        listed = await media.ask(ListSchedules(user_id="alice", frame_id="fr-1"))
        assert [s.playlist_id for s in listed.items] == [None]
        await media.ask(DeleteSchedule(user_id="alice", schedule_id=night.schedule_id))
        assert await hub.rows("SELECT schedule_id FROM rotation_schedules") == [
            (other.schedule_id,)
        ]


async def _one_set_of_versions(hub: Hub, file_id: str) -> None:
    """Exactly the thumbnail and HD of ``file_id``, announced once, and no stray blob files."""
    view = await hub.photo(file_id)
    assert [v.size for v in view.versions] == ["thumbnail", "hd", "original"]
    assert await hub.rows("SELECT count(*) FROM photo_versions") == [(2,)]
    assert sorted(e.size for e in await hub.events("media.version_created")) == ["hd", "thumbnail"]
    assert len(await hub.events("media.cache_ready")) == 1
    assert len(await hub.events("photo.metadata_updated")) == 1
    blob_files = [p for p in hub.blobs.root.glob("??/*") if p.is_file()]
    assert len(blob_files) == 3  # the original and its two versions


async def test_a_crash_while_versions_are_being_made_ends_with_one_set(tmp_path: Path) -> None:
    async with open_media(tmp_path) as hub:
        await hub.media.ask(ListPlaylists(user_id="alice"))  # started and caught up
        sha = await hub.blobs.put_bytes(jpeg())
        hub.system.faults.install(
            FaultRule(
                action=FaultAction.CRASH,
                path="/domain/media",
                message_type="JournalNudge",
                nth=1,
            )
        )
        await hub.publish(uploaded("f1", sha), analysed("f1", sha))
        await hub.published.wait_for("media.cache_ready")

        snapshot = hub.system.snapshot("/domain/media")
        assert snapshot.restarts == 1
        assert "injected crash on JournalNudge" in (snapshot.last_error or "")
        await _one_set_of_versions(hub, "f1")


async def test_a_write_failing_half_way_through_the_versions_is_retried_cleanly(
    tmp_path: Path,
) -> None:
    writes: list[int] = []
    fail_on: set[int] = set()
    failed: list[int] = []

    def flaky_write(fd: int, data: bytes | memoryview) -> int:
        writes.append(len(data))
        if len(writes) in fail_on:
            failed.append(len(writes))
            raise OSError(errno.EIO, "injected write failure")
        return os.write(fd, data)

    async with open_media(tmp_path, write=flaky_write) as hub:
        sha = await hub.blobs.put_bytes(jpeg())
        # The analysis's two version blobs are the next two writes: the second one fails.
        fail_on.add(len(writes) + 2)
        await hub.publish(uploaded("f1", sha), analysed("f1", sha))
        await hub.published.wait_for("media.cache_ready")
        assert failed == sorted(fail_on)
        await _one_set_of_versions(hub, "f1")


async def test_everything_is_rebuilt_from_the_database_after_a_restart(tmp_path: Path) -> None:
    async with open_media(tmp_path) as hub:
        sha = await upload(hub, "f1", jpeg())
        await hub.media.ask(GetFrameVersion(file_id="f1", width=640, height=400, frame_id="fr"))
        playlist = await hub.media.ask(CreatePlaylist(user_id="alice", name="P", file_ids=["f1"]))
        schedule = await hub.media.ask(
            CreateSchedule(
                user_id="alice",
                frame_id="fr",
                interval_s=30,
                quiet_start="23:00",
                quiet_end="06:00",
            )
        )
        before = await hub.photo("f1")
    async with open_media(tmp_path) as hub:
        assert await hub.photo("f1") == before
        await hub.publish(analysed("f1", sha))
        assert await hub.photo("f1") == before
        assert len(await hub.events("media.cache_ready")) == 1
        again = await hub.media.ask(GetPlaylist(user_id="alice", playlist_id=playlist.playlist_id))
        assert again == playlist
        assert (await hub.media.ask(ListSchedules(user_id="alice"))).items == [schedule]
        await hub.publish(FileDeleted(audit=Audit.user("alice"), file_id="f1", user_id="alice"))
        with pytest.raises(NotFound):
            await hub.photo("f1")
        blob_files = [p for p in hub.blobs.root.glob("??/*") if p.is_file()]
        assert [p.name for p in blob_files] == [sha]
