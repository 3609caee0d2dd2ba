"""Firmware updates of the frame program, driven as the hub would drive them.

Each frame runs as ``python run.py frame ... --events`` against a real Mosquitto and a real
HTTP server that serves firmware images (with ``Range``). Tests publish firmware commands
signed with a test Ed25519 key whose public key the frame was given, and wait on the
frame's ``frames/<id>/ota`` messages, its heartbeats and its event lines; what is on its
disk (slots, boot state) is read back afterwards.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import wire
from frame_device import FIRMWARE_DIR, MAX_TRIAL_BOOTS, BootState, Firmware, SlotManifest
from tests.harness.broker import Broker
from tests.harness.frame_program import (
    ADMIN_TOKEN,
    WAIT_S,
    FrameProcess,
    HubClient,
    HubSigner,
    PhotoServer,
    frame_args,
    photo_server,
    wire_sha,
)

FACTORY = "1.0.0"
NEW = "2.0.0"
CAMPAIGN = "campaign-1"
HEALTH_CHECK_S = "1"
FINAL_STATES = ("completed", "failed", "rolled_back")

StartFrame = Callable[..., FrameProcess]


def image(seed: int, size: int = 300_000) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope="module")
def signer() -> HubSigner:
    return HubSigner()


@pytest.fixture
def server(broker: Broker, signer: HubSigner) -> Iterator[PhotoServer]:
    with photo_server(broker.port) as serving:
        serving.public_key = signer.public_key
        yield serving


@pytest.fixture
def device_id(request: pytest.FixtureRequest) -> str:
    return f"ota-{request.node.name[5:40]}"


@pytest.fixture
def start_frame(
    broker: Broker,
    server: PhotoServer,
    signer: HubSigner,
    tmp_path: Path,
    device_id: str,
    data_dir: Path,
) -> Iterator[StartFrame]:
    started: list[FrameProcess] = []

    def start(*extra: str, health_check_s: str = HEALTH_CHECK_S) -> FrameProcess:
        args = frame_args(device_id, broker, server, data_dir, *extra)
        args += ["--public-key", signer.public_key, "--health-check-s", health_check_s]
        started.append(FrameProcess(args, tmp_path / f"frame-{len(started)}.log"))
        started[-1].wait_event("connected", event="connected")
        return started[-1]

    yield start
    for process in started:
        process.__exit__()


# -- helpers ---------------------------------------------------------------------------------


def update(
    signer: HubSigner,
    server: PhotoServer,
    device_id: str,
    command_id: str,
    data: bytes,
    version: str = NEW,
) -> wire.FrameCommand:
    """A signed ``update_firmware`` of ``data``, served by ``server``."""
    url = server.add_firmware(f"fw-{version}-{wire_sha(data)[:8]}", data)
    return signer.command(
        device_id,
        command_id,
        "update_firmware",
        url=url,
        sha256=wire_sha(data),
        size=len(data),
        version=version,
        campaign_id=CAMPAIGN,
    )


def rollback(
    signer: HubSigner, device_id: str, command_id: str, version: str | None = None
) -> wire.FrameCommand:
    return signer.command(
        device_id, command_id, "rollback_firmware", version=version, campaign_id=CAMPAIGN
    )


def send(hub: HubClient, device_id: str, command: wire.FrameCommand) -> None:
    hub.send(wire.frame_topic(device_id, "command"), command, qos=2)


def progress_of(hub: HubClient, device_id: str, command_id: str) -> list[wire.OtaProgress]:
    """What the frame published on ``frames/<id>/ota`` about one command, in order."""
    messages = [
        msgspec.json.decode(payload, type=wire.OtaProgress)
        for payload in hub.received(wire.frame_topic(device_id, "ota"))
    ]
    return [m for m in messages if m.command_id == command_id]


def wait_ota(
    hub: HubClient, device_id: str, what: str, *, after: int = 0, **fields: Any
) -> wire.OtaProgress:
    topic = wire.frame_topic(device_id, "ota")

    def matches(message: Any) -> bool:
        if message.topic != topic:
            return False
        progress = msgspec.json.decode(message.payload, type=wire.OtaProgress)
        return all(getattr(progress, name) == value for name, value in fields.items())

    found = hub.wait_for(matches, what, after=after)
    return msgspec.json.decode(found.payload, type=wire.OtaProgress)


def wait_final(hub: HubClient, device_id: str, command_id: str) -> wire.OtaProgress:
    topic = wire.frame_topic(device_id, "ota")

    def final(message: Any) -> bool:
        if message.topic != topic:
            return False
        progress = msgspec.json.decode(message.payload, type=wire.OtaProgress)
        return progress.command_id == command_id and progress.state in FINAL_STATES

    found = hub.wait_for(final, f"the final answer to {command_id}")
    return msgspec.json.decode(found.payload, type=wire.OtaProgress)


def wait_heartbeat(hub: HubClient, device_id: str, version: str, *, after: int = 0) -> None:
    topic = wire.frame_topic(device_id, "heartbeat")
    hub.wait_for(
        lambda m: (
            m.topic == topic
            and msgspec.json.decode(m.payload, type=wire.Heartbeat).firmware_version == version
        ),
        f"a heartbeat reporting firmware {version}",
        after=after,
    )


def boot_state(data_dir: Path) -> BootState:
    return msgspec.json.decode((data_dir / FIRMWARE_DIR / "boot.json").read_bytes(), type=BootState)


def slot(data_dir: Path, name: str) -> tuple[SlotManifest, bytes | None]:
    directory = data_dir / FIRMWARE_DIR / name
    manifest = msgspec.json.decode((directory / "manifest.json").read_bytes(), type=SlotManifest)
    image_path = directory / "image"
    return manifest, image_path.read_bytes() if image_path.exists() else None


def answered_in_order(frame: FrameProcess, hub: HubClient, device_id: str, marker: str) -> None:
    """Send a ``next`` command and wait for its answer: commands are handled in order, so
    every command sent before it has been handled too."""
    hub.send(
        wire.frame_topic(device_id, "command"),
        wire.FrameCommand(command_id=marker, command="next", timestamp="2025-01-01T00:00:00Z"),
        qos=2,
    )
    frame.wait_event(f"{marker} answered", command_id=marker)


def states(progress: list[wire.OtaProgress]) -> list[str]:
    return [p.state for p in progress]


def install_sequence(progress: list[wire.OtaProgress]) -> list[str]:
    """The states with repeated ``downloading`` (one per quarter) folded into one."""
    folded: list[str] = []
    for state in states(progress):
        if not folded or folded[-1] != state:
            folded.append(state)
    return folded


# -- the happy path --------------------------------------------------------------------------


def test_update_downloads_verifies_installs_into_the_other_slot_and_commits(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
    data_dir: Path,
) -> None:
    frame = start_frame()
    wait_heartbeat(hub, device_id, FACTORY)
    data = image(2)

    send(hub, device_id, update(signer, server, device_id, "u-1", data))

    completed = wait_final(hub, device_id, "u-1")
    assert (completed.state, completed.version, completed.campaign_id) == (
        "completed",
        NEW,
        CAMPAIGN,
    )
    progress = progress_of(hub, device_id, "u-1")
    assert install_sequence(progress) == ["downloading", "downloaded", "installing", "completed"]
    fractions = [p.progress for p in progress if p.state == "downloading"]
    assert fractions[0] == 0.0 and fractions == sorted(fractions)
    assert 2 <= len(fractions) <= 5  # at the start and every quarter, not per chunk
    assert all(p.frame_id == device_id and p.campaign_id == CAMPAIGN for p in progress)
    wait_heartbeat(hub, device_id, NEW)
    trial = frame.wait_event("the trial boot", event="ota", state="health_check")
    assert trial["version"] == NEW
    assert len(frame.of(event="connected")) == 2  # restarted into the new slot

    state = boot_state(data_dir)
    assert (state.active, state.previous, state.trial, state.pending) == ("b", "a", False, None)
    assert slot(data_dir, "b") == (
        SlotManifest(version=NEW, sha256=wire_sha(data), size=len(data)),
        data,
    )
    assert slot(data_dir, "a")[0].version == FACTORY
    assert not (data_dir / FIRMWARE_DIR / "download.part").exists()
    assert [r.range for r in server.firmware_requests] == [None]

    # The version it runs already: completed at once, nothing downloaded.
    send(hub, device_id, update(signer, server, device_id, "u-again", data))
    again = wait_final(hub, device_id, "u-again")
    assert (again.state, again.version) == ("completed", NEW)
    assert len(server.firmware_requests) == 1


# -- refusals --------------------------------------------------------------------------------


def test_commands_that_do_not_verify_are_refused_and_nothing_is_downloaded(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
    data_dir: Path,
) -> None:
    start_frame()
    data = image(3)
    good = update(signer, server, device_id, "good", data)
    args = good.args

    def tampered(command_id: str, **changes: Any) -> wire.FrameCommand:
        """Signed for ``command_id``, then changed in transit."""
        signed = update(signer, server, device_id, command_id, data)
        return msgspec.structs.replace(signed, args=msgspec.structs.replace(signed.args, **changes))

    evil_url = server.add_firmware("evil", image(666))
    cases = {
        "other-key": msgspec.structs.replace(
            good,
            command_id="other-key",
            args=msgspec.structs.replace(
                args, signature=HubSigner().sign(device_id, "other-key", "update_firmware", args)
            ),
        ),
        "sha": tampered("sha", sha256=wire_sha(image(666))),
        "version": tampered("version", version="9.9.9"),
        "url": tampered("url", url=evil_url),
        "size": tampered("size", size=len(data) + 1),
        "replayed": msgspec.structs.replace(good, command_id="replayed"),
        "another-frame": signer.command(
            "someone-else", "another-frame", "update_firmware", **msgspec.structs.asdict(args)
        ),
        "no-signature": tampered("no-signature", signature=None),
        "no-sha": signer.command(
            device_id, "no-sha", "update_firmware", url=args.url, size=args.size, version=NEW
        ),
        "bad-version": update(signer, server, device_id, "bad-version", data, version="latest!"),
        "empty": signer.command(
            device_id,
            "empty",
            "update_firmware",
            url=args.url,
            sha256=args.sha256,
            size=0,
            version=NEW,
        ),
    }
    for command in cases.values():
        send(hub, device_id, command)

    errors = {command_id: wait_final(hub, device_id, command_id) for command_id in cases}

    assert {answer.state for answer in errors.values()} == {"failed"}
    signature_refusals = ["other-key", "sha", "version", "url", "size", "replayed"]
    signature_refusals.append("another-frame")
    for command_id in signature_refusals:
        assert errors[command_id].error == "signature does not verify", command_id
    assert errors["no-signature"].error == "missing signature"
    assert errors["no-sha"].error == "missing sha256"
    assert "version" in (errors["bad-version"].error or "")
    assert "size" in (errors["empty"].error or "")
    assert all(states(progress_of(hub, device_id, c)) == ["failed"] for c in cases)
    assert server.firmware_requests == []
    assert boot_state(data_dir).active == "a"
    assert not (data_dir / FIRMWARE_DIR / "b").exists()


# -- faults ----------------------------------------------------------------------------------


def test_corrupt_download_fails_the_sha256_check_and_keeps_the_old_firmware(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
    data_dir: Path,
) -> None:
    frame = start_frame("--ota-fault", "corrupt_download")

    send(hub, device_id, update(signer, server, device_id, "u-corrupt", image(4)))

    failed = wait_final(hub, device_id, "u-corrupt")
    assert failed.state == "failed"
    assert failed.error is not None and failed.error.startswith("sha256 mismatch")
    assert states(progress_of(hub, device_id, "u-corrupt"))[-1:] == ["failed"]
    assert "installing" not in states(progress_of(hub, device_id, "u-corrupt"))
    assert not (data_dir / FIRMWARE_DIR / "download.part").exists()
    state = boot_state(data_dir)
    assert (state.active, state.trial, state.faults_used) == ("a", False, {"corrupt_download": 1})
    mark = hub.mark()
    wait_heartbeat(hub, device_id, FACTORY, after=mark)
    assert frame.of(event="ota", state="health_check") == []


def test_failed_install_is_reported_and_the_frame_stays_on_its_firmware(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
    data_dir: Path,
) -> None:
    frame = start_frame("--ota-fault", "failed_install")

    send(hub, device_id, update(signer, server, device_id, "u-install", image(5)))

    failed = wait_final(hub, device_id, "u-install")
    assert failed.state == "failed"
    assert failed.error is not None and failed.error.startswith("install failed:")
    sequence = install_sequence(progress_of(hub, device_id, "u-install"))
    assert sequence == ["downloading", "downloaded", "installing", "failed"]
    state = boot_state(data_dir)
    assert (state.active, state.previous, state.trial) == ("a", None, False)
    assert not (data_dir / FIRMWARE_DIR / "b" / "manifest.json").exists()
    assert len(frame.of(event="connected")) == 1  # never restarted


def test_crash_after_boot_rolls_back_to_the_previous_firmware(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
    data_dir: Path,
) -> None:
    frame = start_frame("--ota-fault", "crash_after_boot")

    send(hub, device_id, update(signer, server, device_id, "u-crash", image(6)))

    rolled_back = wait_final(hub, device_id, "u-crash")
    assert (rolled_back.state, rolled_back.version) == ("rolled_back", NEW)
    assert rolled_back.error is not None
    assert rolled_back.error.startswith("health check failed: the new firmware crashed")
    assert f"running {FACTORY} again" in rolled_back.error
    sequence = install_sequence(progress_of(hub, device_id, "u-crash"))
    assert sequence == ["downloading", "downloaded", "installing", "rolled_back"]
    frame.wait_event("the trial boot", event="ota", state="health_check", version=NEW)
    mark = hub.mark()
    wait_heartbeat(hub, device_id, FACTORY, after=mark)
    state = boot_state(data_dir)
    assert (state.active, state.previous, state.trial) == ("a", None, False)
    assert len(frame.of(event="connected")) == 3  # factory, trial, factory again


def test_frame_that_never_answers_publishes_nothing_about_firmware(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
    data_dir: Path,
) -> None:
    frame = start_frame("--ota-fault", "never_answers")

    send(hub, device_id, update(signer, server, device_id, "u-silent", image(7)))
    send(hub, device_id, rollback(signer, device_id, "r-silent"))
    answered_in_order(frame, hub, device_id, "marker")

    assert hub.received(wire.frame_topic(device_id, "ota")) == []
    assert frame.of(event="ota") == []
    assert server.firmware_requests == []
    assert boot_state(data_dir).ignored == ["u-silent", "r-silent"]


def test_fault_limited_to_one_attempt_spoils_only_the_first_update(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
) -> None:
    start_frame("--ota-fault", "crash_after_boot:1")
    data = image(8)

    send(hub, device_id, update(signer, server, device_id, "u-first", data))
    assert wait_final(hub, device_id, "u-first").state == "rolled_back"
    send(hub, device_id, update(signer, server, device_id, "u-second", data))

    assert wait_final(hub, device_id, "u-second").state == "completed"
    wait_heartbeat(hub, device_id, NEW)


def test_fault_counters_survive_a_restart_of_the_frame(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
) -> None:
    first = start_frame("--ota-fault", "corrupt_download:1")
    send(hub, device_id, update(signer, server, device_id, "u-spoilt", image(9)))
    assert wait_final(hub, device_id, "u-spoilt").state == "failed"
    assert first.stop() == 0

    start_frame("--ota-fault", "corrupt_download:1")
    send(hub, device_id, update(signer, server, device_id, "u-after-restart", image(9)))

    assert wait_final(hub, device_id, "u-after-restart").state == "completed"


# -- downloads -------------------------------------------------------------------------------


def test_interrupted_download_resumes_with_a_range_request(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
    data_dir: Path,
) -> None:
    start_frame()
    data = image(10)
    server.cut_firmware = 1  # the first response stops halfway

    send(hub, device_id, update(signer, server, device_id, "u-resume", data))

    assert wait_final(hub, device_id, "u-resume").state == "completed"
    first, second = server.firmware_requests
    assert (first.range, first.status, first.sent) == (None, 200, len(data) // 2)
    assert second.status == 206 and second.range is not None
    resumed_at = int(second.range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= len(data) // 2
    assert second.sent == len(data) - resumed_at
    assert slot(data_dir, "b")[1] == data


def test_frame_killed_mid_download_resumes_after_its_restart(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
    data_dir: Path,
) -> None:
    frame = start_frame()
    data = image(11)
    server.hold_firmware = threading.Event()  # half, then nothing until released
    send(hub, device_id, update(signer, server, device_id, "u-killed", data))
    frame.wait_until(
        "half the image in",
        lambda e: e.get("state") == "downloading" and (e.get("progress") or 0) >= 0.5,
    )
    frame.kill()
    server.hold_firmware.set()
    server.hold_firmware = None

    again = start_frame()

    assert wait_final(hub, device_id, "u-killed").state == "completed"
    again.wait_event("resumed by the new process", event="ota", state="completed")
    resumed = server.firmware_requests[-1]
    assert resumed.status == 206 and resumed.range is not None
    assert int(resumed.range.removeprefix("bytes=").removesuffix("-")) >= len(data) // 4
    assert len(server.firmware_requests) == 2
    assert slot(data_dir, "b")[1] == data


# -- redelivery ------------------------------------------------------------------------------


def test_redelivered_update_is_not_run_twice_and_gets_its_answer_again(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
) -> None:
    frame = start_frame()
    command = update(signer, server, device_id, "u-once", image(12))
    server.hold_firmware = threading.Event()
    send(hub, device_id, command)
    frame.wait_until("the download under way", lambda e: e.get("state") == "downloading")

    send(hub, device_id, command)  # in progress: ignored
    other = update(signer, server, device_id, "u-other", image(13), version="3.0.0")
    send(hub, device_id, other)  # another one meanwhile: refused
    answered_in_order(frame, hub, device_id, "marker")
    server.hold_firmware.set()

    completed = wait_final(hub, device_id, "u-once")
    assert completed.state == "completed"
    busy = wait_final(hub, device_id, "u-other")
    assert busy.state == "failed" and "u-once" in (busy.error or "")
    mark = hub.mark()
    send(hub, device_id, command)  # finished: its answer again, nothing redone
    send(hub, device_id, other)  # refused: refused again, not tried now that it could be
    again = wait_ota(hub, device_id, "the answer again", after=mark, command_id="u-once")
    refused_again = wait_ota(hub, device_id, "the refusal again", after=mark, command_id="u-other")

    assert again == completed  # the answer kept on disk, as it was
    assert refused_again == busy
    sequence = install_sequence(progress_of(hub, device_id, "u-once"))
    assert sequence == ["downloading", "downloaded", "installing", "completed"]
    assert states(progress_of(hub, device_id, "u-other")) == ["failed", "failed"]
    assert len(server.firmware_requests) == 1
    assert len(frame.of(event="ota", state="health_check")) == 1


# -- rollback_firmware -----------------------------------------------------------------------


def test_rollback_after_a_completed_update_returns_to_the_previous_version(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
    data_dir: Path,
) -> None:
    start_frame()
    send(hub, device_id, update(signer, server, device_id, "u-1", image(14)))
    assert wait_final(hub, device_id, "u-1").state == "completed"
    refused = rollback(signer, device_id, "r-wrong", version="0.9.0")
    send(hub, device_id, refused)
    wrong = wait_final(hub, device_id, "r-wrong")
    assert wrong.state == "failed" and FACTORY in (wrong.error or "")
    signed = rollback(signer, device_id, "r-tampered", version=NEW)
    tampered = msgspec.structs.replace(signed.args, version=FACTORY)
    send(hub, device_id, msgspec.structs.replace(signed, args=tampered))
    assert wait_final(hub, device_id, "r-tampered").error == "signature does not verify"

    mark = hub.mark()
    send(hub, device_id, rollback(signer, device_id, "r-1", version=FACTORY))

    rolled_back = wait_final(hub, device_id, "r-1")
    assert (rolled_back.state, rolled_back.version, rolled_back.error) == (
        "rolled_back",
        FACTORY,
        None,
    )
    wait_heartbeat(hub, device_id, FACTORY, after=mark)
    state = boot_state(data_dir)
    assert (state.active, state.previous, state.trial) == ("a", "b", False)


def test_rollback_without_a_previous_firmware_fails(
    start_frame: StartFrame, hub: HubClient, signer: HubSigner, device_id: str, data_dir: Path
) -> None:
    frame = start_frame()

    send(hub, device_id, rollback(signer, device_id, "r-none"))

    failed = wait_final(hub, device_id, "r-none")
    assert (failed.state, failed.error) == ("failed", "no previous firmware")
    assert boot_state(data_dir).active == "a"
    assert len(frame.of(event="connected")) == 1


# -- restarts and outages --------------------------------------------------------------------


def test_frame_killed_during_its_health_check_finishes_it_after_a_restart(
    start_frame: StartFrame,
    hub: HubClient,
    server: PhotoServer,
    signer: HubSigner,
    device_id: str,
    data_dir: Path,
) -> None:
    frame = start_frame(health_check_s="30")
    send(hub, device_id, update(signer, server, device_id, "u-kill", image(15)))
    frame.wait_event("the trial boot", event="ota", state="health_check", version=NEW)
    wait_heartbeat(hub, device_id, NEW)
    frame.kill()
    assert boot_state(data_dir).trial

    again = start_frame()

    again.wait_event("the check continues", event="ota", state="health_check", version=NEW)
    completed = wait_final(hub, device_id, "u-kill")
    assert (completed.state, completed.version) == ("completed", NEW)
    state = boot_state(data_dir)
    assert (state.active, state.previous, state.trial, state.trial_boots) == ("b", "a", False, 0)
    assert [p.state for p in progress_of(hub, device_id, "u-kill")].count("completed") == 1


def test_final_answer_decided_while_the_broker_is_down_reaches_the_hub_later(
    tmp_path: Path, signer: HubSigner, device_id: str
) -> None:
    broker = Broker(tmp_path / "broker", persistent=True)
    broker.start()
    data_dir = tmp_path / "frame"
    hub: HubClient | None = None
    try:
        with photo_server(broker.port) as server:
            hub = HubClient(broker.port, session="hub-under-test")
            args = frame_args(device_id, broker, server, data_dir)
            args += ["--public-key", signer.public_key, "--health-check-s", "3"]
            with FrameProcess(args, tmp_path / "frame.log") as frame:
                frame.wait_event("connected", event="connected")
                send(hub, device_id, update(signer, server, device_id, "u-outage", image(16)))
                frame.wait_event("the trial boot", event="ota", state="health_check")
                wait_heartbeat(hub, device_id, NEW)

                broker.stop()
                frame.wait_event("committed offline", event="ota", state="completed")
                assert boot_state(data_dir).outbox != []
                broker.start()

                completed = wait_final(hub, device_id, "u-outage")
                assert (completed.state, completed.version) == ("completed", NEW)
                frame.wait_events("reconnected", 3, event="connected")
                # The broker's PUBACK empties the outbox a moment after the hub has the
                # answer: wait for the frame's own record of it (another process's file).
                deadline = time.monotonic() + WAIT_S
                while boot_state(data_dir).outbox and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert frame.stop() == 0
            assert boot_state(data_dir).outbox == []
    finally:
        if hub is not None:
            hub.close()
        broker.stop()


# -- the simulator ---------------------------------------------------------------------------


def test_simulator_gives_each_frame_its_pairing_key_and_its_own_fault_switches(
    server: PhotoServer, signer: HubSigner, hub: HubClient, tmp_path: Path
) -> None:
    args = ["simulate", "--hub", server.url, "--token", ADMIN_TOKEN, "--frames", "2"]
    args += ["--data-dir", str(tmp_path / "sim"), "--no-render", "--health-check-s", "1"]
    args += ["--ota-fault", "1:never_answers"]  # the second frame paired
    data = image(20)
    with FrameProcess(args, tmp_path / "sim.log") as fleet:
        fleet.wait_events("both frames connected", 2, event="connected")
        healthy, silent = "sim-1", "sim-2"  # the server's ids, in pairing order
        send(hub, healthy, update(signer, server, healthy, "u-healthy", data))
        send(hub, silent, update(signer, server, silent, "u-silent", data))
        answered_in_order(fleet, hub, silent, "marker")

        assert wait_final(hub, healthy, "u-healthy").state == "completed"
        wait_heartbeat(hub, healthy, NEW)
        assert hub.received(wire.frame_topic(silent, "ota")) == []
        assert fleet.of(frame_id=silent, event="ota") == []
        assert fleet.stop() == 0


# -- the bootloader (disk only) --------------------------------------------------------------


def _on_trial(directory: Path, data: bytes) -> Firmware:
    firmware = Firmware.open(directory, FACTORY)
    firmware.part_path.write_bytes(data)
    firmware.install(SlotManifest(version=NEW, sha256=wire_sha(data), size=len(data)))
    return firmware


def test_bootloader_finishes_a_decided_rollback_after_a_power_cut(tmp_path: Path) -> None:
    firmware = _on_trial(tmp_path / "fw", image(17, 1000))
    firmware.state.trial_failure = "health check failed: no heartbeat reached the broker"
    firmware.save()  # decided, then the power went before the restart

    after_power_cut = Firmware.open(tmp_path / "fw", FACTORY)
    failure = after_power_cut.boot()

    assert failure == "health check failed: no heartbeat reached the broker"
    assert after_power_cut.running_version() == FACTORY
    reread = Firmware.open(tmp_path / "fw", FACTORY)
    assert (reread.state.active, reread.state.previous, reread.state.trial) == ("a", None, False)


def test_bootloader_gives_up_a_trial_that_never_comes_up(tmp_path: Path) -> None:
    _on_trial(tmp_path / "fw", image(18, 1000))

    outcomes = [Firmware.open(tmp_path / "fw", FACTORY).boot() for _ in range(MAX_TRIAL_BOOTS)]
    last = Firmware.open(tmp_path / "fw", FACTORY)
    failure = last.boot()

    assert outcomes == [None] * MAX_TRIAL_BOOTS  # each boot runs the health check again
    assert failure is not None and "never came up" in failure
    assert last.running_version() == FACTORY


def test_bootloader_refuses_a_trial_image_damaged_on_disk(tmp_path: Path) -> None:
    firmware = _on_trial(tmp_path / "fw", image(19, 1000))
    image_path = firmware.slot_dir("b") / "image"
    image_path.write_bytes(b"x" + image_path.read_bytes()[1:])

    failure = Firmware.open(tmp_path / "fw", FACTORY).boot()

    assert failure == "health check failed: the new firmware image is damaged"
