"""What the media cache's journal consumer does with each event it takes.

Each handler adds its effects to the consumer's transaction, which may hold a whole batch of
events (an upload and its deletion, say), and changes memory as its last step, after
everything that can fail, so that the next handler of the batch sees it. If the transaction
then fails to commit, the actor crashes and its restart rebuilds memory from the tables, which
never saw the batch.
"""

from __future__ import annotations

import logging

from actors import imaging
from actors.errors import StorageFull
from actors.events import (
    DeviceDeleted,
    FileDeleted,
    FileUploaded,
    FileUploadedWithAi,
    PhotoMetadataUpdated,
)
from actors.store import Transaction

from ._photos import Photo, Photos, Version, digest, encode_analysis, is_image
from ._playlists import Playlists, Schedules
from ._tables import (
    DELETE_FRAME_CACHE,
    DELETE_FRAME_SCHEDULES,
    DELETE_PHOTO,
    INSERT_ANALYSED_PHOTO,
    INSERT_UPLOADED_PHOTO,
    UPDATE_ANALYSIS,
)
from ._versions import VersionMaker, stage_versions

log = logging.getLogger("framehub.media")


def on_uploaded(photos: Photos, event: FileUploaded, tx: Transaction) -> None:
    """``file.uploaded``: an image becomes a photo (its versions wait for the analysis)."""
    if not is_image(event.content_type) or event.file_id in photos:
        return
    photo = Photo.uploaded(event)
    tx.execute(
        INSERT_UPLOADED_PHOTO,
        (
            photo.file_id,
            photo.owner_id,
            photo.file_name,
            photo.content_type,
            photo.sha256,
            photo.created_at,
        ),
    )
    photos.add(photo)


async def on_analysed(
    photos: Photos, maker: VersionMaker, event: FileUploadedWithAi, tx: Transaction
) -> None:
    """``file.uploaded.with_ai``: the analysis is recorded (``photo.metadata.updated`` when it
    changed) and the standard versions are made, framed around the faces it found."""
    if not is_image(event.content_type):
        return
    known = photos.find(event.file_id)
    photo = known or Photo.uploaded(event)
    analysis = encode_analysis(event.ai_metadata)
    analysis_digest = digest(analysis)
    made: list[Version] = []
    specs = photo.missing_standard()
    if specs:
        try:
            made = await maker.render(event.sha256, specs, event.ai_metadata.faces)
        except (FileNotFoundError, imaging.ImageRejected) as error:
            # The original went (deleted meanwhile) or cannot be read: retrying would not
            # help. Versions are made on request if it ever can be.
            log.warning("no versions for %s: %r", event.file_id, error)
        except StorageFull as error:
            # No room for them now: record the analysis anyway (retrying the event would
            # park it as a dead letter if the disk stays full); the versions are made on
            # request once there is room.
            log.warning("no versions for %s yet: %s", event.file_id, error)
    if known is None:
        tx.execute(
            INSERT_ANALYSED_PHOTO,
            (
                photo.file_id,
                photo.owner_id,
                photo.file_name,
                photo.content_type,
                photo.sha256,
                analysis,
                photo.created_at,
            ),
        )
    elif photo.ai_digest != analysis_digest:
        tx.execute(UPDATE_ANALYSIS, (analysis, photo.file_id))
    if photo.ai_digest != analysis_digest:
        tx.publish(
            PhotoMetadataUpdated(
                audit=event.audit,
                correlation_id=event.correlation_id,
                file_id=photo.file_id,
                ai_metadata=event.ai_metadata,
            )
        )
    stage_versions(tx, photo, made, event.audit, event.correlation_id)
    # Memory last: everything above either stays in the transaction or raised.
    photo.take_analysis(event.ai_metadata, analysis_digest)
    if known is None:
        photos.add(photo)
    photos.keep_versions(photo, made)


def on_file_deleted(
    photos: Photos, playlists: Playlists, event: FileDeleted, tx: Transaction
) -> None:
    """``file.deleted``: everything of the photo goes; the playlists stay, without it."""
    for statement in DELETE_PHOTO:
        tx.execute(statement, (event.file_id,))
    if photos.drop(event.file_id, tx):
        playlists.forget_photo(event.file_id)


def on_device_deleted(
    photos: Photos, schedules: Schedules, event: DeviceDeleted, tx: Transaction
) -> None:
    """``device.deleted``: the frame's schedules and cache entries go."""
    frame_id = event.device_id
    tx.execute(DELETE_FRAME_SCHEDULES, (frame_id,))
    tx.execute(DELETE_FRAME_CACHE, (frame_id,))
    schedules.forget_frame(frame_id)
    photos.forget_frame(frame_id)
