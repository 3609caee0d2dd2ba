"""The blob store: content-addressed files, written whole or not at all."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from actors.blobs import BlobStore
from actors.errors import Invalid, NotFound, StorageFull


def files_under(root: Path) -> list[Path]:
    """Every regular file in the store, staging included."""
    return sorted(path for path in root.rglob("*") if path.is_file())


def failing(error_number: int, *, after: int = 0) -> Callable[[int], None]:
    """An ``fsync`` that succeeds ``after`` times, then fails as the disk would."""
    calls = 0

    def fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls > after:
            raise OSError(error_number, os.strerror(error_number))
        os.fsync(fd)

    return fsync


def staged(blobs: BlobStore, data: bytes, name: str = "upload") -> Path:
    path = blobs.staging / name
    path.write_bytes(data)
    return path


async def test_put_bytes_stores_the_data_under_its_sha256(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    data = b"a photo, honestly" * 1000
    sha256 = await blobs.put_bytes(data)

    assert sha256 == hashlib.sha256(data).hexdigest()
    assert blobs.path(sha256) == tmp_path / "blobs" / sha256[:2] / sha256
    assert blobs.path(sha256).read_bytes() == data
    assert blobs.exists(sha256)
    assert await blobs.size(sha256) == len(data)
    assert await blobs.put_bytes(data) == sha256
    assert files_under(tmp_path / "blobs") == [blobs.path(sha256)]


async def test_put_file_moves_the_staged_file_in_and_drops_a_second_copy(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    data = os.urandom(3 * 1024 * 1024 + 7)
    first = staged(blobs, data, "first")
    sha256 = await blobs.put_file(first)

    assert sha256 == hashlib.sha256(data).hexdigest()
    assert not first.exists()
    assert blobs.path(sha256).read_bytes() == data

    second = staged(blobs, data, "second")
    assert await blobs.put_file(second) == sha256
    assert not second.exists()
    assert files_under(tmp_path / "blobs") == [blobs.path(sha256)]


def file_on_another_filesystem(tmp_path: Path, data: bytes) -> Path | None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        return None
    with tempfile.NamedTemporaryFile(dir=shm, delete=False) as file:
        file.write(data)
    return Path(file.name)


async def test_put_file_copies_a_file_from_another_filesystem(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    data = os.urandom(100_000)
    source = file_on_another_filesystem(tmp_path, data)
    if source is None:
        pytest.skip("needs a second filesystem at /dev/shm")
    try:
        sha256 = await blobs.put_file(source)
        assert not await trio.Path(source).exists()
    finally:
        await trio.Path(source).unlink(missing_ok=True)

    assert blobs.path(sha256).read_bytes() == data
    assert files_under(tmp_path / "blobs") == [blobs.path(sha256)]


async def test_a_full_disk_on_write_raises_storage_full_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    written: list[int] = []

    def write(fd: int, data: bytes | memoryview) -> int:
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        chunk = min(len(data), 4096)
        written.append(chunk)
        return os.write(fd, data[:chunk])

    blobs = BlobStore(tmp_path / "blobs", write=write)
    with pytest.raises(StorageFull):
        await blobs.put_bytes(os.urandom(50_000))

    assert written, "the first chunk was written before the disk filled up"
    assert files_under(tmp_path / "blobs") == []


async def test_a_full_disk_on_fsync_raises_storage_full_and_consumes_the_upload(
    tmp_path: Path,
) -> None:
    blobs = BlobStore(tmp_path / "blobs", fsync=failing(errno.ENOSPC))
    source = staged(blobs, os.urandom(10_000))
    with pytest.raises(StorageFull):
        await blobs.put_file(source)
    assert files_under(tmp_path / "blobs") == []

    quota = BlobStore(tmp_path / "quota", fsync=failing(errno.EDQUOT))
    with pytest.raises(StorageFull):
        await quota.put_bytes(b"over quota")
    assert files_under(tmp_path / "quota") == []


async def test_a_failure_after_the_rename_leaves_a_whole_blob_or_none(tmp_path: Path) -> None:
    # The file fsync succeeds; the directory fsync after the rename fails.
    root = tmp_path / "blobs"
    data = os.urandom(1000)
    sha256 = hashlib.sha256(data).hexdigest()
    with pytest.raises(StorageFull):
        await BlobStore(root, fsync=failing(errno.ENOSPC, after=1)).put_bytes(data)
    leftovers = files_under(root)
    assert leftovers in ([], [root / sha256[:2] / sha256])
    assert all(path.read_bytes() == data for path in leftovers)

    assert await BlobStore(root).put_bytes(data) == sha256
    assert files_under(root) == [root / sha256[:2] / sha256]


async def test_other_io_errors_are_re_raised_as_they_are(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs", fsync=failing(errno.EIO))
    source = staged(blobs, b"bytes on a dying disk")
    with pytest.raises(OSError) as caught:
        await blobs.put_file(source)
    assert caught.value.errno == errno.EIO
    assert not isinstance(caught.value, StorageFull)
    assert files_under(tmp_path / "blobs") == []


@pytest.mark.parametrize(
    "digest",
    [
        "../../etc/passwd",
        "../" + "a" * 61,
        "A" * 64,
        "a" * 63,
        "a" * 65,
        "g" * 64,
        "",
        "a" * 64 + "/../x",
    ],
)
async def test_paths_are_only_built_from_real_digests(tmp_path: Path, digest: str) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    with pytest.raises(Invalid):
        blobs.path(digest)
    with pytest.raises(Invalid):
        blobs.exists(digest)
    with pytest.raises(Invalid):
        await blobs.delete(digest)
    with pytest.raises(Invalid):
        await blobs.size(digest)


async def test_delete_removes_the_blob_once(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    sha256 = await blobs.put_bytes(b"short-lived")
    assert await blobs.delete(sha256) is True
    assert not blobs.exists(sha256)
    assert await blobs.delete(sha256) is False
    with pytest.raises(NotFound):
        await blobs.size(sha256)


async def test_concurrent_writes_of_the_same_bytes_keep_one_whole_blob(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    data = os.urandom(200_000)
    digests: list[str] = []

    async def put() -> None:
        digests.append(await blobs.put_bytes(data))

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(put)

    assert set(digests) == {hashlib.sha256(data).hexdigest()}
    assert files_under(tmp_path / "blobs") == [blobs.path(digests[0])]
    assert blobs.path(digests[0]).read_bytes() == data


async def test_sweeping_the_staging_directory_removes_only_old_files(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    old = staged(blobs, b"abandoned", "old")
    fresh = staged(blobs, b"being written", "fresh")
    an_hour_ago = time.time() - 3700
    os.utime(old, (an_hour_ago, an_hour_ago))

    assert await blobs.sweep_staging(3600) == 1
    assert not old.exists()
    assert fresh.exists()
