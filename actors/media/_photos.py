"""The photos the media cache knows, their versions, and what references each blob.

A photo is an image upload; its versions are JPEG blobs in the version store, named by their
SHA-256 and referenced from ``photo_versions``. ``Photos`` keeps every photo in memory (the
analysis excepted, read when a photo is shown) with the reference counts that decide when a
version blob may go: once no row names it any more and it is not some upload's original, and
only after the transaction that dropped its last reference has committed (``collect_blobs``).
It also knows which frames have a version of which photo cached, so that a deleted frame's
entries go at once.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence

import msgspec

from actors import imaging
from actors.blobs import BlobStore
from actors.errors import NotFound
from actors.events import AiMetadata, Face, FileUploaded, FileUploadedWithAi
from actors.store import SortedRecords, Store, Transaction

from ._messages import PhotoPage, PhotoVersion, PhotoView
from ._tables import (
    SELECT_ANALYSIS,
    SELECT_CACHE,
    SELECT_PHOTOS,
    SELECT_VERSIONS,
    select_analyses,
)

log = logging.getLogger("framehub.media")

STANDARD_VERSIONS = (imaging.THUMBNAIL, imaging.HD)
"""Made for every upload; together they make a photo's cache ready."""

encode_analysis = msgspec.json.Encoder().encode
decode_analysis = msgspec.json.Decoder(AiMetadata).decode


def digest(analysis: bytes) -> bytes:
    return hashlib.blake2b(analysis, digest_size=16).digest()


def is_image(content_type: str) -> bool:
    return content_type.startswith("image/")


class Version(msgspec.Struct, frozen=True):
    size: str
    width: int
    height: int
    sha256: str


class Photo:
    __slots__ = (
        "ai_digest",
        "content_type",
        "created_at",
        "file_id",
        "file_name",
        "frames",
        "height",
        "owner_id",
        "sha256",
        "versions",
        "width",
    )

    def __init__(
        self,
        file_id: str,
        owner_id: str,
        file_name: str,
        content_type: str,
        sha256: str,
        created_at: str,
    ) -> None:
        self.file_id = file_id
        self.owner_id = owner_id
        self.file_name = file_name
        self.content_type = content_type
        self.sha256 = sha256
        """The original's blob."""
        self.created_at = created_at
        self.width: int | None = None
        self.height: int | None = None
        self.ai_digest: bytes | None = None
        """Digest of the stored analysis JSON: a repeated analysis changes nothing."""
        self.versions: dict[str, Version] = {}
        self.frames: dict[str, str] = {}
        """frame_id -> the version cached for it."""

    @classmethod
    def uploaded(cls, event: FileUploaded | FileUploadedWithAi) -> Photo:
        return cls(
            event.file_id,
            event.user_id,
            event.file_name,
            event.content_type,
            event.sha256,
            event.occurred_at,
        )

    def take_analysis(self, ai: AiMetadata, digest: bytes) -> None:
        self.width, self.height, self.ai_digest = ai.width, ai.height, digest

    def missing_standard(self) -> list[imaging.VersionSpec]:
        return [spec for spec in STANDARD_VERSIONS if spec.name not in self.versions]


def _release(counts: Counter[str], key: str) -> bool:
    """Count one reference to ``key`` less; True when that was the last one."""
    counts[key] -= 1
    if counts[key] > 0:
        return False
    del counts[key]
    return True


