"""The rules of a campaign's states: which operator actions a campaign's state allows, and
what a frame's progress report (or its silence) does to its target.

Pure: nothing here changes a campaign or does I/O. The actor asks these rules and carries out
their verdicts (``_progress``, ``_lifecycle``).
"""

from __future__ import annotations

from typing import Literal

import msgspec

import wire
from actors.errors import Conflict

from ._messages import CampaignState, DeviceState
from ._rollout import ROLLBACK, Target

# -- operator actions --------------------------------------------------------------------------

Action = Literal["start", "pause", "resume", "cancel", "rollback", "retry-failed"]


def allowed(action: Action) -> tuple[CampaignState, ...]:
    """The campaign states in which ``action`` applies."""
    match action:
        case "start":
            return ("draft",)
        case "pause":
            return ("running",)
        case "resume":
            return ("paused",)
        case "cancel":
            return ("draft", "running", "paused")
        case "rollback":
            return ("running", "paused", "completed", "cancelled")
        case "retry-failed":
            return ("running", "paused", "completed")


def check_allowed(campaign_id: str, state: CampaignState, action: Action) -> None:
    """``Conflict`` naming the states ``action`` applies to, unless ``state`` is one."""
    states = allowed(action)
    if state in states:
        return
    listed = ", ".join(states[:-1]) + (" or " if len(states) > 1 else "") + states[-1]
    raise Conflict(f"campaign {campaign_id} is {state}; {action} applies to a {listed} campaign")


# -- a frame's reports -------------------------------------------------------------------------

RANK: dict[DeviceState, int] = {
    "queued": 0,
    "notified": 1,
    "downloading": 2,
    "downloaded": 3,
    "installing": 4,
    "completed": 5,
    "failed": 5,
    "rolled_back": 5,
}
"""How far an update got: a report never moves a frame back (or sideways between ends)."""


class Ignored(msgspec.Struct, frozen=True):
    """Not about this target's command, or not a step forward: counted, nothing else."""

    reason: Literal["wrong_frame", "not_forward"]


class Progressed(msgspec.Struct, frozen=True):
    """Further within the same state: remembered (not written), and the frame is alive."""

    progress: float


class Alive(msgspec.Struct, frozen=True):
    """A frame on its way back to its previous firmware: it has a whole timeout again."""


class Advanced(msgspec.Struct, frozen=True):
    """The update moved on to ``state`` (written, with a history entry)."""

    state: Literal["downloading", "downloaded", "installing"]
    progress: float


class Completed(msgspec.Struct, frozen=True):
    """The frame runs the campaign's firmware (``update.completed``)."""


class RolledBack(msgspec.Struct, frozen=True):
    """A rollback command ended: the frame runs ``version`` again (``update.rolled_back``)."""

    version: str


class Failed(msgspec.Struct, frozen=True, kw_only=True):
    """The command failed (``update.failed``): the target ends ``rolled_back`` if the frame
    went back by itself, else ``failed``. ``running`` is the firmware the frame runs now when
    it is known to be other than its previous version (a failed rollback)."""

    error: str
    rolled_back: bool = False
    running: str | None = None


Change = Advanced | Completed | RolledBack | Failed
"""A verdict that changes the target's state (written, evaluated)."""
Verdict = Ignored | Progressed | Alive | Change


def judge(target: Target, report: wire.OtaProgress, version: str) -> Verdict:
    """What ``report``, about ``target``'s command in flight, does to it; ``version`` is the
    firmware the campaign installs."""
    if target.device_id != report.frame_id:
        return Ignored("wrong_frame")
    if target.command == ROLLBACK:
        if report.state == "rolled_back":
            return RolledBack(report.version or target.previous_version or "unknown")
        if report.state == "failed":
            return Failed(
                error=f"rollback failed: {report.error or 'no reason given'}", running=version
            )
        return Alive()
    if RANK[report.state] <= RANK[target.state]:
        if (
            report.state == target.state
            and report.progress is not None
            and (target.progress is None or report.progress > target.progress)
        ):
            return Progressed(_fraction(report.progress))
        return Ignored("not_forward")
    match report.state:
        case "downloading":
            return Advanced("downloading", _fraction(report.progress or 0.0))
        case "downloaded" | "installing":
            return Advanced(report.state, 1.0)
        case "completed" if report.version not in (None, version):
            return Failed(
                error=f"the frame reports version {report.version} after the update to {version}"
            )
        case "completed":
            return Completed()
        case "failed":
            return Failed(error=report.error or "the frame reported a failure")
        case "rolled_back":
            return Failed(
                error=report.error or "the frame went back to its previous firmware",
                rolled_back=True,
            )


def timed_out(target: Target, timeout_s: float, version: str) -> Failed:
    """What ``target``'s silence for ``timeout_s`` with a command in flight does to it."""
    silence = f"no progress for {timeout_s:g} s"
    if target.command == ROLLBACK:
        return Failed(error=f"rollback failed: {silence}", running=version)
    return Failed(error=silence)


def _fraction(progress: float) -> float:
    return min(1.0, max(0.0, progress))
