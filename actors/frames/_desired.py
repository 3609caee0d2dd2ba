"""What a frame should show: its albums' photos, each as the version made for its panel, and
its display settings, as the ``wire.FrameSync`` its proxy sends it; and which photos it may
download.

Working it out asks the registry (the frame's albums and panel), the album actor (their
photos) and the media cache (the panel-sized versions, the frame's schedule). It runs outside
the proxy's mailbox, so the frame's heartbeats and the bridge's questions are answered
meanwhile. Building the sync from those answers, and telling whether two syncs say the same,
are pure.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import msgspec

import wire
from actors.album import AlbumMessage, GetAlbumContents
from actors.devices import DeviceMessage, GetDevice
from actors.errors import NotFound
from actors.http import PublicUrl
from actors.media import GetFrameSchedule, GetFrameVersion, MediaMessage, Schedule, VersionBlob
from supervision import ActorRef, AskTimeout, DomainError

log = logging.getLogger("framehub.frames")

VERSION_ASK_TIMEOUT_S = 60.0
"""Making a panel-sized version can queue behind other renders: be patient."""


@dataclass(frozen=True, slots=True)
class ProxyPeers:
    """The actors a frame's proxy asks when it works out what its frame should show."""

    devices: ActorRef[DeviceMessage]
    album: ActorRef[AlbumMessage]
    media: ActorRef[MediaMessage]


class Refreshed(msgspec.Struct, frozen=True, kw_only=True):
    """What a refresh worked out, handed back to the proxy: the sync without its version and
    timestamp (None when the refresh failed or the frame is no longer paired), and the
    versions of the photos in it."""

    sync: wire.FrameSync | None
    versions: dict[str, VersionBlob]


async def refresh(
    frame_id: str,
    peers: ProxyPeers,
    public_url: PublicUrl,
    heartbeat_interval_s: float,
    known: dict[str, VersionBlob],
) -> Refreshed:
    """Work out the frame's sync. ``known`` are the versions of the last refresh: one still
    of the panel's size is not asked for again. A photo whose version cannot be made is left
    out; a refresh that fails is logged and retried later by the proxy."""
    sync: wire.FrameSync | None = None
    versions: dict[str, VersionBlob] = {}
    try:
        device = await peers.devices.ask(GetDevice(device_id=frame_id))
        contents = await peers.album.ask(GetAlbumContents(album_ids=device.album_ids))
        media = peers.media
        schedule: Schedule | None = await media.ask(GetFrameSchedule(frame_id=frame_id))
        width, height = device.panel
        base_url = await public_url.wait()
        photos: list[wire.SyncPhoto] = []
        for album_id in device.album_ids:
            for file_id in contents.photos.get(album_id, []):
                if file_id in versions:
                    continue
                blob = known.get(file_id)
                if blob is None or (blob.width, blob.height) != (width, height):
                    try:
                        blob = await media.ask(
                            GetFrameVersion.filling(device.panel, file_id, frame_id),
                            timeout=VERSION_ASK_TIMEOUT_S,
                        )
                    except DomainError as error:
                        log.info("frame %s skips %s: %s", frame_id, file_id, error)
                        continue
                assert blob is not None
                versions[file_id] = blob
                photos.append(sync_photo(frame_id, base_url, album_id, file_id, blob))
        sync = frame_sync(
            frame_id,
            photos,
            album_ids=device.album_ids,
            schedule=schedule,
            heartbeat_interval_s=heartbeat_interval_s,
            panel=(width, height),
        )
    except NotFound:
        sync = None  # the frame was unpaired: the fleet stops this proxy
    except (AskTimeout, DomainError) as error:
        log.warning("frame %s: refresh failed (%r); retried later", frame_id, error)
        sync = None
    return Refreshed(sync=sync, versions=versions)


async def open_version(frame_id: str, peers: ProxyPeers, file_id: str) -> VersionBlob:
    """The version of ``file_id`` made for the frame's panel; ``NotFound`` unless the photo is
    in one of the frame's albums now."""
    device = await peers.devices.ask(GetDevice(device_id=frame_id))
    shown = await peers.album.ask(GetAlbumContents(album_ids=device.album_ids))
    if not any(file_id in photos for photos in shown.photos.values()):
        raise NotFound(f"no photo {file_id}")
    return await peers.media.ask(GetFrameVersion.filling(device.panel, file_id, frame_id))


def sync_photo(
    frame_id: str, base_url: str, album_id: str, file_id: str, blob: VersionBlob
) -> wire.SyncPhoto:
    """A photo as the frame is told of it: where it downloads the version, and its digest."""
    return wire.SyncPhoto(
        file_id=file_id,
        album_id=album_id,
        sha256=blob.sha256,
        url=f"{base_url}/api/v1/files/download/{file_id}?size=frame&frame_id={frame_id}",
        width=blob.width,
        height=blob.height,
    )


def frame_sync(
    frame_id: str,
    photos: list[wire.SyncPhoto],
    *,
    album_ids: list[str],
    schedule: Schedule | None,
    heartbeat_interval_s: float,
    panel: tuple[int, int],
) -> wire.FrameSync:
    """The sync of ``photos``, without its version and timestamp (the proxy sets them)."""
    width, height = panel
    return wire.FrameSync(
        frame_id=frame_id,
        photos=photos,
        total_photos=len(photos),
        timestamp="",
        album_ids=album_ids,
        display=display(schedule),
        heartbeat_interval_s=max(1, round(heartbeat_interval_s)),
        panel_width=width,
        panel_height=height,
    )


def display(schedule: Schedule | None) -> wire.DisplaySettings:
    if schedule is None:
        return wire.DisplaySettings()
    return wire.DisplaySettings(
        interval_s=schedule.interval_s,
        shuffle=schedule.shuffle,
        quiet_start=schedule.quiet_start,
        quiet_end=schedule.quiet_end,
    )


def digest(sync: wire.FrameSync) -> str:
    """What the frame is told, without the version and timestamp: equal digests, same sync."""
    content = msgspec.structs.replace(sync, version=0, timestamp="")
    return hashlib.sha256(msgspec.json.encode(content)).hexdigest()
