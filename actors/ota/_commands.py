"""The firmware commands in flight: which target each command id belongs to, by when each
frame must report again, how many reports were taken or ignored, and how a command goes out
(signed for its frame, as ``frame.command_issued`` for the MQTT bridge).

One timer serves every deadline: it is armed for the earliest and delivers ``DeadlinesDue``
to the actor, which asks ``expired`` for the targets that stayed silent. Deadlines are in
memory only: a restarted actor gives every command in flight a whole timeout again.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable

import msgspec
import trio

import wire
from actors.events import Audit, FrameCommandIssued
from config import OtaSettings
from supervision import Timer

from ._messages import OtaStats
from ._rollout import UPDATE, Campaign, Target
from ._signing import SigningKey
from ._tables import Changes

log = logging.getLogger("framehub.ota")


class DeadlinesDue(msgspec.Struct, frozen=True):
    """The timer of ``Commands`` fired; ``generation`` tells a replaced timer's from the
    current one's."""

    generation: int


class Commands:
    """The targets with a command in flight, by command id."""

    def __init__(
        self,
        key: SigningKey,
        settings: OtaSettings,
        send_after: Callable[[float, DeadlinesDue], Timer],
    ) -> None:
        self._key = key
        self._settings = settings
        self._send_after = send_after
        self._in_flight: dict[str, tuple[Campaign, Target]] = {}
        self._timer: Timer | None = None
        self._timer_at = math.inf
        self._timer_generation = 0
        self.accepted = 0
        """Reports that moved a target on or showed it alive."""
        self.ignored: Counter[str] = Counter()
        """Reports left aside, by why."""

    def __bool__(self) -> bool:
        return bool(self._in_flight)

    def stats(self) -> OtaStats:
        return OtaStats(
            in_flight=len(self._in_flight),
            accepted_progress=self.accepted,
            ignored_progress=dict(self.ignored),
        )

    def restore(self, campaigns: Iterable[Campaign]) -> None:
        """Follow the commands in flight in ``campaigns`` (rebuilt from the tables), each
        with a whole timeout from now; forget any other."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf
        self._in_flight.clear()
        deadline = trio.current_time() + self._settings.progress_timeout_s
        for c in campaigns:
            for t in c.targets:
                if t.in_flight:
                    assert t.command_id is not None
                    self._in_flight[t.command_id] = (c, t)
                    t.deadline = deadline
        if self._in_flight:
            self._arm(deadline)

    def find(self, report: wire.OtaProgress) -> tuple[Campaign, Target] | None:
        """The campaign and target whose command ``report`` is about, if it is in flight."""
        found = self._in_flight.get(report.command_id) if report.command_id else None
        if found is None:
            self.ignored["unknown_command"] += 1
        return found

    def follow(self, c: Campaign, t: Target) -> None:
        """``t`` changed state: follow its command while it is in flight, else forget it."""
        if t.in_flight:
            assert t.command_id is not None
            self._in_flight[t.command_id] = (c, t)
            self.extend(t)
        else:
            if t.command_id is not None:
                self._in_flight.pop(t.command_id, None)
            t.deadline = None

    def extend(self, t: Target) -> None:
        """The frame showed progress: it has a whole timeout again."""
        t.deadline = trio.current_time() + self._settings.progress_timeout_s
        self._arm(t.deadline)

    def expired(self, generation: int) -> list[tuple[Campaign, Target]] | None:
        """The targets past their deadline when timer ``generation`` fired, or None if that
        timer had been replaced. Call ``rearm`` once they are dealt with."""
        if generation != self._timer_generation:
            return None
        self._timer = None
        self._timer_at = math.inf
        now = trio.current_time()
        return [
            (c, t)
            for c, t in self._in_flight.values()
            if t.deadline is not None and t.deadline <= now
        ]

    def rearm(self) -> None:
        """Arm the timer for the earliest deadline left, if any."""
        deadlines = [t.deadline for _, t in self._in_flight.values() if t.deadline is not None]
        if deadlines:
            self._arm(min(deadlines))

    def _arm(self, deadline: float) -> None:
        """Make sure a ``DeadlinesDue`` comes by ``deadline`` (one timer for all targets)."""
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_generation += 1
        self._timer_at = deadline
        self._timer = self._send_after(
            max(0.0, deadline - trio.current_time()), DeadlinesDue(self._timer_generation)
        )

    # -- sending -------------------------------------------------------------------------------

    def issue(self, c: Campaign, t: Target, base_url: str, changes: Changes) -> None:
        """Publish ``t``'s command (``t.command``, ``t.command_id``), signed for its frame;
        ``base_url`` is where frames download firmware."""
        assert t.command is not None and t.command_id is not None
        changes.publish(
            FrameCommandIssued(
                audit=Audit.system("ota"),
                correlation_id=c.correlation_id,
                frame_id=t.device_id,
                command_id=t.command_id,
                command=t.command,
                args=self._signed(c, t, base_url),
            )
        )

    def resend(self, base_url: str, changes: Changes) -> None:
        """Send every command in flight again, with the same id, in rollout order."""
        for c, t in sorted(self._in_flight.values(), key=lambda ct: ct[1].position):
            self.issue(c, t, base_url, changes)
        if self._in_flight:
            log.info("sent %d firmware commands in flight again", len(self._in_flight))

    def _signed(self, c: Campaign, t: Target, base_url: str) -> wire.CommandArgs:
        """The arguments of ``t``'s command, signed for its frame and command id."""
        assert t.command is not None and t.command_id is not None
        if t.command == UPDATE:
            firmware = c.firmware
            args = wire.CommandArgs(
                url=f"{base_url}/api/v1/firmware/{firmware.firmware_id}/download",
                sha256=firmware.sha256,
                size=firmware.size,
                version=firmware.version,
                campaign_id=c.campaign_id,
            )
        else:
            args = wire.CommandArgs(version=t.previous_version, campaign_id=c.campaign_id)
        signature = self._key.sign(t.device_id, t.command_id, t.command, args)
        return msgspec.structs.replace(args, signature=signature)
