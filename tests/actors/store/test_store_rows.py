"""Rows: a Struct written as a row and read back is the same record, with SQLite's types."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
import pytest

from actors.store import Rows, Store
from supervision import open_asyncio_bridge


class Tag(msgspec.Struct, frozen=True):
    label: str


class Photo(msgspec.Struct, frozen=True, kw_only=True):
    photo_id: str
    width: int
    ratio: float
    caption: str | None = None
    favourite: bool
    hidden: bool | None = None
    metadata: dict[str, str] = {}
    tags: list[Tag] = []
    cover: Tag | None = None
    note: str = ""


PHOTOS = Rows(Photo, omit={"note"})
SCHEMA = (
    "CREATE TABLE photos (photo_id TEXT PRIMARY KEY, width INTEGER NOT NULL, ratio REAL NOT NULL, "
    "caption TEXT, favourite INTEGER NOT NULL, hidden INTEGER, metadata TEXT NOT NULL, "
    "tags TEXT NOT NULL, cover TEXT)"
)


def test_columns_and_placeholders_follow_the_struct_fields() -> None:
    assert PHOTOS.columns == (
        "photo_id, width, ratio, caption, favourite, hidden, metadata, tags, cover"
    )
    assert PHOTOS.placeholders == ", ".join("?" * 9)
    assert (
        PHOTOS.insert("photos")
        == f"INSERT INTO photos ({PHOTOS.columns}) VALUES ({PHOTOS.placeholders})"
    )
    renamed = Rows(Tag, renames={"label": "upper(label)"})
    assert renamed.columns == "upper(label)"
    with pytest.raises(ValueError, match="no fields"):
        Rows(Tag, omit={"nope"})


def test_values_store_bools_as_integers_and_containers_as_json_text() -> None:
    photo = Photo(
        photo_id="p1",
        width=800,
        ratio=1.5,
        favourite=True,
        metadata={"camera": "x"},
        tags=[Tag("sea")],
        cover=Tag("sky"),
    )
    assert PHOTOS.values(photo) == (
        "p1",
        800,
        1.5,
        None,
        1,
        None,
        '{"camera":"x"}',
        '[{"label":"sea"}]',
        '{"label":"sky"}',
    )


def test_a_row_reads_back_with_extra_trailing_columns_ignored() -> None:
    row = ("p1", 800, 1.5, "hi", 0, 1, b'{"a":"b"}', "[]", None, 42)
    assert PHOTOS.of(row) == Photo(
        photo_id="p1",
        width=800,
        ratio=1.5,
        caption="hi",
        favourite=False,
        hidden=True,
        metadata={"a": "b"},
    )
    assert PHOTOS.all([row, row]) == [PHOTOS.of(row)] * 2


async def test_records_round_trip_through_sqlite_exactly(tmp_path: Path) -> None:
    photos = [
        Photo(photo_id="p1", width=1, ratio=0.5, favourite=False),
        Photo(
            photo_id="p2",
            width=2**40,
            ratio=1e-9,
            caption="",
            favourite=True,
            hidden=False,
            metadata={"é": "ü"},
            tags=[Tag("a"), Tag("b")],
            cover=Tag(""),
        ),
    ]
    async with open_asyncio_bridge() as bridge, Store.open(tmp_path / "hub.db", bridge) as store:
        await store.migrate("photos", [SCHEMA])
        async with store.transaction() as tx:
            tx.executemany(PHOTOS.insert("photos"), [PHOTOS.values(p) for p in photos])
        rows = await store.fetch_all(f"SELECT {PHOTOS.columns} FROM photos ORDER BY photo_id")
        assert PHOTOS.all(rows) == photos
        types = await store.fetch_all(
            "SELECT typeof(favourite), typeof(hidden), typeof(metadata) FROM photos "
            "ORDER BY photo_id"
        )
        assert types == [("integer", "null", "text"), ("integer", "integer", "text")]


@dataclasses.dataclass
class Rollout:
    rollout_id: str
    photo: Photo
    paused: bool = False
    seen: set[str] = dataclasses.field(default_factory=set)


def test_a_dataclass_reads_back_with_the_fields_its_table_does_not_hold() -> None:
    rollouts = Rows(Rollout, omit={"photo", "seen"})
    assert rollouts.columns == "rollout_id, paused"
    photo = Photo(photo_id="p1", width=1, ratio=1.0, favourite=False)
    rollout = rollouts.of_with(("r1", 1, "p1"), photo=photo)
    assert rollout == Rollout("r1", photo, paused=True)
    assert rollouts.values(rollout) == ("r1", 1)
    with pytest.raises(TypeError):
        Rows(dict)
