"""A campaign's rollout as the OTA actor keeps it in memory: its targets, their states, and
the decisions of the staged rollout (release the next batch, pause, complete).

Nothing here does I/O: the actor changes a ``Campaign`` through ``set_state`` (which keeps the
counts that the decisions read) and writes what changed in the same transaction.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from ._messages import (
    DEVICE_STATES,
    CampaignDevice,
    CampaignState,
    CampaignSummary,
    CampaignView,
    DeviceState,
    Firmware,
)

UPDATE = "update_firmware"
ROLLBACK = "rollback_firmware"

FINAL: frozenset[DeviceState] = frozenset({"completed", "failed", "rolled_back", "cancelled"})
FAILURES: frozenset[DeviceState] = frozenset({"failed", "rolled_back"})
UPDATING: frozenset[DeviceState] = frozenset(
    {"notified", "downloading", "downloaded", "installing"}
)
Step = Literal["release", "complete", "stall", "wait"]


@dataclass(slots=True, eq=False)
class Target:
    """One frame in one campaign."""

    device_id: str
    position: int
    """Its place in the rollout order (``position // batch_size`` is its batch)."""
    state: DeviceState = "queued"
    progress: float | None = None
    error: str = ""
    attempts: int = 0
    command_id: str | None = None
    command: str | None = None
    """The last firmware command sent to it (``update_firmware`` or ``rollback_firmware``)."""
    previous_version: str | None = None
    acknowledged: bool = False
    """A failure that a resume acknowledged no longer counts against the thresholds."""
    updated_at: str = ""
    deadline: float | None = None
    """Trio time by which the frame must report progress (in flight only; not stored)."""

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def in_flight(self) -> bool:
        """A command is out and its outcome not known yet."""
        return self.state in UPDATING or (self.state == "rolling_back" and self.command == ROLLBACK)

    @property
    def counts_as_failure(self) -> bool:
        """A failed update not yet acknowledged (a failed rollback is not a failed update)."""
        return self.state in FAILURES and self.command != ROLLBACK and not self.acknowledged

    def view(self, batch_size: int) -> CampaignDevice:
        return CampaignDevice(
            device_id=self.device_id,
            batch=self.position // batch_size + 1,
            state=self.state,
            progress=self.progress,
            error=self.error,
            attempts=self.attempts,
            command_id=self.command_id,
            previous_version=self.previous_version,
            updated_at=self.updated_at,
        )


@dataclass(slots=True, eq=False)
class Campaign:
    campaign_id: str
    name: str
    firmware: Firmware
    state: CampaignState
    batch_size: int
    current_batch: int
    """0-based here; views show it 1-based."""
    success_threshold: float
    failure_threshold: int | None
    failure_threshold_percent: float | None
    correlation_id: str
    created_by: str | None
    created_at: str
    updated_at: str
    started_at: str | None = None
    finished_at: str | None = None
    pause_reason: str = ""
    targets: list[Target] = field(default_factory=list)
    by_device: dict[str, Target] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    failures: int = 0
    """Targets for which ``counts_as_failure`` holds."""
    waiting: set[str] = field(default_factory=set)
    """Frames owed a command once they are online: queued in a released batch of a running
    campaign, or ordered back by a rollback."""

    def add(self, target: Target) -> None:
        self.targets.append(target)
        self.by_device[target.device_id] = target
        self.counts[target.state] += 1
        self.failures += target.counts_as_failure

    def set_state(self, target: Target, state: DeviceState) -> None:
        """Move ``target`` to ``state``, keeping the counts (a new failure is unacknowledged)."""
        self.failures -= target.counts_as_failure
        self.counts[target.state] -= 1
        target.state = state
        self.counts[state] += 1
        if state in FAILURES:
            target.acknowledged = False
        self.failures += target.counts_as_failure

    def acknowledge_failures(self) -> list[Target]:
        acknowledged = [t for t in self.targets if t.counts_as_failure]
        for target in acknowledged:
            target.acknowledged = True
        self.failures = 0
        return acknowledged

    # -- batches -----------------------------------------------------------------------------

    @property
    def batches(self) -> int:
        return max(1, math.ceil(len(self.targets) / self.batch_size))

    def batch(self, index: int) -> list[Target]:
        return self.targets[index * self.batch_size : (index + 1) * self.batch_size]

    def release(self, index: int) -> None:
        """Batch ``index`` is released: its queued frames are owed their command."""
        self.current_batch = index
        self.waiting.update(t.device_id for t in self.batch(index) if t.state == "queued")

    def released(self) -> int:
        """Frames of the released batches that are still in the campaign."""
        end = (self.current_batch + 1) * self.batch_size
        return sum(t.state != "cancelled" for t in self.targets[:end])

    def all_final(self) -> bool:
        return sum(self.counts[state] for state in FINAL) == len(self.targets)

    @property
    def open(self) -> bool:
        """Still sending commands or following updates in flight."""
        if self.state in ("completed", "rolled_back"):
            return False
        return self.state != "cancelled" or self.finished_at is None

    # -- decisions ---------------------------------------------------------------------------

    def failure_reason(self) -> str | None:
        """Why the failures so far pause the campaign, or None while they are below both
        thresholds."""
        failed = self.failures
        if failed == 0:
            return None
        if self.failure_threshold is not None and failed >= self.failure_threshold:
            return (
                f"{failed} failed update{'s' * (failed != 1)} reached the failure threshold "
                f"of {self.failure_threshold}"
            )
        if self.failure_threshold_percent is not None:
            released = max(1, self.released())
            share = 100 * failed / released
            if share >= self.failure_threshold_percent - 1e-9:
                return (
                    f"{failed} of {released} released frames failed ({share:.0f}%), at or above "
                    f"the failure threshold of {self.failure_threshold_percent:g}%"
                )
        return None

    def batch_step(self) -> tuple[Step, str]:
        """What the current batch allows: release the next one (enough completed, or every
        frame done and its failures acknowledged), complete the campaign (the last batch and
        every frame done), stall (every frame done, too few completed and failures not
        acknowledged: the reason says so) or wait."""
        if self.current_batch >= self.batches - 1:
            return ("complete", "") if self.all_final() else ("wait", "")
        live = [t for t in self.batch(self.current_batch) if t.state != "cancelled"]
        completed = sum(t.state == "completed" for t in live)
        needed = math.ceil(round(self.success_threshold * len(live), 9))
        if completed >= needed:
            return "release", ""
        if not all(t.final for t in live):
            return "wait", ""
        if not any(t.counts_as_failure for t in live):
            return "release", ""
        return "stall", (
            f"batch {self.current_batch + 1} of {self.batches} ended with {completed} of "
            f"{len(live)} frames updated, below the success threshold ({needed} needed)"
        )

    # -- views -------------------------------------------------------------------------------

    def summary(self) -> CampaignSummary:
        return CampaignSummary(
            campaign_id=self.campaign_id,
            name=self.name,
            firmware_id=self.firmware.firmware_id,
            version=self.firmware.version,
            model=self.firmware.model,
            state=self.state,
            batch_size=self.batch_size,
            batches=self.batches,
            current_batch=self.current_batch + 1,
            success_threshold=self.success_threshold,
            failure_threshold=self.failure_threshold,
            failure_threshold_percent=self.failure_threshold_percent,
            pause_reason=self.pause_reason,
            targets=len(self.targets),
            counts={state: self.counts[state] for state in DEVICE_STATES},
            created_at=self.created_at,
            started_at=self.started_at,
            updated_at=self.updated_at,
            finished_at=self.finished_at,
        )

    def view(self) -> CampaignView:
        return CampaignView(
            **msgspec.structs.asdict(self.summary()),
            devices=[t.view(self.batch_size) for t in self.targets],
        )