class Photos:
    """Every photo by id, newest first when paged; ``blobs`` is where versions are kept.

    The methods that change memory are called once nothing can fail any more: after the
    request's transaction committed, or as a journal handler's last step.
    """

    def __init__(self, store: Store, blobs: BlobStore) -> None:
        self._store = store
        self._blobs = blobs
        self._photos: SortedRecords[Photo, tuple[str, str]] = SortedRecords(
            lambda p: (p.created_at, p.file_id), tuple[str, str], newest_first=True
        )
        self._version_refs: Counter[str] = Counter()
        """sha256 -> how many ``photo_versions`` rows name that blob."""
        self._originals: Counter[str] = Counter()
        """sha256 -> how many photos have it as their original (never deleted here)."""
        self._cached_on: dict[str, set[str]] = {}
        """frame_id -> the photos with a version cached for it."""
        self._unreferenced: set[str] = set()
        """Version blobs whose last row went away in a committed transaction."""

    async def load(self) -> None:
        """Rebuild from the tables (at start)."""
        store = self._store
        for row in await store.fetch_all(SELECT_PHOTOS):
            photo = Photo(*row[:6])
            if row[6] is not None:
                photo.take_analysis(decode_analysis(row[6]), digest(row[6]))
            self.add(photo)
        for file_id, size, width, height, sha256 in await store.fetch_all(SELECT_VERSIONS):
            self.keep_versions(self._photos[file_id], [Version(size, width, height, sha256)])
        for file_id, frame_id, size in await store.fetch_all(SELECT_CACHE):
            self.cache(self._photos[file_id], frame_id, size)

    def __contains__(self, file_id: str) -> bool:
        return file_id in self._photos

    def find(self, file_id: str) -> Photo | None:
        return self._photos.get(file_id)

    def get(self, user_id: str | None, file_id: str) -> Photo:
        """The photo ``file_id`` if it is ``user_id``'s (any owner's for None), else
        ``NotFound``."""
        photo = self._photos.get(file_id)
        if photo is None or user_id not in (None, photo.owner_id):
            raise NotFound(f"no photo {file_id}")
        return photo

    async def page(self, user_id: str, limit: int, cursor: str | None, base_url: str) -> PhotoPage:
        """The user's photos, newest first."""
        photos, next_cursor = self._photos.page(limit, cursor, lambda p: p.owner_id == user_id)
        return PhotoPage(items=await self.views(photos, base_url), next_cursor=next_cursor)

    async def views(self, photos: Sequence[Photo], base_url: str) -> list[PhotoView]:
        """``photos`` in the seed shape, their versions' URLs under ``base_url``."""
        if not photos:
            return []
        analyses = {
            file_id: decode_analysis(data)
            for file_id, data in await self._store.fetch_all(
                select_analyses(len(photos)), [p.file_id for p in photos]
            )
        }
        base = base_url.rstrip("/")
        views = []
        for photo in photos:
            download = f"{base}/api/v1/files/download/{photo.file_id}"
            versions = [
                PhotoVersion(
                    size=v.size, width=v.width, height=v.height, url=f"{download}?size={v.size}"
                )
                for spec in STANDARD_VERSIONS
                if (v := photo.versions.get(spec.name)) is not None
            ]
            if photo.width is not None and photo.height is not None:
                versions.append(
                    PhotoVersion(
                        size="original", width=photo.width, height=photo.height, url=download
                    )
                )
            views.append(
                PhotoView(
                    file_id=photo.file_id,
                    file_name=photo.file_name,
                    content_type=photo.content_type,
                    versions=versions,
                    ai_metadata=analyses.get(photo.file_id, AiMetadata()),
                    cached_for_frames=sorted(photo.frames),
                    created_at=photo.created_at,
                )
            )
        return views

    async def faces(self, file_id: str) -> list[Face]:
        """The faces the analysis found (none before it arrived)."""
        row = await self._store.fetch_one(SELECT_ANALYSIS, (file_id,))
        if row is None or row[0] is None:
            return []
        return decode_analysis(row[0]).faces

    def add(self, photo: Photo) -> None:
        self._photos[photo.file_id] = photo
        self._originals[photo.sha256] += 1

    def keep_versions(self, photo: Photo, made: Sequence[Version]) -> None:
        for version in made:
            photo.versions[version.size] = version
            self._version_refs[version.sha256] += 1

    def cache(self, photo: Photo, frame_id: str, size: str) -> None:
        """``frame_id`` was given the version ``size`` of ``photo``."""
        photo.frames[frame_id] = size
        self._cached_on.setdefault(frame_id, set()).add(photo.file_id)

    def drop(self, file_id: str, tx: Transaction) -> bool:
        """Forget the photo ``file_id`` (False if it was unknown); the version blobs only it
        referenced are collected once ``tx`` has committed."""
        photo = self._photos.pop(file_id, None)
        if photo is None:
            return False
        _release(self._originals, photo.sha256)
        dropped = {
            version.sha256
            for version in photo.versions.values()
            if _release(self._version_refs, version.sha256)
        }
        for frame_id in photo.frames:
            self._uncache(frame_id, photo.file_id)
        tx.on_commit(lambda: self._unreferenced.update(dropped))
        return True

    def forget_frame(self, frame_id: str) -> None:
        """The frame is gone: so are the versions cached for it."""
        for file_id in self._cached_on.pop(frame_id, set()):
            self._photos[file_id].frames.pop(frame_id, None)

    def _uncache(self, frame_id: str, file_id: str) -> None:
        files = self._cached_on.get(frame_id)
        if files is not None:
            files.discard(file_id)
            if not files:
                del self._cached_on[frame_id]

    async def collect_blobs(self) -> None:
        """Delete the version blobs nothing references any more."""
        while self._unreferenced:
            sha256 = self._unreferenced.pop()
            if sha256 in self._version_refs or sha256 in self._originals:
                continue
            try:
                await self._blobs.delete(sha256)
            except OSError as error:
                log.warning("could not delete the unused version blob %s: %r", sha256, error)
