"""Firmware updates over the air, as a frame does them.

``update_firmware``: the command must verify first (the hub's Ed25519 signature over
``wire.signed_command_bytes``, the arguments present and plausible); a refused command is
answered ``failed`` and nothing is downloaded. Then the frame downloads the image with its
token into ``firmware/download.part`` (``Range`` resumes a partial download of the same
image), checks its size and SHA-256, moves it into the inactive slot, marks that slot
active *on trial*, and restarts. Progress goes to ``frames/<id>/ota``: ``downloading``
(``progress`` at the start and every quarter), ``downloaded``, ``installing``.

The health check: a trial boot must, within ``health_check_s`` of booting, get a heartbeat
to the broker and complete one screen update (a photo, the blank screen of a frame with
nothing to show, or the dark screen of quiet hours all count: the display path worked),
and not crash. Then the slot is committed and the frame answers ``completed``. A failed
check records why on disk and restarts; the bootloader (``Firmware.boot``) then goes back to
the previous slot and the frame answers ``rolled_back``. A frame power-cut during its
health check starts the check again at the next boot (up to ``MAX_TRIAL_BOOTS`` boots).

``rollback_firmware`` switches to the previous committed slot, restarts, and answers
``rolled_back``; ``failed`` if there is none.

Every firmware command is answered once: its final answer is kept on disk and sent again
for a redelivered command (same ``command_id``); a command still in progress is not
started twice, and a different firmware command meanwhile is refused (``failed``, busy).
Final answers stay in an outbox until the broker acknowledges them (QoS 1), and are sent
again on every connect, so the hub hears them even across reconnects and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import BinaryIO, NoReturn, Protocol

import httpx

import wire

from ._firmware import (
    REMEMBERED_ANSWERS,
    Firmware,
    SlotManifest,
    crash_failure,
    file_sha256,
    refusal,
)
from ._state import FrameConfig, OtaFaultKind, utc_timestamp

log = logging.getLogger("frame_device")

DOWNLOAD_ATTEMPTS = 10
"""Tries per update command; each resumes where the previous one stopped. With the pauses
between them (``RETRY_PAUSE_S`` doubling up to ``RETRY_PAUSE_MAX_S``) they span about 40 s,
long enough for the hub to restart in between."""
RETRY_PAUSE_S = 0.2
RETRY_PAUSE_MAX_S = 10.0
PROGRESS_STEP = 0.25
"""``downloading`` is published at the start and each time another quarter is in."""


class DownloadFailed(Exception):
    """The image could not be fetched, or its bytes are not what the command announced."""


class _TryAgain(Exception):
    """A download attempt broke off in a way worth another attempt."""


class FirmwareCrashed(Exception):
    """The new firmware crashed (the ``crash_after_boot`` fault)."""


class OtaHost(Protocol):
    """What the updater needs of the boot it runs in."""

    config: FrameConfig
    http: httpx.AsyncClient
    started: float
    """``time.monotonic()`` at power-on: the health check's window starts here."""
    heartbeat_sent: asyncio.Event
    screen_updated: asyncio.Event

    async def publish_ota(self, progress: wire.OtaProgress) -> bool:
        """Publish on ``frames/<id>/ota`` at QoS 1; False if the broker did not take it."""
        ...

    async def restart(self) -> None:
        """Restart the frame; this boot ends soon after."""
        ...

    def emit_ota(
        self,
        state: str,
        *,
        command_id: str | None,
        version: str | None,
        progress: float | None = None,
        error: str | None = None,
    ) -> None: ...


