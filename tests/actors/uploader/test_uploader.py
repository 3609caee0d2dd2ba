"""The uploader: photos in, one record and one ``file.*`` story each, crash or not.

Each test runs the real thing: a SQLite file in tmp_path, the journal, the blob store on disk,
an actor tree with ``/domain/uploader`` and a recording subscriber to ``file.*``, and images
made with Pillow.
"""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import os
import random
import stat
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from PIL import Image

from actors.blobs import BlobStore
from actors.errors import BadRequest, Invalid, NotFound, StorageFull, TooLarge, UnsupportedMedia
from actors.events import AiMetadata, Event, FileDeleted, FileUploaded, FileUploadedWithAi
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import Entry, Store, Transaction
from actors.uploader import (
    AnalysisFinished,
    DeletePhoto,
    FileRecord,
    GetFile,
    ListFiles,
    OpenOriginal,
    OriginalBlob,
    PendingAnalyses,
    StoredPhoto,
    StorePhoto,
    Uploader,
    clean_file_name,
)
from supervision import (
    Actor,
    ActorCrashed,
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

TIMEOUT = 15
FAST_RESTARTS = Intensity(max_restarts=1000, within_s=1.0)
NO_BACKOFF = Backoff(min_s=0.0, max_s=0.0, jitter=0.0)


# -- images --------------------------------------------------------------------------------------


def image_bytes(
    fmt: str, *, seed: int = 0, size: tuple[int, int] = (96, 64), exif: Image.Exif | None = None
) -> bytes:
    """A small picture with a few coloured blocks; ``seed`` makes each one's bytes unique."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    for _ in range(6):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        block = Image.new("RGB", (size[0] // 4 + 1, size[1] // 4 + 1), (rng.randrange(256), 40, 90))
        image.paste(block, (x, y))
    out = io.BytesIO()
    options: dict[str, Any] = {"exif": exif.tobytes()} if exif is not None else {}
    image.save(out, format=fmt, **options)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (a decompression-bomb shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# -- the hub around the uploader ----------------------------------------------------------------


class Events:
    """The ``file.*`` events a subscriber committed, in order; tests wait on it."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._changed = trio.Event()

    def add(self, event: Event) -> None:
        self.seen.append(event)
        self._changed.set()
        self._changed = trio.Event()

    def of(self, kind: type[Event], file_id: str | None = None) -> list[Any]:
        return [
            event
            for event in self.seen
            if type(event) is kind
            and (file_id is None or getattr(event, "file_id", None) == file_id)
        ]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    async def wait_analysed(self, file_id: str) -> FileUploadedWithAi:
        await self.wait_for(lambda: bool(self.of(FileUploadedWithAi, file_id)))
        event: FileUploadedWithAi = self.of(FileUploadedWithAi, file_id)[0]
        return event


class EventRecorder(Actor[JournalNudge]):
    def __init__(self, journal: Journal, events: Events) -> None:
        self._journal = journal
        self._events = events
        self._consumer: Consumer | None = None

    async def on_start(self) -> None:
        self._consumer = await self._journal.consume(
            "test-recorder", ["file.*"], self.context, self._record
        )

    async def on_stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    async def receive(self, message: JournalNudge) -> None:
        assert self._consumer is not None
        await self._consumer.drain()

    async def _record(self, entry: Entry, tx: Transaction) -> None:
        event = entry.event
        tx.on_commit(lambda: self._events.add(event))


class Hub:
    def __init__(self, store: Store, blobs: BlobStore, system: ActorSystem, events: Events) -> None:
        self.store = store
        self.blobs = blobs
        self.system = system
        self.events = events
        self.uploader: ActorRef[Any] = system.lookup("/domain/uploader")
        self._names = itertools.count(1)

    def stage(self, data: bytes) -> str:
        """Write an incoming upload where the HTTP layer would."""
        path = self.blobs.staging / f"upload-{next(self._names)}"
        path.write_bytes(data)
        return str(path)

    async def upload(
        self,
        data: bytes,
        *,
        user: str = "alice",
        name: str = "photo.jpg",
        metadata: dict[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> StoredPhoto:
        stored = await self.uploader.ask(
            StorePhoto(
                user_id=user,
                staged_path=self.stage(data),
                file_name=name,
                metadata=metadata or {},
                correlation_id=correlation_id,
            )
        )
        assert isinstance(stored, StoredPhoto)
        return stored

    async def rows(self) -> list[tuple[Any, ...]]:
        return await self.store.fetch_all(
            "SELECT file_id, user_id, sha256, deleted, analyzed FROM files ORDER BY seq"
        )

    async def journal_counts(self) -> dict[str, int]:
        rows = await self.store.fetch_all("SELECT name, count(*) FROM events GROUP BY name")
        return {str(name): int(count) for name, count in rows}

    def blob_files(self) -> list[Path]:
        return sorted(
            path
            for path in self.blobs.root.rglob("*")
            if path.is_file() and self.blobs.staging not in path.parents
        )

    def staged_files(self) -> list[Path]:
        return sorted(self.blobs.staging.iterdir())


@asynccontextmanager
async def open_hub(tmp_path: Path, *, blobs: BlobStore | None = None) -> AsyncIterator[Hub]:
    events = Events()
    store_blobs = blobs if blobs is not None else BlobStore(tmp_path / "blobs")
    limiter = trio.CapacityLimiter(2)
    async with (
        open_asyncio_bridge() as bridge,
        Store.open(tmp_path / "hub.db", bridge) as store,
    ):
        journal = Journal(store, retry_base_s=0.01)
        tree = supervisor(
            "root",
            [
                supervisor(
                    "edge",
                    [ChildSpec("events", lambda: EventRecorder(journal, events))],
                    intensity=FAST_RESTARTS,
                    backoff=NO_BACKOFF,
                ),
                supervisor(
                    "domain",
                    [ChildSpec("uploader", lambda: Uploader(store, store_blobs, limiter))],
                    intensity=FAST_RESTARTS,
                    backoff=NO_BACKOFF,
                ),
            ],
            intensity=FAST_RESTARTS,
            backoff=NO_BACKOFF,
        )
        async with open_system(tree, bridge=bridge) as system:
            with trio.fail_after(TIMEOUT):
                yield Hub(store, store_blobs, system, events)


# -- storing -------------------------------------------------------------------------------------


async def test_every_accepted_format_is_stored_under_its_sniffed_type(tmp_path: Path) -> None:
    rotated = Image.Exif()
    rotated[0x0112] = 6  # stored landscape, shown portrait
    uploads = [
        ("image/jpeg", image_bytes("JPEG", seed=1, size=(80, 60)), 80, 60),
        ("image/png", image_bytes("PNG", seed=2, size=(70, 50)), 70, 50),
        ("image/webp", image_bytes("WEBP", seed=3, size=(64, 48)), 64, 48),
        ("image/gif", image_bytes("GIF", seed=4, size=(40, 30)), 40, 30),
        ("image/heic", image_bytes("HEIF", seed=5, size=(64, 64)), 64, 64),
        ("image/jpeg", image_bytes("JPEG", seed=6, size=(96, 64), exif=rotated), 64, 96),
    ]
    async with open_hub(tmp_path) as hub:
        for content_type, data, width, height in uploads:
            # The declared name says nothing: only the bytes decide the type.
            stored = await hub.upload(data, name="upload.bin")
            sha256 = hashlib.sha256(data).hexdigest()
            assert (stored.content_type, stored.file_size, stored.sha256, stored.created) == (
                content_type,
                len(data),
                sha256,
                True,
            )
            assert hub.blobs.path(sha256).read_bytes() == data
            record = await hub.uploader.ask(GetFile(user_id="alice", file_id=stored.file_id))
            assert isinstance(record, FileRecord)
            assert (record.content_type, record.width, record.height) == (
                content_type,
                width,
                height,
            )
        assert hub.staged_files() == []
        assert len(hub.blob_files()) == len(uploads)
        assert len(await hub.rows()) == len(uploads)


@pytest.mark.parametrize(
    ("content", "metadata", "error", "detail"),
    [
        (b"just some text, not a photo\n" * 20, {}, UnsupportedMedia, ""),
        (image_bytes("JPEG", size=(256, 256))[:900], {}, Invalid, ""),
        (b"", {}, Invalid, "empty upload"),
        (png_claiming(30_000, 30_000), {}, TooLarge, ""),
        (image_bytes("PNG"), {f"k{i}": "v" for i in range(21)}, Invalid, "metadata"),
        (image_bytes("PNG"), {"album_id": "x" * 201}, Invalid, "metadata"),
    ],
    ids=["text-named-jpg", "truncated-jpeg", "empty", "pixel-bomb", "many-keys", "long-value"],
)
async def test_a_refused_upload_leaves_no_file_row_blob_or_event(
    tmp_path: Path,
    content: bytes,
    metadata: dict[str, str],
    error: type[Exception],
    detail: str,
) -> None:
    async with open_hub(tmp_path) as hub:
        with pytest.raises(error) as refused:
            await hub.upload(content, name="holiday.jpg", metadata=metadata)
        assert detail in str(refused.value)
        assert str(refused.value), "the refusal says why"

        assert hub.staged_files() == []
        assert hub.blob_files() == []
        assert await hub.rows() == []
        assert await hub.journal_counts() == {}


async def test_a_staged_path_outside_the_staging_directory_is_refused_and_kept(
    tmp_path: Path,
) -> None:
    async with open_hub(tmp_path) as hub:
        elsewhere = tmp_path / "precious.jpg"
        elsewhere.write_bytes(image_bytes("JPEG"))
        for path in (str(elsewhere), str(hub.blobs.staging / ".." / ".." / "precious.jpg")):
            with pytest.raises(BadRequest):
                await hub.uploader.ask(
                    StorePhoto(user_id="alice", staged_path=path, file_name="x.jpg", metadata={})
                )
        assert elsewhere.exists()
        assert await hub.rows() == []


async def test_a_full_disk_refuses_the_upload_with_storage_full(tmp_path: Path) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async with open_hub(tmp_path, blobs=BlobStore(tmp_path / "blobs", fsync=fsync)) as hub:
        with pytest.raises(StorageFull):
            await hub.upload(image_bytes("JPEG"))
        assert hub.staged_files() == []
        assert hub.blob_files() == []
        assert await hub.rows() == []
        assert await hub.journal_counts() == {}


async def test_a_full_database_refuses_the_upload_and_keeps_no_blob(tmp_path: Path) -> None:
    bulky = {"k" * 199 + str(i): "v" * 200 for i in range(10)}

    async def limit_pages(extra: int | None) -> None:
        row = await hub.store.fetch_one("PRAGMA page_count")
        assert row is not None
        pages = 1 << 30 if extra is None else int(row[0]) + extra
        tx = Transaction()
        tx.execute(f"PRAGMA max_page_count = {pages}")
        await hub.store.commit(tx)

    async with open_hub(tmp_path) as hub:
        await limit_pages(0)
        with pytest.raises(StorageFull):
            await hub.upload(image_bytes("JPEG", seed=90), metadata=bulky)
        assert hub.staged_files() == []
        assert hub.blob_files() == []
        assert await hub.rows() == []

        await limit_pages(None)
        stored = await hub.upload(image_bytes("JPEG", seed=90), metadata=bulky)
        await hub.events.wait_analysed(stored.file_id)
        assert hub.blob_files() == [hub.blobs.path(stored.sha256)]


async def test_a_repeated_upload_by_the_same_user_returns_the_photo_it_already_has(
    tmp_path: Path,
) -> None:
    data = image_bytes("JPEG", seed=7)
    async with open_hub(tmp_path) as hub:
        first = await hub.upload(data, name="beach.jpg")
        again = await hub.upload(data, name="beach (1).jpg")

        assert again == StoredPhoto(
            file_id=first.file_id,
            file_name="beach.jpg",
            content_type=first.content_type,
            file_size=first.file_size,
            sha256=first.sha256,
            created=False,
        )
        assert first.created
        assert len(await hub.rows()) == 1
        assert hub.blob_files() == [hub.blobs.path(first.sha256)]
        assert hub.staged_files() == []
        await hub.events.wait_analysed(first.file_id)
        assert (await hub.journal_counts())["file.uploaded"] == 1


async def test_two_users_share_one_blob_until_both_have_deleted_it(tmp_path: Path) -> None:
    data = image_bytes("PNG", seed=8)
    async with open_hub(tmp_path) as hub:
        alices = await hub.upload(data, user="alice")
        bobs = await hub.upload(data, user="bob")

        assert bobs.created and bobs.file_id != alices.file_id
        assert bobs.sha256 == alices.sha256
        assert hub.blob_files() == [hub.blobs.path(alices.sha256)]

        await hub.uploader.ask(DeletePhoto(user_id="alice", file_id=alices.file_id))
        original = await hub.uploader.ask(OpenOriginal(user_id="bob", file_id=bobs.file_id))
        assert await trio.Path(original.path).read_bytes() == data

        await hub.uploader.ask(DeletePhoto(user_id="bob", file_id=bobs.file_id))
        assert hub.blob_files() == []


# -- events ----------------------------------------------------------------------------------


async def test_an_upload_is_announced_then_analysed_under_one_correlation_id(
    tmp_path: Path,
) -> None:
    data = image_bytes("JPEG", seed=9, size=(120, 80))
    async with open_hub(tmp_path) as hub:
        stored = await hub.upload(
            data, name="garden.jpg", metadata={"album_id": "album-1"}, correlation_id="corr-1"
        )
        analysed = await hub.events.wait_analysed(stored.file_id)

        (uploaded,) = hub.events.of(FileUploaded, stored.file_id)
        assert hub.events.seen.index(uploaded) < hub.events.seen.index(analysed)
        seed_fields = {
            "file_id": stored.file_id,
            "user_id": "alice",
            "file_name": "garden.jpg",
            "file_size": len(data),
            "content_type": "image/jpeg",
            "storage_path": f"blobs/{stored.sha256[:2]}/{stored.sha256}",
            "sha256": hashlib.sha256(data).hexdigest(),
            "metadata": {"album_id": "album-1"},
            "correlation_id": "corr-1",
        }
        for event in (uploaded, analysed):
            assert {name: getattr(event, name) for name in seed_fields} == seed_fields
            assert (event.audit.kind, event.audit.id) == ("user", "alice")
        assert (analysed.ai_metadata.width, analysed.ai_metadata.height) == (120, 80)
        assert analysed.ai_metadata.phash

        record = await hub.uploader.ask(GetFile(user_id="alice", file_id=stored.file_id))
        assert record.analyzed is True
        assert record.metadata == {"album_id": "album-1"}

        # Without a correlation id the uploader makes one, and the analysis carries it on.
        other = await hub.upload(image_bytes("PNG", seed=10))
        analysed_other = await hub.events.wait_analysed(other.file_id)
        (uploaded_other,) = hub.events.of(FileUploaded, other.file_id)
        assert uploaded_other.correlation_id not in ("", "corr-1")
        assert analysed_other.correlation_id == uploaded_other.correlation_id


async def test_deleting_a_photo_publishes_file_deleted_and_removes_its_blob(
    tmp_path: Path,
) -> None:
    data = image_bytes("WEBP", seed=11)
    async with open_hub(tmp_path) as hub:
        stored = await hub.upload(data)
        original = await hub.uploader.ask(OpenOriginal(user_id="alice", file_id=stored.file_id))
        assert original == OriginalBlob(
            path=str(hub.blobs.path(stored.sha256)),
            content_type="image/webp",
            sha256=stored.sha256,
            file_name="photo.jpg",
            file_size=len(data),
        )

        reply = await hub.uploader.ask(
            DeletePhoto(user_id="alice", file_id=stored.file_id, correlation_id="del-1")
        )
        assert reply is None
        await hub.events.wait_for(lambda: bool(hub.events.of(FileDeleted, stored.file_id)))
        (deleted,) = hub.events.of(FileDeleted, stored.file_id)
        assert (deleted.user_id, deleted.correlation_id) == ("alice", "del-1")

        assert hub.blob_files() == []
        for message in (
            GetFile(user_id="alice", file_id=stored.file_id),
            OpenOriginal(user_id="alice", file_id=stored.file_id),
            DeletePhoto(user_id="alice", file_id=stored.file_id),
        ):
            with pytest.raises(NotFound):
                await hub.uploader.ask(message)
        page = await hub.uploader.ask(ListFiles(user_id="alice"))
        assert page.items == []
        assert (await hub.journal_counts())["file.deleted"] == 1


async def test_another_users_photo_is_not_found(tmp_path: Path) -> None:
    async with open_hub(tmp_path) as hub:
        stored = await hub.upload(image_bytes("JPEG", seed=12))
        for message in (
            GetFile(user_id="bob", file_id=stored.file_id),
            OpenOriginal(user_id="bob", file_id=stored.file_id),
            DeletePhoto(user_id="bob", file_id=stored.file_id),
            GetFile(user_id="alice", file_id="no-such-file"),
        ):
            with pytest.raises(NotFound):
                await hub.uploader.ask(message)

        assert (await hub.uploader.ask(GetFile(user_id="alice", file_id=stored.file_id))).file_id
        assert hub.blob_files() == [hub.blobs.path(stored.sha256)]
        assert "file.deleted" not in await hub.journal_counts()


# -- names and lists -------------------------------------------------------------------------


async def test_an_uploaded_file_name_is_reduced_to_a_safe_base_name(tmp_path: Path) -> None:
    async with open_hub(tmp_path) as hub:
        stored = await hub.upload(image_bytes("JPEG", seed=13), name="../../etc/passwd.jpg")
        assert stored.file_name == "passwd.jpg"
        record = await hub.uploader.ask(GetFile(user_id="alice", file_id=stored.file_id))
        assert record.file_name == "passwd.jpg"
        uploaded = await _wait_uploaded(hub, stored.file_id)
        assert uploaded.file_name == "passwd.jpg"

        nameless = await hub.upload(image_bytes("PNG", seed=14), name="../..")
        assert nameless.file_name == "photo.png"


async def _wait_uploaded(hub: Hub, file_id: str) -> FileUploaded:
    await hub.events.wait_for(lambda: bool(hub.events.of(FileUploaded, file_id)))
    event: FileUploaded = hub.events.of(FileUploaded, file_id)[0]
    return event


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\me\\Pictures\\cat.png", "cat.png"),
        ("/abs/path/dog.jpg", "dog.jpg"),
        ("bad\x00name\n\r\x1b[31m.jpg", "badname[31m.jpg"),
        ("evil\u202egpj.exe", "evilgpj.exe"),
        ("  .hidden.jpg  ", "hidden.jpg"),
        ("", "photo.png"),
        ("..", "photo.png"),
        ("dir/", "photo.png"),
        ("\x01\x02", "photo.png"),
        ("x" * 300 + ".jpeg", "x" * 195 + ".jpeg"),
        ("y" * 300, "y" * 200),
        ("Café.jpg", "Café.jpg"),
    ],
)
def test_file_names_are_cleaned(given: str, kept: str) -> None:
    cleaned = clean_file_name(given, "image/png")
    assert cleaned == kept
    assert len(cleaned) <= 200


async def test_photos_are_listed_newest_first_a_page_at_a_time(tmp_path: Path) -> None:
    async with open_hub(tmp_path) as hub:
        uploaded = [(await hub.upload(image_bytes("PNG", seed=20 + i))).file_id for i in range(5)]
        await hub.upload(image_bytes("PNG", seed=40), user="bob")

        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            page = await hub.uploader.ask(ListFiles(user_id="alice", limit=2, cursor=cursor))
            pages.append([item.file_id for item in page.items])
            cursor = page.next_cursor
            if cursor is None:
                break
        assert pages == [uploaded[4:2:-1], uploaded[2:0:-1], uploaded[:1]]

        await hub.uploader.ask(DeletePhoto(user_id="alice", file_id=uploaded[3]))
        page = await hub.uploader.ask(ListFiles(user_id="alice", limit=10))
        assert [item.file_id for item in page.items] == [
            uploaded[4],
            uploaded[2],
            uploaded[1],
            uploaded[0],
        ]
        assert page.next_cursor is None

        with pytest.raises(BadRequest):
            await hub.uploader.ask(ListFiles(user_id="alice", cursor="not-a-cursor!"))
        with pytest.raises(Invalid):
            await hub.uploader.ask(ListFiles(user_id="alice", limit=0))


async def test_records_survive_a_restart_and_new_uploads_still_list_first(
    tmp_path: Path,
) -> None:
    async with open_hub(tmp_path) as hub:
        before = await hub.upload(image_bytes("JPEG", seed=50))
    async with open_hub(tmp_path) as hub:
        record = await hub.uploader.ask(GetFile(user_id="alice", file_id=before.file_id))
        assert record.sha256 == before.sha256
        after = await hub.upload(image_bytes("JPEG", seed=51))
        page = await hub.uploader.ask(ListFiles(user_id="alice"))
        assert [item.file_id for item in page.items] == [after.file_id, before.file_id]


# -- crashes ---------------------------------------------------------------------------------


async def test_a_crash_on_store_photo_keeps_nothing_and_a_retry_succeeds(tmp_path: Path) -> None:
    data = image_bytes("JPEG", seed=60)
    async with open_hub(tmp_path) as hub:
        hub.system.faults.install(
            FaultRule(
                action=FaultAction.CRASH,
                path="/domain/uploader",
                message_type="StorePhoto",
                nth=1,
            )
        )
        staged = hub.stage(data)
        message = StorePhoto(user_id="alice", staged_path=staged, file_name="a.jpg", metadata={})
        with pytest.raises(ActorCrashed):
            await hub.uploader.ask(message)
        assert await hub.rows() == []
        assert await hub.journal_counts() == {}

        stored = await hub.uploader.ask(message)
        assert stored.created
        await hub.events.wait_analysed(stored.file_id)
        assert [row[0] for row in await hub.rows()] == [stored.file_id]
        assert await hub.journal_counts() == {"file.uploaded": 1, "file.uploaded.with_ai": 1}


async def test_a_crash_halfway_through_storing_publishes_nothing(tmp_path: Path) -> None:
    crash = [True]

    def fsync(fd: int) -> None:
        # The first directory sync crashes the uploader, as a bug there would.
        if crash[0] and stat.S_ISDIR(os.fstat(fd).st_mode):
            crash[0] = False
            raise RuntimeError("crash while placing the blob")
        os.fsync(fd)

    data = image_bytes("JPEG", seed=61)
    async with open_hub(tmp_path, blobs=BlobStore(tmp_path / "blobs", fsync=fsync)) as hub:
        with pytest.raises(ActorCrashed):
            await hub.upload(data)
        assert await hub.rows() == []
        assert await hub.journal_counts() == {}

        stored = await hub.upload(data)
        assert stored.created
        assert hub.blobs.path(stored.sha256).read_bytes() == data
        await hub.events.wait_analysed(stored.file_id)
        assert len(await hub.rows()) == 1
        assert await hub.journal_counts() == {"file.uploaded": 1, "file.uploaded.with_ai": 1}


async def test_a_crash_on_an_analysis_result_still_analyses_each_photo_once(
    tmp_path: Path,
) -> None:
    async with open_hub(tmp_path) as hub:
        hub.system.faults.install(
            FaultRule(
                action=FaultAction.CRASH,
                path="/domain/uploader",
                message_type="AnalysisFinished",
                nth=1,
            )
        )
        first = await hub.upload(image_bytes("JPEG", seed=70))
        second = await hub.upload(image_bytes("JPEG", seed=71))
        # The crashed incarnation's result is lost; the next one finds the photo unanalysed
        # in its table and analyses it again.
        await hub.events.wait_analysed(first.file_id)
        await hub.events.wait_analysed(second.file_id)

        assert [rule.fired for rule in hub.system.faults.installed()] == [1]
        assert hub.system.snapshot("/domain/uploader").restarts == 1
        assert len(hub.events.of(FileUploadedWithAi, first.file_id)) == 1
        assert len(hub.events.of(FileUploadedWithAi, second.file_id)) == 1
        assert await hub.journal_counts() == {"file.uploaded": 2, "file.uploaded.with_ai": 2}
        assert [row[4] for row in await hub.rows()] == [1, 1]
        assert await hub.uploader.ask(PendingAnalyses()) == 0


async def test_a_photo_deleted_before_its_analysis_is_not_analysed(tmp_path: Path) -> None:
    async with open_hub(tmp_path) as hub:
        faults = hub.system.faults
        # Hold every analysis result back until the photo is deleted.
        held = faults.install(
            FaultRule(
                action=FaultAction.DROP, path="/domain/uploader", message_type="AnalysisFinished"
            )
        )
        data = image_bytes("JPEG", seed=80)
        gone = await hub.upload(data)
        # Bob's copy keeps the blob on disk: only the deletion can stop the analysis.
        bobs = await hub.upload(data, user="bob")
        await hub.uploader.ask(DeletePhoto(user_id="alice", file_id=gone.file_id))
        faults.remove(held)
        # The result of a job that was still running when the photo was deleted arrives late.
        await hub.uploader.ask(AnalysisFinished(file_id=gone.file_id, ai_metadata=AiMetadata()))
        # A restart analyses what is left unanalysed: Bob's photo, not the deleted one.
        faults.install(
            FaultRule(
                action=FaultAction.CRASH, path="/domain/uploader", message_type="GetFile", nth=1
            )
        )
        with pytest.raises(ActorCrashed):
            await hub.uploader.ask(GetFile(user_id="alice", file_id=gone.file_id))

        kept = await hub.upload(image_bytes("JPEG", seed=81))
        await hub.events.wait_analysed(kept.file_id)
        await hub.events.wait_analysed(bobs.file_id)

        assert hub.events.of(FileUploadedWithAi, gone.file_id) == []
        assert [(row[0], row[3], row[4]) for row in await hub.rows()] == [
            (gone.file_id, 1, 0),
            (bobs.file_id, 0, 1),
            (kept.file_id, 0, 1),
        ]
        assert await hub.store.fetch_all("SELECT seq FROM journal_dead_letters") == []
