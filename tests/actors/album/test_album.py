"""The album actor: albums and their photos, driven by requests and by the uploader's events.

Events go through the real journal in a real SQLite file: the test publishes what the uploader
would, and the actor's requests catch up with the journal before answering, so a request after
a publish sees its effects without any waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.album import (
    AddPhotoToAlbum,
    Album,
    AlbumDetail,
    AlbumInfo,
    AlbumPage,
    CreateAlbum,
    DeleteAlbum,
    GetAlbum,
    ListAlbums,
    RemovePhotoFromAlbum,
)
from actors.errors import BadRequest, Invalid, NotFound
from actors.events import AiMetadata, AnyEvent, Audit, Event, FileDeleted, FileUploadedWithAi
from actors.journal import Journal
from actors.store import Store
from supervision import ActorRef, ChildSpec, open_asyncio_bridge, open_system, supervisor

_decode = msgspec.json.Decoder(AnyEvent).decode


@asynccontextmanager
async def open_album(path: Path) -> AsyncIterator[tuple[Store, ActorRef[Any]]]:
    """The album actor at ``/domain/album`` on the database file ``path``."""
    async with open_asyncio_bridge() as bridge, Store.open(path, bridge) as store:
        journal = Journal(store)
        album = ChildSpec("album", lambda: Album(store, journal))
        tree = supervisor("root", [supervisor("domain", [album])])
        async with open_system(tree, bridge=bridge) as system:
            yield store, system.lookup("/domain/album")


async def publish(store: Store, *events: Event) -> None:
    async with store.transaction() as tx:
        for event in events:
            tx.publish(event)


async def published(store: Store, name: str) -> list[Any]:
    rows = await store.fetch_all("SELECT payload FROM events WHERE name = ? ORDER BY seq", (name,))
    return [_decode(row[0]) for row in rows]


def upload(
    file_id: str, user: str, *, album_id: str | None = None, correlation: str | None = None
) -> FileUploadedWithAi:
    return FileUploadedWithAi(
        audit=Audit.user(user),
        correlation_id=correlation or f"upload-{file_id}",
        file_id=file_id,
        user_id=user,
        file_name=f"{file_id}.jpg",
        file_size=1000,
        content_type="image/jpeg",
        storage_path=f"blobs/{file_id}",
        sha256="ab" * 32,
        metadata={} if album_id is None else {"album_id": album_id},
        ai_metadata=AiMetadata(labels=["family"]),
    )


async def test_albums_are_created_listed_and_deleted_by_their_owner_only(tmp_path: Path) -> None:
    async with open_album(tmp_path / "hub.db") as (store, album):
        first = await album.ask(
            CreateAlbum(user_id="alice", name="  Summer  ", correlation_id="c1")
        )
        second = await album.ask(CreateAlbum(user_id="alice", name="Winter"))
        bobs = await album.ask(CreateAlbum(user_id="bob", name="Bob's"))
        assert isinstance(first, AlbumInfo)
        assert (first.name, first.owner_id, first.photo_count) == ("Summer", "alice", 0)

        page = await album.ask(ListAlbums(user_id="alice", limit=1))
        assert isinstance(page, AlbumPage)
        assert [a.album_id for a in page.items] == [first.album_id]
        assert page.next_cursor is not None
        rest = await album.ask(ListAlbums(user_id="alice", limit=1, cursor=page.next_cursor))
        assert [a.album_id for a in rest.items] == [second.album_id]
        assert rest.next_cursor is None
        with pytest.raises(BadRequest):
            await album.ask(ListAlbums(user_id="alice", cursor="nonsense"))

        # Another user's album is as unknown as one that never existed.
        for request in (
            GetAlbum(user_id="alice", album_id=bobs.album_id),
            DeleteAlbum(user_id="alice", album_id=bobs.album_id),
            GetAlbum(user_id="alice", album_id="no-such-album"),
        ):
            with pytest.raises(NotFound):
                await album.ask(request)
        for name in ("", "   ", "x" * 101, "tab\there"):
            with pytest.raises(Invalid):
                await album.ask(CreateAlbum(user_id="alice", name=name))

        await album.ask(DeleteAlbum(user_id="alice", album_id=second.album_id))
        with pytest.raises(NotFound):
            await album.ask(GetAlbum(user_id="alice", album_id=second.album_id))
        page = await album.ask(ListAlbums(user_id="alice"))
        assert [a.album_id for a in page.items] == [first.album_id]

        created = await published(store, "album.created")
        assert [(e.album_id, e.owner_id, e.name) for e in created] == [
            (first.album_id, "alice", "Summer"),
            (second.album_id, "alice", "Winter"),
            (bobs.album_id, "bob", "Bob's"),
        ]
        assert created[0].correlation_id == "c1"
        assert created[0].audit == Audit.user("alice")
        assert [e.album_id for e in await published(store, "album.deleted")] == [second.album_id]


async def test_adding_and_removing_a_photo_is_idempotent_and_published(tmp_path: Path) -> None:
    async with open_album(tmp_path / "hub.db") as (store, album):
        mine = await album.ask(CreateAlbum(user_id="alice", name="Family"))
        bobs = await album.ask(CreateAlbum(user_id="bob", name="Bob's"))
        await publish(store, upload("f1", "alice"), upload("f2", "alice"), upload("fb", "bob"))

        for _ in range(2):
            added = await album.ask(
                AddPhotoToAlbum(
                    user_id="alice", album_id=mine.album_id, file_id="f1", correlation_id="add"
                )
            )
            assert (added.album_id, added.file_id) == (mine.album_id, "f1")
        await album.ask(AddPhotoToAlbum(user_id="alice", album_id=mine.album_id, file_id="f2"))
        for request in (
            AddPhotoToAlbum(user_id="alice", album_id=mine.album_id, file_id="fb"),
            AddPhotoToAlbum(user_id="alice", album_id=mine.album_id, file_id="unknown"),
            AddPhotoToAlbum(user_id="alice", album_id=bobs.album_id, file_id="f1"),
            RemovePhotoFromAlbum(user_id="alice", album_id=bobs.album_id, file_id="fb"),
        ):
            with pytest.raises(NotFound):
                await album.ask(request)

        detail = await album.ask(GetAlbum(user_id="alice", album_id=mine.album_id))
        assert isinstance(detail, AlbumDetail)
        assert (detail.file_ids, detail.photo_count) == (["f1", "f2"], 2)

        for _ in range(2):
            await album.ask(
                RemovePhotoFromAlbum(user_id="alice", album_id=mine.album_id, file_id="f1")
            )
        detail = await album.ask(GetAlbum(user_id="alice", album_id=mine.album_id))
        assert detail.file_ids == ["f2"]

        added_events = await published(store, "album.photo_added")
        assert [(e.album_id, e.file_id) for e in added_events] == [
            (mine.album_id, "f1"),
            (mine.album_id, "f2"),
        ]
        assert added_events[0].correlation_id == "add"
        removed = await published(store, "album.photo_removed")
        assert [(e.album_id, e.file_id) for e in removed] == [(mine.album_id, "f1")]
        rows = await store.fetch_all("SELECT album_id, file_id FROM album_photos")
        assert rows == [(mine.album_id, "f2")]


async def test_an_upload_naming_an_album_lands_only_in_the_uploaders_own(tmp_path: Path) -> None:
    async with open_album(tmp_path / "hub.db") as (store, album):
        mine = await album.ask(CreateAlbum(user_id="alice", name="Family"))
        bobs = await album.ask(CreateAlbum(user_id="bob", name="Bob's"))
        into_mine = upload("f1", "alice", album_id=mine.album_id, correlation="upload-1")
        await publish(
            store,
            into_mine,
            upload("f2", "alice", album_id=bobs.album_id),
            upload("f3", "alice", album_id="no-such-album"),
        )
        # The same event delivered again changes nothing.
        await publish(store, into_mine)

        detail = await album.ask(GetAlbum(user_id="alice", album_id=mine.album_id))
        assert detail.file_ids == ["f1"]
        bob_detail = await album.ask(GetAlbum(user_id="bob", album_id=bobs.album_id))
        assert bob_detail.file_ids == []
        added = await published(store, "album.photo_added")
        assert [(e.album_id, e.file_id) for e in added] == [(mine.album_id, "f1")]
        assert added[0].correlation_id == "upload-1"
        assert added[0].audit == Audit.user("alice")
        # The files the uploads announced are known to be alice's: she may file them herself.
        await album.ask(AddPhotoToAlbum(user_id="alice", album_id=mine.album_id, file_id="f3"))
        with pytest.raises(NotFound):
            await album.ask(AddPhotoToAlbum(user_id="bob", album_id=bobs.album_id, file_id="f2"))


async def test_a_deleted_file_disappears_from_every_album(tmp_path: Path) -> None:
    async with open_album(tmp_path / "hub.db") as (store, album):
        first = await album.ask(CreateAlbum(user_id="alice", name="One"))
        second = await album.ask(CreateAlbum(user_id="alice", name="Two"))
        await publish(
            store,
            upload("f1", "alice", album_id=first.album_id),
            upload("f2", "alice", album_id=first.album_id),
        )
        await album.ask(AddPhotoToAlbum(user_id="alice", album_id=second.album_id, file_id="f1"))

        deletion = FileDeleted(
            audit=Audit.user("alice"), correlation_id="delete-1", file_id="f1", user_id="alice"
        )
        await publish(store, deletion)
        await publish(store, deletion)

        for info, expected in ((first, ["f2"]), (second, [])):
            detail = await album.ask(GetAlbum(user_id="alice", album_id=info.album_id))
            assert detail.file_ids == expected
        removed = await published(store, "album.photo_removed")
        assert sorted((e.album_id, e.file_id) for e in removed) == sorted(
            [(first.album_id, "f1"), (second.album_id, "f1")]
        )
        assert {e.correlation_id for e in removed} == {"delete-1"}
        # The file is forgotten: it cannot be filed again.
        with pytest.raises(NotFound):
            await album.ask(AddPhotoToAlbum(user_id="alice", album_id=first.album_id, file_id="f1"))
        assert await store.fetch_all("SELECT file_id FROM album_files ORDER BY file_id") == [
            ("f2",)
        ]


async def test_an_upload_and_its_deletion_in_one_batch_leave_no_trace(tmp_path: Path) -> None:
    async with open_album(tmp_path / "hub.db") as (store, album):
        info = await album.ask(CreateAlbum(user_id="alice", name="One"))
        await publish(
            store,
            upload("f1", "alice", album_id=info.album_id),
            FileDeleted(audit=Audit.user("alice"), file_id="f1", user_id="alice"),
        )
        detail = await album.ask(GetAlbum(user_id="alice", album_id=info.album_id))
        assert detail.file_ids == []
        assert [e.file_id for e in await published(store, "album.photo_added")] == ["f1"]
        assert [e.file_id for e in await published(store, "album.photo_removed")] == ["f1"]
        assert await store.fetch_all("SELECT * FROM album_photos") == []


async def test_albums_are_rebuilt_from_the_database_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    async with open_album(path) as (store, album):
        info = await album.ask(CreateAlbum(user_id="alice", name="Family"))
        await publish(
            store,
            *(upload(f"f{i}", "alice", album_id=info.album_id) for i in range(3)),
            upload("fb", "bob"),
        )
        before = await album.ask(GetAlbum(user_id="alice", album_id=info.album_id))
    async with open_album(path) as (store, album):
        after = await album.ask(GetAlbum(user_id="alice", album_id=info.album_id))
        assert after == before
        assert after.file_ids == ["f0", "f1", "f2"]
        with pytest.raises(NotFound):
            await album.ask(AddPhotoToAlbum(user_id="alice", album_id=info.album_id, file_id="fb"))
        await album.ask(RemovePhotoFromAlbum(user_id="alice", album_id=info.album_id, file_id="f1"))
        after = await album.ask(GetAlbum(user_id="alice", album_id=info.album_id))
        assert after.file_ids == ["f0", "f2"]