class Updater:
    """The firmware side of one boot: answers firmware commands and runs their updates."""

    def __init__(self, host: OtaHost, firmware: Firmware) -> None:
        self.host = host
        self.firmware = firmware
        self.id = host.config.device_id
        self.work: asyncio.Queue[wire.FrameCommand] = asyncio.Queue()
        self.running_version = firmware.factory_version
        """The firmware this boot runs (read from the active slot by ``boot``)."""
        self._flush_lock = asyncio.Lock()

    async def boot(self) -> None:
        """At power-on, before going online: the bootloader's step, and the answer to a
        command it finished (a rollback after a failed trial, or a ``rollback_firmware``)."""
        failure = await asyncio.to_thread(self.firmware.boot)
        self.running_version = await asyncio.to_thread(self.firmware.running_version)
        pending = self.firmware.state.pending
        running = self.running_version
        if failure is not None:
            log.warning("frame %s went back to firmware %s: %s", self.id, running, failure)
            if pending is not None:
                error = f"{failure}; running {running} again"
                await self._finish(pending, "rolled_back", error=error)
        elif pending is not None and pending.command == "rollback_firmware":
            await self._finish(pending, "rolled_back", version=running)

    async def crashed(self, error: str) -> bool:
        """The frame program crashed: if on trial, that is the end of the trial (the next
        boot rolls back). True if so."""
        state = self.firmware.state
        if not state.trial:
            return False
        if state.trial_failure is None:
            state.trial_failure = crash_failure(error)
            await self._save()
        return True

    # -- commands ------------------------------------------------------------------------

    async def receive(self, command: wire.FrameCommand) -> None:
        """A firmware command from the hub (the command lane calls this in order)."""
        command_id = command.command_id
        state = self.firmware.state
        answer = state.answer_to(command_id)
        if answer is not None:
            log.info("frame %s answers firmware command %s again", self.id, command_id)
            self._emit(answer)
            await self.host.publish_ota(answer)
            return
        if command_id in state.ignored:
            return
        if state.pending is not None and state.pending.command_id == command_id:
            log.info("frame %s: firmware command %s is already running", self.id, command_id)
            return
        if await self._spoils("never_answers"):
            state.ignored = [*state.ignored, command_id][-REMEMBERED_ANSWERS:]
            await self._save()
            log.warning("frame %s ignores firmware command %s (fault)", self.id, command_id)
            return
        problem = refusal(self.id, command, self.host.config.public_key)
        if problem is None and state.pending is not None:
            problem = f"busy: firmware command {state.pending.command_id} is still in progress"
        if problem is not None:
            await self._finish(command, "failed", error=problem)
        elif command.command == "rollback_firmware":
            await self._rollback(command)
        elif command.args.version == self.running_version and not state.trial:
            await self._finish(command, "completed")
        else:
            state.pending = command
            await self._save()
            self.work.put_nowait(command)

    async def lane(self) -> NoReturn:
        """A trial boot's health check, an update a restart interrupted, then updates as
        they are accepted (one at a time: another is refused while one is pending)."""
        state = self.firmware.state
        if state.trial:
            await self._health_check()
        elif state.pending is not None and state.pending.command == "update_firmware":
            log.info("frame %s resumes firmware update %s", self.id, state.pending.command_id)
            await self._update(state.pending)
        while True:
            await self._update(await self.work.get())

    async def _rollback(self, command: wire.FrameCommand) -> None:
        firmware = self.firmware
        wanted = command.args.version
        previous = firmware.state.previous
        previous_version = await asyncio.to_thread(firmware.version_of, previous)
        if wanted is not None and wanted == self.running_version and not firmware.state.trial:
            await self._finish(command, "rolled_back", version=wanted)  # already there
        elif previous is None or previous_version is None:
            await self._finish(command, "failed", error="no previous firmware")
        elif wanted is not None and wanted != previous_version:
            error = f"no previous firmware {wanted} (the previous firmware is {previous_version})"
            await self._finish(command, "failed", error=error)
        elif not await asyncio.to_thread(firmware.intact, previous):
            error = f"the previous firmware {previous_version} is damaged"
            await self._finish(command, "failed", error=error)
        else:
            log.info("frame %s rolls back to firmware %s", self.id, previous_version)
            firmware.switch_to_previous()
            firmware.state.pending = command
            await self._save()
            await self.host.restart()  # answered by the next boot, running the previous slot

    # -- update --------------------------------------------------------------------------

    async def _update(self, command: wire.FrameCommand) -> None:
        args = command.args
        assert args.version is not None and args.sha256 is not None and args.size is not None
        try:
            await self._download(command)
        except DownloadFailed as failure:
            await self._finish(command, "failed", error=str(failure))
            return
        except OSError as error:  # the frame's own disk (full, read-only)
            await self._finish(command, "failed", error=f"cannot store the image: {error}")
            return
        await self.announce(command, "downloaded", progress=1.0)
        await self.announce(command, "installing")
        manifest = SlotManifest(version=args.version, sha256=args.sha256, size=args.size)
        fail = await self._spoils("failed_install")
        try:
            slot = await asyncio.to_thread(self.firmware.install, manifest, fail=fail)
        except OSError as error:
            await asyncio.to_thread(self.firmware.discard_part)
            await self._finish(command, "failed", error=f"install failed: {error}")
            return
        log.info("frame %s installed %s in slot %s; restarting", self.id, args.version, slot)
        await self.host.restart()

    async def _download(self, command: wire.FrameCommand) -> None:
        """Fetch the image into ``download.part`` and check it; DownloadFailed if that
        fails (a damaged part is deleted; an incomplete one kept for a later resume)."""
        firmware = self.firmware
        args = command.args
        assert args.sha256 is not None and args.size is not None
        if firmware.state.partial_sha256 != args.sha256:
            await asyncio.to_thread(firmware.discard_part)
            firmware.state.partial_sha256 = args.sha256
            await self._save()
        reporter = _ProgressReporter(self, command, args.size)
        problem = ""
        for attempt in range(DOWNLOAD_ATTEMPTS):
            if attempt:
                await asyncio.sleep(min(RETRY_PAUSE_MAX_S, RETRY_PAUSE_S * 2 ** (attempt - 1)))
            try:
                await self._fetch(command, reporter)
                break
            except _TryAgain as again:
                problem = str(again)
                log.info("frame %s: firmware download interrupted: %s", self.id, problem)
        else:
            raise DownloadFailed(f"download failed: {problem}")
        part = firmware.part_path
        size = await asyncio.to_thread(lambda: part.stat().st_size)
        if size != args.size:
            await self._discard_part()
            raise DownloadFailed(f"size mismatch: expected {args.size} bytes, got {size}")
        if await self._spoils("corrupt_download"):
            await asyncio.to_thread(_flip_a_byte, part, size)
        digest = await asyncio.to_thread(file_sha256, part)
        if digest != args.sha256:
            await self._discard_part()
            raise DownloadFailed(f"sha256 mismatch: expected {args.sha256}, got {digest}")

    async def _fetch(self, command: wire.FrameCommand, reporter: _ProgressReporter) -> None:
        """One attempt: ask for what ``download.part`` lacks and append it."""
        args = command.args
        assert args.url is not None and args.size is not None
        part = self.firmware.part_path
        offset = await asyncio.to_thread(lambda: part.stat().st_size if part.exists() else 0)
        if offset > args.size:
            offset = 0
        await reporter.report(offset)
        if offset == args.size:
            return  # complete already: an earlier boot got it all but had not installed it
        config = self.host.config
        target = httpx.URL(config.hub_url).join(args.url)
        headers = {"Authorization": f"Bearer {config.token}"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            async with self.host.http.stream("GET", target, headers=headers) as response:
                status = response.status_code
                if status == 206 and offset and _range_starts_at(response, offset):
                    pass  # the rest: appended
                elif status == 200:
                    offset = 0  # the whole image: the part is rewritten
                elif status in (206, 416):
                    await asyncio.to_thread(part.unlink, missing_ok=True)
                    raise _TryAgain(f"HTTP {status} does not continue the part; starting over")
                elif status >= 500 or status in (408, 429):
                    raise _TryAgain(f"HTTP {status} for {target}")
                else:
                    raise DownloadFailed(f"download failed: HTTP {status} for {target}")
                file = await asyncio.to_thread(open, part, "ab" if offset else "wb")
                try:
                    async for chunk in response.aiter_bytes():
                        if offset + len(chunk) > args.size:
                            await asyncio.to_thread(part.unlink, missing_ok=True)
                            raise DownloadFailed(
                                f"size mismatch: {target} sends more than {args.size} bytes"
                            )
                        await asyncio.to_thread(_append, file, chunk)
                        offset += len(chunk)
                        await reporter.report(offset)
                finally:
                    file.close()
        except httpx.HTTPError as error:
            raise _TryAgain(f"{type(error).__name__}: {error}") from error
        if offset < args.size:
            raise _TryAgain(f"the download ended after {offset} of {args.size} bytes")

    async def _discard_part(self) -> None:
        await asyncio.to_thread(self.firmware.discard_part)
        await self._save()

    # -- health check --------------------------------------------------------------------

    async def _health_check(self) -> None:
        firmware = self.firmware
        pending = firmware.state.pending
        window = max(0.0, self.host.config.health_check_s)
        self.host.emit_ota(
            "health_check",
            command_id=pending.command_id if pending is not None else None,
            version=self.running_version,
        )
        if await self._spoils("crash_after_boot"):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(window):
                    await self.host.heartbeat_sent.wait()
            raise FirmwareCrashed("injected crash_after_boot fault")
        await asyncio.sleep(max(0.0, self.host.started + window - time.monotonic()))
        problems = []
        if not self.host.heartbeat_sent.is_set():
            problems.append("no heartbeat reached the broker")
        if not self.host.screen_updated.is_set():
            problems.append("the screen was never drawn")
        if problems:
            failure = f"health check failed: {' and '.join(problems)} within {window:g} s"
            log.warning("frame %s: %s; restarting into the previous firmware", self.id, failure)
            firmware.state.trial_failure = failure
            await self._save()
            await self.host.restart()
            return
        firmware.commit()
        log.info("frame %s committed firmware %s", self.id, self.running_version)
        if pending is None:
            await self._save()
        else:
            await self._finish(pending, "completed", version=self.running_version)

    # -- answers -------------------------------------------------------------------------

    def _message(
        self,
        command: wire.FrameCommand,
        state: wire.OtaState,
        *,
        version: str | None = None,
        progress: float | None = None,
        error: str | None = None,
    ) -> wire.OtaProgress:
        return wire.OtaProgress(
            frame_id=self.id,
            state=state,
            timestamp=utc_timestamp(),
            campaign_id=command.args.campaign_id,
            command_id=command.command_id,
            version=version if version is not None else command.args.version,
            progress=progress,
            error=error,
        )

    async def announce(
        self, command: wire.FrameCommand, state: wire.OtaState, *, progress: float | None = None
    ) -> None:
        """An intermediate state: published if the frame is online, never repeated."""
        message = self._message(command, state, progress=progress)
        self._emit(message)
        await self.host.publish_ota(message)

    async def _finish(
        self,
        command: wire.FrameCommand,
        state: wire.OtaState,
        *,
        version: str | None = None,
        error: str | None = None,
    ) -> None:
        """The command's final answer: kept on disk first, then delivered (at least once)."""
        if error is not None:
            log.warning("frame %s: firmware command %s: %s", self.id, command.command_id, error)
        message = self._message(command, state, version=version, error=error)
        self.firmware.record(message)
        await self._save()
        self._emit(message)
        await self.flush()

    async def flush(self) -> None:
        """Send the final answers the broker has not acknowledged yet (on every connect)."""
        async with self._flush_lock:
            state = self.firmware.state
            while state.outbox:
                first = state.outbox[0]
                if not await self.host.publish_ota(first):
                    return
                state.outbox = [answer for answer in state.outbox if answer is not first]
                await self._save()

    def _emit(self, message: wire.OtaProgress) -> None:
        self.host.emit_ota(
            message.state,
            command_id=message.command_id,
            version=message.version,
            progress=message.progress,
            error=message.error,
        )

    # -- disk and faults -----------------------------------------------------------------

    async def _save(self) -> None:
        await asyncio.to_thread(self.firmware.save)

    async def _spoils(self, kind: OtaFaultKind) -> bool:
        """Whether the fault switch ``kind`` spoils this attempt (counted on disk)."""
        faults = [fault for fault in self.host.config.ota_faults if fault.kind == kind]
        if not faults:
            return False
        used = self.firmware.state.faults_used.get(kind, 0)
        times = [fault.times for fault in faults]
        if None not in times and used >= sum(t for t in times if t is not None):
            return False
        self.firmware.state.faults_used = {**self.firmware.state.faults_used, kind: used + 1}
        await self._save()
        log.warning("frame %s: OTA fault %s (attempt %d)", self.id, kind, used + 1)
        return True


class _ProgressReporter:
    """Publishes ``downloading`` at the start and when another quarter is in."""

    def __init__(self, updater: Updater, command: wire.FrameCommand, size: int) -> None:
        self._updater = updater
        self._command = command
        self._size = size
        self._next: float | None = None

    async def report(self, done: int) -> None:
        fraction = min(1.0, done / self._size)
        if self._next is not None and (fraction < self._next or fraction >= 1.0):
            return
        self._next = (int(fraction / PROGRESS_STEP) + 1) * PROGRESS_STEP
        await self._updater.announce(self._command, "downloading", progress=round(fraction, 3))


def _range_starts_at(response: httpx.Response, offset: int) -> bool:
    """A 206 answers the ``Range`` asked for (``Content-Range: bytes <offset>-...``)."""
    content_range = str(response.headers.get("Content-Range", ""))
    return content_range.startswith(f"bytes {offset}-")


def _append(file: BinaryIO, chunk: bytes) -> None:
    """Write through to the OS: what was received survives the program being killed."""
    file.write(chunk)
    file.flush()


def _flip_a_byte(path: Path, size: int) -> None:
    """The ``corrupt_download`` fault: damage the downloaded image in the middle."""
    with open(path, "r+b") as file:
        file.seek(size // 2)
        byte = file.read(1)
        file.seek(size // 2)
        file.write(bytes([byte[0] ^ 0xFF]))
