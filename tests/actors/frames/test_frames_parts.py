"""The pure parts of a frame's proxy: the sync it builds, the commands it accepts, the
health score."""

from __future__ import annotations

import msgspec
import pytest

import wire
from actors.errors import Invalid, NotFound
from actors.frames import SendCommand
from actors.frames._commands import new_command
from actors.frames._desired import digest, frame_sync, sync_photo
from actors.frames._health import LOW_STORAGE_BYTES, health_score
from actors.media import Schedule, VersionBlob

FRAME = "f" * 32


def a_sync(*file_ids: str, schedule: Schedule | None = None) -> wire.FrameSync:
    blob = VersionBlob(path="/blobs/x", sha256="ab" * 32, width=800, height=480)
    photos = [sync_photo(FRAME, "http://hub:8080", "album", f, blob) for f in file_ids]
    return frame_sync(
        FRAME,
        photos,
        album_ids=["album"],
        schedule=schedule,
        heartbeat_interval_s=30.0,
        panel=(800, 480),
    )


def test_sync_photo_downloads_the_frame_sized_version_for_that_frame() -> None:
    (photo,) = a_sync("p1").photos
    assert photo.url == f"http://hub:8080/api/v1/files/download/p1?size=frame&frame_id={FRAME}"
    assert (photo.width, photo.height, photo.sha256) == (800, 480, "ab" * 32)


def test_sync_takes_the_frame_schedule_or_default_display_settings() -> None:
    assert a_sync("p1").display == wire.DisplaySettings()
    schedule = Schedule(
        schedule_id="s",
        owner_id="u",
        frame_id=FRAME,
        playlist_id=None,
        interval_s=15,
        shuffle=True,
        quiet_start="22:00",
        quiet_end="07:00",
        created_at="2024-01-01T00:00:00Z",
    )
    display = a_sync("p1", schedule=schedule).display
    assert display == wire.DisplaySettings(
        interval_s=15, shuffle=True, quiet_start="22:00", quiet_end="07:00"
    )


def test_digest_ignores_version_and_timestamp_but_not_the_photos() -> None:
    sync = a_sync("p1", "p2")
    stamped = msgspec.structs.replace(sync, version=7, timestamp="2024-01-01T00:00:00Z")
    assert digest(stamped) == digest(sync)
    assert digest(a_sync("p1")) != digest(sync)


def test_show_needs_a_photo_the_frame_was_told_to_show() -> None:
    view = new_command(FRAME, SendCommand(command="show", file_id="p1"), shown={"p1"})
    assert (view.state, view.args, view.frame_id) == ("pending", {"file_id": "p1"}, FRAME)
    with pytest.raises(NotFound):
        new_command(FRAME, SendCommand(command="show", file_id="p2"), shown={"p1"})
    with pytest.raises(Invalid):
        new_command(FRAME, SendCommand(command="show"), shown={"p1"})


def test_only_user_commands_are_accepted_and_only_show_takes_a_file() -> None:
    with pytest.raises(Invalid):
        new_command(FRAME, SendCommand(command="update_firmware"), shown=())
    with pytest.raises(Invalid):
        new_command(FRAME, SendCommand(command="next", file_id="p1"), shown={"p1"})
    assert new_command(FRAME, SendCommand(command="restart"), shown=()).args == {}


def score(
    *,
    now: float = 100.0,
    beats: tuple[float, ...] = (40.0, 70.0, 100.0),
    errors: tuple[float, ...] = (),
    free_bytes: int | None = None,
    online: bool = True,
) -> int:
    """A frame beating every 30 s, as of its last heartbeat, unless told otherwise."""
    return health_score(
        now=now,
        beats=beats,
        errors=errors,
        heartbeat_interval_s=30.0,
        free_bytes=free_bytes,
        online=online,
    )


def test_a_regular_frame_with_room_and_no_errors_is_fully_healthy() -> None:
    assert score() == 100


def test_an_offline_frame_scores_at_most_half() -> None:
    assert score(online=False) == 50
    assert score(online=False, beats=()) == 50
    assert score(online=True, beats=()) == 100


def test_low_storage_and_recent_errors_lower_the_score() -> None:
    assert score(free_bytes=LOW_STORAGE_BYTES // 2) == 88
    assert score(errors=(99.0,) * 5) == 88
    assert score(errors=(99.0 - 7200,) * 5) == 100


def test_late_heartbeats_lower_the_score() -> None:
    assert score(now=160.0) < score()
