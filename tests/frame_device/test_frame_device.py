"""The frame program against a real Mosquitto and a real HTTP server, driven as the hub would.

Each frame runs as ``python run.py frame ... --events``; tests wait on its JSON event lines
and on what it publishes, never on the clock. The schedule is tested directly with a clock
the test moves.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from PIL import Image

import wire
from frame_device import (
    DISPLAY_FILE,
    PAIRINGS_FILE,
    Renderer,
    Rotation,
    Schedule,
    ScreenOff,
    ShowPhoto,
    in_quiet_hours,
    photo_path,
)
from tests.harness.broker import Broker
from tests.harness.frame_program import (
    ADMIN_TOKEN,
    FrameProcess,
    HubClient,
    PhotoServer,
    frame_args,
    jpeg,
    make_sync,
    photo_server,
    wire_sha,
)

ALBUM = "album-1"
OTHER_ALBUM = "album-2"
NOW = "2025-01-01T00:00:00Z"

StartFrame = Callable[..., FrameProcess]


@pytest.fixture
def server(broker: Broker) -> Iterator[PhotoServer]:
    with photo_server(broker.port) as serving:
        serving.add("A", jpeg((200, 30, 30)))
        serving.add("B", jpeg((30, 200, 30), (180, 240)))
        serving.add("C", jpeg((30, 30, 200)))
        serving.add("D", jpeg((200, 200, 30)))
        serving.add("E", jpeg((30, 200, 200)))
        yield serving


@pytest.fixture
def device_id(request: pytest.FixtureRequest) -> str:
    return f"frame-{request.node.name[5:40]}"


@pytest.fixture
def start_frame(
    broker: Broker, server: PhotoServer, tmp_path: Path, device_id: str, data_dir: Path
) -> Iterator[StartFrame]:
    started: list[FrameProcess] = []

    def start(*extra: str) -> FrameProcess:
        args = frame_args(device_id, broker, server, data_dir, *extra)
        started.append(FrameProcess(args, tmp_path / f"frame-{len(started)}.log"))
        return started[-1]

    yield start
    for process in started:
        process.__exit__()


def topic(device_id: str, leaf: str) -> str:
    return wire.frame_topic(device_id, leaf)


def send_sync(hub: HubClient, sync: wire.FrameSync) -> None:
    hub.send(topic(sync.frame_id, "sync"), sync, qos=2, retain=True)


def command(
    command_id: str, name: wire.CommandName, file_id: str | None = None
) -> wire.FrameCommand:
    return wire.FrameCommand(
        command_id=command_id,
        command=name,
        args=wire.CommandArgs(file_id=file_id),
        timestamp=NOW,
    )


def photo_added(album_id: str, file_id: str) -> wire.PhotoAdded:
    return wire.PhotoAdded(
        album_id=album_id,
        file_id=file_id,
        photo_metadata=wire.PhotoMetadata(file_name=f"{file_id}.jpg", content_type="image/jpeg"),
        media_service_url=f"http://hub/api/v1/photos/{file_id}",
        timestamp=NOW,
    )


def cached(data_dir: Path, server: PhotoServer, file_id: str) -> bool:
    return photo_path(data_dir, wire_sha(server.photos[file_id])).exists()


def synced(frame: FrameProcess, hub: HubClient, sync: wire.FrameSync) -> str:
    """Send ``sync``, wait until it is applied and a photo is up; the photo on screen."""
    send_sync(hub, sync)
    frame.wait_event(f"sync {sync.version} applied", event="synced", sync_version=sync.version)
    shown = frame.wait_until("a photo of the sync on screen", lambda e: _shows_one_of(e, sync))
    return str(shown["file_id"])


def _shows_one_of(event: dict[str, object], sync: wire.FrameSync) -> bool:
    return event["event"] == "displayed" and event.get("file_id") in {
        p.file_id for p in sync.photos
    }


def on_screen(frame: FrameProcess) -> str | None:
    shown = frame.of(event="displayed")
    return shown[-1].get("file_id") if shown else None


# -- sync ------------------------------------------------------------------------------------


def test_sync_downloads_photos_shows_one_and_heartbeat_reports_its_version(
    start_frame: StartFrame, hub: HubClient, server: PhotoServer, device_id: str, data_dir: Path
) -> None:
    frame = start_frame()
    frame.wait_event("connected", event="connected")
    sync = make_sync(device_id, server, [("A", ALBUM), ("B", ALBUM)], version=3)

    shown = synced(frame, hub, sync)

    assert cached(data_dir, server, "A") and cached(data_dir, server, "B")
    with Image.open(data_dir / DISPLAY_FILE) as display:
        assert display.format == "PNG"
        assert display.size == (320, 200)  # the sync's panel, not the command line's
    hub.wait_status(device_id, "displayed on MQTT", status="displayed", file_id=shown)
    heartbeat_topic = topic(device_id, "heartbeat")
    hub.wait_for(
        lambda m: (
            m.topic == heartbeat_topic
            and msgspec.json.decode(m.payload, type=wire.Heartbeat).sync_version == 3
        ),
        "a heartbeat reporting sync version 3",
    )
    latecomer = HubClient(hub.port, subscribe=heartbeat_topic)
    try:
        retained = latecomer.wait_for(lambda m: m.topic == heartbeat_topic, "retained heartbeat")
    finally:
        latecomer.close()
    beat = msgspec.json.decode(retained.payload, type=wire.Heartbeat)
    assert retained.retain
    assert (beat.sync_version, beat.cached_photos, beat.firmware_version) == (3, 2, "1.0.0")


def test_photo_whose_bytes_do_not_match_its_sha256_is_not_cached_and_is_retried(
    start_frame: StartFrame, hub: HubClient, server: PhotoServer, device_id: str, data_dir: Path
) -> None:
    frame = start_frame()
    sync = make_sync(
        device_id, server, [("A", ALBUM), ("B", ALBUM)], version=1, wrong_sha256=frozenset("B")
    )
    send_sync(hub, sync)

    frame.wait_events("B failed twice (retried on a heartbeat)", 2, event="error", file_id="B")
    frame.wait_event("A is shown", event="displayed", file_id="A")

    status = hub.wait_status(device_id, "error status for B", status="error", file_id="B")
    assert status.error is not None and "SHA-256" in status.error
    assert sorted(p.name for p in (data_dir / "photos").iterdir()) == [wire_sha(server.photos["A"])]
    assert server.downloads_of("B") >= 2
    assert frame.of(event="synced") == []  # never claims a sync it could not complete


def test_photo_dropped_from_the_sync_is_deleted_from_the_cache(
    start_frame: StartFrame, hub: HubClient, server: PhotoServer, device_id: str, data_dir: Path
) -> None:
    frame = start_frame()
    synced(frame, hub, make_sync(device_id, server, [("A", ALBUM), ("B", ALBUM)], version=1))
    assert cached(data_dir, server, "B")

    send_sync(hub, make_sync(device_id, server, [("A", ALBUM)], version=2))
    frame.wait_event("sync 2 applied", event="synced", sync_version=2)

    assert not cached(data_dir, server, "B")
    assert cached(data_dir, server, "A")


# -- live album updates ----------------------------------------------------------------------


def test_photo_added_to_an_assigned_album_is_shown_at_once(
    start_frame: StartFrame, hub: HubClient, server: PhotoServer, device_id: str, data_dir: Path
) -> None:
    frame = start_frame()
    synced(frame, hub, make_sync(device_id, server, [("A", ALBUM)], version=1))

    hub.send(wire.album_topic(ALBUM, "photo_added"), photo_added(ALBUM, "C"))

    frame.wait_event("C shown", event="displayed", file_id="C")
    hub.wait_status(device_id, "C displayed on MQTT", status="displayed", file_id="C")
    assert cached(data_dir, server, "C")
    with Image.open(data_dir / DISPLAY_FILE) as display:
        assert display.getpixel((160, 100)) == pytest.approx((30, 30, 200), abs=12)


def test_photo_added_to_an_album_the_frame_no_longer_shows_is_ignored(
    start_frame: StartFrame, hub: HubClient, server: PhotoServer, device_id: str
) -> None:
    frame = start_frame()
    both = make_sync(device_id, server, [("A", ALBUM), ("B", OTHER_ALBUM)], version=1)
    synced(frame, hub, both)
    send_sync(hub, make_sync(device_id, server, [("A", ALBUM)], version=2))
    frame.wait_event("sync 2 applied", event="synced", sync_version=2)

    hub.send(wire.album_topic(OTHER_ALBUM, "photo_added"), photo_added(OTHER_ALBUM, "D"))
    hub.send(wire.album_topic(ALBUM, "photo_added"), photo_added(ALBUM, "E"))
    frame.wait_event("E (sent after D) shown", event="displayed", file_id="E")

    assert frame.of(file_id="D") == []
    assert server.downloads_of("D") == 0


def test_removed_photo_on_screen_is_replaced_and_deleted(
    start_frame: StartFrame, hub: HubClient, server: PhotoServer, device_id: str, data_dir: Path
) -> None:
    frame = start_frame()
    synced(frame, hub, make_sync(device_id, server, [("A", ALBUM), ("B", ALBUM)], version=1))
    shown = on_screen(frame)
    assert shown in ("A", "B")
    other = "B" if shown == "A" else "A"

    removal = wire.PhotoRemoved(album_id=ALBUM, file_id=shown, timestamp=NOW)
    hub.send(wire.album_topic(ALBUM, "photo_removed"), removal)

    frame.wait_event("the other photo replaces it", event="displayed", file_id=other)
    assert not cached(data_dir, server, shown)
    assert cached(data_dir, server, other)


# -- commands --------------------------------------------------------------------------------


def test_next_show_and_sync_commands_are_answered_with_their_command_id(
    start_frame: StartFrame, hub: HubClient, server: PhotoServer, device_id: str
) -> None:
    frame = start_frame()
    sync = make_sync(device_id, server, [("A", ALBUM), ("B", ALBUM), ("C", ALBUM)], version=1)
    before = synced(frame, hub, sync)
    commands = topic(device_id, "command")

    hub.send(commands, command("c-next", "next"), qos=2)
    after = frame.wait_event("next answered", event="displayed", command_id="c-next")
    assert after["file_id"] not in (None, before)

    hub.send(commands, command("c-show", "show", "C"), qos=2)
    frame.wait_event("show answered", event="displayed", command_id="c-show", file_id="C")

    hub.send(commands, command("c-missing", "show", "no-such-photo"), qos=2)
    frame.wait_event("unknown photo refused", event="error", command_id="c-missing")

    hub.send(commands, command("c-sync", "sync"), qos=2)
    frame.wait_event("sync answered", event="synced", command_id="c-sync", sync_version=1)

    hub.send(commands, command("c-ota", "update_firmware"), qos=2)
    frame.wait_event("unsigned OTA refused", event="ota", state="failed", command_id="c-ota")

    for command_id, status in [
        ("c-next", "displayed"),
        ("c-show", "displayed"),
        ("c-missing", "error"),
        ("c-sync", "synced"),
    ]:
        hub.wait_status(device_id, f"{command_id} on MQTT", command_id=command_id, status=status)
    ota_topic = topic(device_id, "ota")
    refusal = hub.wait_for(lambda m: m.topic == ota_topic, "the OTA refusal on frames/<id>/ota")
    answer = msgspec.json.decode(refusal.payload, type=wire.OtaProgress)
    assert (answer.command_id, answer.state) == ("c-ota", "failed")
    assert answer.error is not None and "missing signature" in answer.error


def test_redelivered_command_is_answered_again_but_not_executed_twice(
    start_frame: StartFrame, hub: HubClient, server: PhotoServer, device_id: str
) -> None:
    frame = start_frame()
    order = ["A", "B", "C"]
    synced(frame, hub, make_sync(device_id, server, [(f, ALBUM) for f in order], version=1))
    first = on_screen(frame)
    assert first is not None
    commands = topic(device_id, "command")

    hub.send(commands, command("n-1", "next"), qos=2)
    hub.send(commands, command("n-1", "next"), qos=2)
    hub.send(commands, command("n-2", "next"), qos=2)

    answers = frame.wait_events("n-1 answered twice", 2, event="displayed", command_id="n-1")
    second = frame.wait_event("n-2 answered", event="displayed", command_id="n-2")
    after_first = order[(order.index(first) + 1) % 3]
    assert [a["file_id"] for a in answers] == [after_first, after_first]
    assert second["file_id"] == order[(order.index(after_first) + 1) % 3]


def test_frame_that_ignores_commands_never_answers(
    start_frame: StartFrame, hub: HubClient, server: PhotoServer, device_id: str
) -> None:
    frame = start_frame("--ignore-commands")
    synced(frame, hub, make_sync(device_id, server, [("A", ALBUM)], version=1))

    hub.send(topic(device_id, "command"), command("c-ignored", "next"), qos=2)
    send_sync(hub, make_sync(device_id, server, [("A", ALBUM), ("B", ALBUM)], version=2))
    frame.wait_event("the later sync applied", event="synced", sync_version=2)

    assert frame.of(command_id="c-ignored") == []
    assert [s for s in hub.statuses(device_id) if s.command_id is not None] == []


def test_restart_command_reconnects_and_answers_command_done(
    start_frame: StartFrame, hub: HubClient, server: PhotoServer, device_id: str
) -> None:
    frame = start_frame()
    synced(frame, hub, make_sync(device_id, server, [("A", ALBUM)], version=1))

    hub.send(topic(device_id, "command"), command("r-1", "restart"), qos=2)

    availability = topic(device_id, "availability")
    hub.wait_for(
        lambda m: m.topic == availability and m.payload == b"offline",
        "the will: offline, as after a power cut",
    )
    frame.wait_event("restart answered after the reboot", event="command", command_id="r-1")
    assert len(frame.of(event="connected")) == 2
    assert len(frame.of(event="displayed", file_id="A")) >= 2  # shown again from disk
    hub.wait_status(device_id, "command_done on MQTT", status="command_done", command_id="r-1")
    assert frame.stop() == 0


# -- robustness ------------------------------------------------------------------------------


def test_frame_restarted_while_the_broker_is_down_shows_its_cached_photo(
    tmp_path: Path, device_id: str
) -> None:
    broker = Broker(tmp_path / "own-broker")
    broker.start()
    data_dir = tmp_path / "frame"
    try:
        with photo_server(broker.port) as server:
            server.add("A", jpeg((200, 30, 30)))
            args = frame_args(device_id, broker, server, data_dir)
            hub = HubClient(broker.port)
            with FrameProcess(args, tmp_path / "first.log") as frame:
                synced(frame, hub, make_sync(device_id, server, [("A", ALBUM)], version=1))
                frame.kill()
            hub.close()
    finally:
        broker.stop()
    (data_dir / DISPLAY_FILE).unlink()

    with FrameProcess(args, tmp_path / "second.log") as again:
        again.wait_event("the cached photo is shown offline", event="displayed", file_id="A")
        with Image.open(data_dir / DISPLAY_FILE) as display:
            assert (display.format, display.size) == ("PNG", (320, 200))
        assert again.of(event="connected") == []
        assert again.stop() == 0


def test_malformed_and_oversized_payloads_are_dropped_and_the_frame_keeps_working(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    device_id: str,
    tmp_path: Path,
) -> None:
    frame = start_frame()
    synced(frame, hub, make_sync(device_id, server, [("A", ALBUM), ("B", ALBUM)], version=1))
    commands = topic(device_id, "command")
    someone_else = make_sync("another-frame", server, [("C", ALBUM)], version=9)
    junk = [
        (topic(device_id, "sync"), b"{"),
        (topic(device_id, "sync"), msgspec.json.encode(someone_else)),
        (commands, b"\xff\xfe not json"),
        (commands, b'{"command_id": "x", "command": "explode", "timestamp": "now"}'),
        (commands, b'{"command_id": "' + b"x" * wire.MAX_PAYLOAD_BYTES + b'"}'),
        (wire.album_topic(ALBUM, "photo_added"), b'{"file_id": 5}'),
    ]
    for junk_topic, payload in junk:
        hub.publish(junk_topic, payload, qos=1)

    hub.send(commands, command("c-after", "show", "B"), qos=2)

    frame.wait_event("a later command answered", event="displayed", command_id="c-after")
    assert frame.process.poll() is None
    assert (tmp_path / "frame-0.log").read_text().count("dropped a message") == len(junk)
    assert frame.of(sync_version=9) == []


# -- schedule (unit) -------------------------------------------------------------------------


class MovableClock:
    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


LOCAL = timezone(timedelta(hours=1))


def test_shuffle_bag_deals_every_photo_once_per_round_and_never_repeats_back_to_back() -> None:
    photos = ["a", "b", "c", "d", "e"]
    for seed in range(20):
        rotation = Rotation(random.Random(seed))
        rotation.shuffle = True
        rotation.update(photos)
        shown: list[str] = []
        current = None
        for _ in range(len(photos) * 30):
            current = rotation.next_after(current)
            assert current is not None
            shown.append(current)
        rounds = [shown[i : i + len(photos)] for i in range(0, len(shown), len(photos))]
        assert all(sorted(r) == photos for r in rounds)
        assert all(x != y for x, y in itertools.pairwise(shown))
        assert len({tuple(r) for r in rounds}) > 1  # actually shuffled


def test_shuffle_with_two_photos_alternates_and_in_order_cycles() -> None:
    rotation = Rotation(random.Random(1))
    rotation.shuffle = True
    rotation.update(["a", "b"])
    current = None
    dealt = []
    for _ in range(20):
        current = rotation.next_after(current)
        dealt.append(current)
    assert all(x != y for x, y in itertools.pairwise(dealt))

    ordered = Rotation(random.Random(1))
    ordered.update(["a", "b", "c"])
    assert [ordered.next_after(x) for x in (None, "a", "b", "c", "gone")] == list("abcaa")


def test_quiet_hours_across_midnight() -> None:
    night = wire.DisplaySettings(quiet_start="22:00", quiet_end="07:00")
    day = datetime(2025, 3, 1, tzinfo=LOCAL)
    inside = [(22, 0), (23, 30), (0, 0), (6, 59)]
    outside = [(7, 0), (12, 0), (21, 59)]
    assert all(in_quiet_hours(night, day.replace(hour=h, minute=m)) for h, m in inside)
    assert not any(in_quiet_hours(night, day.replace(hour=h, minute=m)) for h, m in outside)
    lunch = wire.DisplaySettings(quiet_start="12:00", quiet_end="13:00")
    assert in_quiet_hours(lunch, day.replace(hour=12, minute=30))
    assert not in_quiet_hours(lunch, day.replace(hour=23))


def test_schedule_rotates_on_its_interval_and_goes_dark_for_the_night() -> None:
    clock = MovableClock(datetime(2025, 3, 1, 21, 50, tzinfo=LOCAL))
    schedule = Schedule(clock, random.Random(0))
    schedule.configure(wire.DisplaySettings(interval_s=300, quiet_start="22:00", quiet_end="07:00"))
    schedule.set_photos(["a", "b"])
    assert schedule.due() == ShowPhoto("a")  # a blank screen gets a photo at once
    schedule.shown("a")
    assert schedule.due() is None
    assert schedule.seconds_until_due() == 300

    clock.advance(seconds=299)
    assert schedule.due() is None
    clock.advance(seconds=1)
    assert schedule.due() == ShowPhoto("b")
    schedule.shown("b")
    assert schedule.seconds_until_due() == 300  # 21:55; the night starts at 22:00 too

    clock.advance(minutes=5)
    assert schedule.due() == ScreenOff()
    schedule.went_dark("b")
    assert schedule.due() is None
    assert schedule.seconds_until_due() == 3600  # re-checked hourly: wall clocks jump

    clock.advance(hours=5)  # 03:00, still night
    assert schedule.due() is None
    clock.advance(hours=4)  # 07:00
    assert schedule.due() == ShowPhoto("b")  # the photo of last night comes back


def test_schedule_replaces_a_photo_that_left_the_playlist() -> None:
    clock = MovableClock(datetime(2025, 3, 1, 12, 0, tzinfo=LOCAL))
    schedule = Schedule(clock, random.Random(0))
    schedule.set_photos(["a", "b", "c"])
    schedule.shown("b")
    schedule.set_photos(["a", "c"])
    assert schedule.due() == ShowPhoto("a")
    schedule.shown("a")
    schedule.set_photos([])
    assert schedule.due() == ShowPhoto(None)  # nothing left: a blank screen


def test_renderer_letterboxes_and_encodes_a_photo_once_for_many_frames(tmp_path: Path) -> None:
    photo = tmp_path / "photo"
    photo.write_bytes(jpeg((200, 30, 30), (240, 180)))  # 4:3 onto a 16:10 panel
    renderer = Renderer()

    async def fifty_frames() -> list[bytes]:
        return await asyncio.gather(*(renderer.png(photo, "sha", 160, 100) for _ in range(50)))

    # The hub's tests import trio-asyncio, which replaces asyncio's default loop policy.
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        pngs = runner.run(fifty_frames())

    assert all(png is pngs[0] for png in pngs)  # one encoding, shared
    with Image.open(io.BytesIO(pngs[0])) as panel:
        assert (panel.format, panel.size) == ("PNG", (160, 100))
        assert panel.getpixel((2, 50)) == (0, 0, 0)  # black bar
        assert panel.getpixel((80, 50)) == pytest.approx((200, 30, 30), abs=12)


# -- simulator -------------------------------------------------------------------------------


def test_simulator_pairs_its_frames_once_and_reuses_them_after_a_restart(
    broker: Broker, server: PhotoServer, tmp_path: Path
) -> None:
    sim_dir = tmp_path / "sim"
    args = ["simulate", "--hub", server.url, "--token", ADMIN_TOKEN, "--data-dir", str(sim_dir)]
    args += ["--width", "160", "--height", "100", "--no-render"]

    def run_fleet(frames: int, log_name: str) -> set[str]:
        with FrameProcess([*args, "--frames", str(frames)], tmp_path / log_name) as fleet:
            connected = fleet.wait_events(f"{frames} frames connected", frames, event="connected")
            assert fleet.stop() == 0
        return {str(event["frame_id"]) for event in connected}

    first = run_fleet(3, "first.log")
    assert len(first) == 3
    assert len(server.pairings) == 3
    assert all(p["model"] == "sim-frame" and p["width"] == 160 for p in server.pairings)
    saved = msgspec.json.decode((sim_dir / PAIRINGS_FILE).read_bytes(), type=list[wire.Pairing])
    assert {p.device_id for p in saved} == first

    assert run_fleet(3, "second.log") == first
    assert len(server.pairings) == 3  # nothing paired again

    grown = run_fleet(4, "third.log")
    assert first < grown and len(server.pairings) == 4
    assert all((sim_dir / "frames" / device).is_dir() for device in grown)
