"""Making a photo's versions, and the rows and events that record them.

Image work (decoding, resizing, encoding) runs in worker threads under the shared
``CapacityLimiter``, so that a burst of uploads cannot take every core from the event loop.
All the versions asked for at once are made from one decode of the original and each is
stored as a blob before anything is recorded: ``stage_versions`` only writes rows and events.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from actors import imaging
from actors.blobs import BlobStore
from actors.errors import Invalid, NotFound
from actors.events import Audit, Face, MediaCacheReady, MediaVersionCreated
from actors.store import Transaction

from ._messages import VersionBlob
from ._photos import STANDARD_VERSIONS, Photo, Version
from ._tables import INSERT_VERSION


class VersionMaker:
    """Reads originals from ``sources`` (the uploader's store, read only) and puts the versions
    it makes in ``blobs``."""

    def __init__(self, blobs: BlobStore, sources: BlobStore, limiter: trio.CapacityLimiter) -> None:
        self._blobs = blobs
        self._sources = sources
        self._limiter = limiter

    async def render(
        self, original: str, specs: Sequence[imaging.VersionSpec], faces: Sequence[Face]
    ) -> list[Version]:
        """Make ``specs`` from the original blob (one decode) and store each as a blob.

        Raises ``FileNotFoundError`` if the original is gone, ``imaging.ImageRejected`` if it
        cannot be decoded and ``StorageFull`` if there is no room for the versions.
        """
        rendered = await trio.to_thread.run_sync(
            imaging.render_versions,
            self._sources.path(original),
            list(specs),
            list(faces),
            limiter=self._limiter,
        )
        return [
            Version(r.name, r.width, r.height, await self._blobs.put_bytes(r.data))
            for r in rendered
        ]

    async def render_or_refuse(
        self, photo: Photo, specs: Sequence[imaging.VersionSpec], faces: Sequence[Face]
    ) -> list[Version]:
        """``render`` for a request: a vanished or undecodable original is the caller's error."""
        try:
            return await self.render(photo.sha256, specs, faces)
        except FileNotFoundError:
            raise NotFound(f"photo {photo.file_id} has no original any more") from None
        except imaging.ImageRejected as error:
            raise Invalid(f"photo {photo.file_id} cannot be resized: {error}") from None

    def blob(self, version: Version) -> VersionBlob:
        """Where ``version`` is, for a download."""
        return VersionBlob(
            path=str(self._blobs.path(version.sha256)),
            sha256=version.sha256,
            width=version.width,
            height=version.height,
        )


def stage_versions(
    tx: Transaction,
    photo: Photo,
    made: Sequence[Version],
    audit: Audit,
    correlation_id: str,
) -> None:
    """Rows and ``media.version_created`` for new versions; ``media.cache_ready`` when they
    complete the standard set (so it is published once per photo)."""
    for version in made:
        tx.execute(
            INSERT_VERSION,
            (photo.file_id, version.size, version.width, version.height, version.sha256),
        )
        tx.publish(
            MediaVersionCreated(
                audit=audit,
                correlation_id=correlation_id,
                file_id=photo.file_id,
                size=version.size,
                width=version.width,
                height=version.height,
                sha256=version.sha256,
            )
        )
    missing = {spec.name for spec in photo.missing_standard()}
    if missing and missing <= {version.size for version in made}:
        tx.publish(
            MediaCacheReady(
                audit=audit,
                correlation_id=correlation_id,
                file_id=photo.file_id,
                sizes=[spec.name for spec in STANDARD_VERSIONS],
            )
        )
