"""A corpus of malformed and hostile images through the real upload, against the whole hub.

The corpus (``tests/harness/fuzz/hostile_images``: truncated files of every accepted
format, decompression bombs, type lies and polyglots, huge and degenerate sizes, EXIF that lies
or loops, enormous metadata, odd pixel formats; plus seeded random mutants of valid images) is
uploaded over HTTP as the phone app uploads. Each upload gets the answer decided for it:

* a real image, however odd, is stored (201) with the type sniffed from its bytes, and gets
  its thumbnail and HD versions, upright, and a version filling a frame's panel (a frame shows
  the album it was filed into);
* anything else is refused with its problem (413, 415 or 422) and leaves nothing behind: no
  blob, no staged file, no row, no event.

Meanwhile the hub's memory stays bounded (the process' RSS is sampled throughout), and
afterwards the analysis actors are neither crashed nor stuck: a normal upload gets its versions.
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import trio
from PIL import Image

from tests.harness.fuzz.hostile_images import Specimen, corpus, mutants
from tests.harness.hub import Hub, User, running_hub
from tests.harness.images import GREEN, RED
from tests.harness.photos import decoded, jpeg, near
from tests.harness.photos_api import fits, new_album, versions_of
from tests.harness.replies import body_of, problem

# Pillow warns about the corpus' broken EXIF as it reads it (that is the point of it).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")

UPLOAD_LIMIT = 8 << 20
MUTANTS, MUTANTS_LONG = 20, 400
PANEL = (1024, 600)
BOXES = {"thumbnail": (300, 200), "hd": (1920, 1080)}
GROWTH_LIMIT = 1536 << 20
"""How far the process' RSS may rise above where it started (a 12 MP photo's decode is about
36 MB; the 240 MP one of ``--long`` about 240 MB, a few times over while analysed)."""
GROWTH_LIMIT_LONG = 4096 << 20


class Memory:
    """The process' peak RSS, sampled every 20 ms while ``watch`` runs (a measurement, not a
    wait: nothing waits on it)."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss

    async def watch(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            await trio.sleep(0.02)


async def journal_end(hub: Hub) -> int:
    row = await hub.store.fetch_one("SELECT coalesce(max(seq), 0) FROM events")
    assert row is not None
    return int(row[0])


async def photo_events_since(hub: Hub, seq: int, correlation_id: str) -> list[str]:
    """Events after ``seq`` of the request ``correlation_id`` or about photos at all (the
    frame's proxy publishes its own meanwhile)."""
    rows = await hub.store.fetch_all(
        "SELECT name FROM events WHERE seq > ? AND (correlation_id = ? OR name LIKE 'file.%' "
        "OR name LIKE 'album.%' OR name LIKE 'media.%')",
        (seq, correlation_id),
    )
    return [str(row[0]) for row in rows]


async def file_rows(hub: Hub) -> int:
    row = await hub.store.fetch_one("SELECT count(*) FROM files")
    assert row is not None
    return int(row[0])


async def test_hostile_images_are_stored_upright_or_refused_without_a_trace(
    tmp_path: Path, seed: int, long_run: bool
) -> None:
    specimens = await trio.to_thread.run_sync(lambda: corpus(seed, UPLOAD_LIMIT, long=long_run))
    specimens += mutants(seed, MUTANTS_LONG if long_run else MUTANTS)
    # Hundreds of requests a minute with one token are the point here, not a client to slow.
    settings = {
        "HTTP__MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "HTTP__RATE_LIMIT_PER_MINUTE": "100000",
    }
    async with running_hub(tmp_path / "data", **settings) as hub, trio.open_nursery() as nursery:
        memory = Memory()
        nursery.start_soon(memory.watch)
        admin = await hub.new_user("admin", admin=True)
        user = await hub.new_user("alice")
        album = await new_album(hub, user)
        table: list[list[str]] = []
        kept: dict[str, tuple[int, Specimen]] = {}
        for number, specimen in enumerate(specimens):
            status, file_id = await upload(hub, user, album, specimen)
            if file_id is not None:
                kept[file_id] = number, specimen
            table.append([specimen.name, str(specimen.expect or "201/4xx"), str(status)])

        await hub.analysed()
        # A frame shows the album now: its proxy has a version made for the panel of every
        # photo there (as the frame's own downloads below do).
        frame = await hub.pair_frame(admin, width=PANEL[0], height=PANEL[1])
        shown = await hub.client.put(
            f"/api/v1/devices/{frame.device_id}/albums",
            json={"album_ids": [album]},
            headers=admin.auth,
        )
        assert shown.status_code == 200, shown.text
        for file_id, (number, specimen) in kept.items():
            table[number].append(
                await check_versions(hub, user, file_id, specimen, frame.device_id)
            )

        # Not crashed, not stuck: a normal photo still gets its versions, nothing was parked.
        normal = body_of(await hub.upload(user, jpeg(800, 600, seed), "normal.jpg"))
        await hub.analysed()
        photo = body_of(
            await hub.client.get(f"/api/v1/photos/{normal['file_id']}", headers=user.auth), 200
        )
        assert set(versions_of(photo)) == {"thumbnail", "hd", "original"}, photo
        for path in ("/domain/uploader", "/domain/media", "/domain/album", "/frames/fleet"):
            snapshot = hub.system.snapshot(path)
            assert (snapshot.state, snapshot.restarts) == ("running", 0), (path, snapshot)
        assert hub.system.snapshot(f"/frames/{frame.device_id}").restarts == 0
        parked = await hub.store.fetch_all("SELECT subscriber, error FROM journal_dead_letters")
        assert parked == [], parked
        limit = GROWTH_LIMIT_LONG if long_run else GROWTH_LIMIT
        growth = memory.peak - memory.start
        assert growth < limit, f"RSS rose by {growth >> 20} MB"
        nursery.cancel_scope.cancel()

    print(f"\n{len(specimens)} images, peak RSS +{growth >> 20} MB over {memory.start >> 20} MB")
    for row in table:
        print(" | ".join(row))


async def upload(hub: Hub, user: User, album: str, specimen: Specimen) -> tuple[int, str | None]:
    """Upload ``specimen`` and check its answer; the file id when it was stored."""
    await hub.analysed()  # the photo before has all its versions: nothing else comes now
    blobs, rows, end = hub.blob_files(), await file_rows(hub), await journal_end(hub)
    response = await hub.upload(
        user,
        specimen.data,
        specimen.file_name,
        content_type=specimen.declared,
        metadata={"album_id": album},
    )
    status = response.status_code
    if specimen.expect:
        assert status == specimen.expect, (specimen.name, status, response.text)
    else:
        # A mutant: whatever its bytes turned out to be, never anything but these.
        assert status in (200, 201, 413, 415, 422), (specimen.name, status, response.text)
    if status in (200, 201):
        stored = response.json()
        assert stored["file_size"] == len(specimen.data), specimen.name
        if specimen.sniffed is not None:
            assert stored["content_type"] == specimen.sniffed, (specimen.name, stored)
        return status, None if status == 200 else str(stored["file_id"])
    refusal = problem(response, status)
    detail = refusal["detail"]
    await hub.analysed()
    assert hub.blob_files() == blobs, (specimen.name, detail)
    assert hub.staged_files() == [], (specimen.name, detail)
    assert await file_rows(hub) == rows, (specimen.name, detail)
    events = await photo_events_since(hub, end, refusal["correlation_id"])
    assert events == [], (specimen.name, detail, events)
    return status, None


async def check_versions(
    hub: Hub, user: User, file_id: str, specimen: Specimen, frame_id: str
) -> str:
    """The stored photo's versions: there, upright, fitting (or filling) their boxes. Their
    sizes, for the report."""
    photo = body_of(await hub.client.get(f"/api/v1/photos/{file_id}", headers=user.auth), 200)
    versions = versions_of(photo)
    assert set(versions) == {"thumbnail", "hd", "original"}, (specimen.name, photo)
    original = versions["original"]
    upright = (original["width"], original["height"])
    if specimen.upright is not None:
        assert upright == specimen.upright, (specimen.name, upright)
    sizes = []
    for size, box in BOXES.items():
        image = await fetch(hub, user, versions[size]["url"], specimen)
        assert fits(image.size, box, upright), (specimen.name, size, image.size, upright)
        if specimen.marked:
            assert_marked(image, specimen.name)
        sizes.append(f"{image.width}x{image.height}")
    panel = await fetch(
        hub, user, f"/api/v1/files/download/{file_id}?size=frame&frame_id={frame_id}", specimen
    )
    assert panel.size == PANEL, (specimen.name, panel.size)
    sizes.append(f"{panel.width}x{panel.height}")
    return " ".join(sizes)


async def fetch(hub: Hub, user: User, url: str, specimen: Specimen) -> Image.Image:
    response = await hub.client.get(url, headers=user.auth)
    assert response.status_code == 200, (specimen.name, url, response.status_code, response.text)
    assert response.headers["content-type"] == "image/jpeg", (specimen.name, url)
    image = decoded(response.content)
    assert (image.format, image.mode) == ("JPEG", "RGB"), (specimen.name, image.mode)
    return image


def assert_marked(image: Image.Image, name: str) -> None:
    """Upright ``marked()``: red in the top-left corner, green in the top-right one."""
    width, height = image.size
    top_left = image.getpixel((width // 20, height // 20))
    top_right = image.getpixel((width - 1 - width // 20, height // 20))
    assert isinstance(top_left, tuple) and isinstance(top_right, tuple)
    assert near(top_left, RED) and near(top_right, GREEN), (name, top_left, top_right)
