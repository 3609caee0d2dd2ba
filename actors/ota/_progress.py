"""Frames' progress reports (``wire.OtaProgress``) and their silence, carried out on the
campaigns.

A report is matched to its command in flight by command id and frame; ``_states.judge`` says
what it does. Progress within a state (a download's percentage) only moves the frame's
deadline and is kept in memory; a change of state is written to the ``Changes`` the caller
hands over (the actor collects those of many reports there and commits them together).
"""

from __future__ import annotations

import wire
from actors.events import Audit, UpdateCompleted, UpdateRolledBack

from ._campaigns import Campaigns
from ._rollout import Campaign, Target
from ._states import (
    Advanced,
    Alive,
    Change,
    Completed,
    Failed,
    Ignored,
    Progressed,
    RolledBack,
    judge,
    timed_out,
)
from ._tables import Changes


async def on_report(campaigns: Campaigns, report: wire.OtaProgress, changes: Changes) -> bool:
    """Carry out ``report``; True if it changed a state (written to ``changes``)."""
    commands = campaigns.commands
    found = commands.find(report)
    if found is None:
        return False
    c, t = found
    verdict = judge(t, report, c.firmware.version)
    match verdict:
        case Ignored(reason=reason):
            commands.ignored[reason] += 1
            return False
        case Progressed(progress=progress):
            t.progress = progress
            commands.extend(t)
            commands.accepted += 1
            return False
        case Alive():
            commands.extend(t)
            commands.accepted += 1
            return False
    commands.accepted += 1
    _carry_out(campaigns, c, t, verdict, changes)
    await campaigns.evaluate(c, changes)
    return True


async def time_out(
    campaigns: Campaigns,
    expired: list[tuple[Campaign, Target]],
    timeout_s: float,
    changes: Changes,
) -> None:
    """The frames of ``expired`` reported nothing for ``timeout_s``: their commands failed."""
    touched: dict[str, Campaign] = {}
    for c, t in expired:
        failed = timed_out(t, timeout_s, c.firmware.version)
        campaigns.fail(c, t, failed, changes, Audit.system("ota"))
        touched[c.campaign_id] = c
    for c in touched.values():
        await campaigns.evaluate(c, changes)


def _carry_out(
    campaigns: Campaigns, c: Campaign, t: Target, verdict: Change, changes: Changes
) -> None:
    frame = Audit.frame(t.device_id)
    match verdict:
        case Advanced(state=state, progress=progress):
            t.progress = progress
            campaigns.move(c, t, state, changes)
        case Completed():
            t.progress = 1.0
            campaigns.move(c, t, "completed", changes, error="")
            changes.publish(
                UpdateCompleted(
                    audit=frame,
                    correlation_id=c.correlation_id,
                    campaign_id=c.campaign_id,
                    device_id=t.device_id,
                    firmware_version=c.firmware.version,
                )
            )
            if c.state == "rolling_back":
                campaigns.order_rollback(c, t, changes)
        case RolledBack(version=version):
            campaigns.move(c, t, "rolled_back", changes, error="")
            changes.publish(
                UpdateRolledBack(
                    audit=frame,
                    correlation_id=c.correlation_id,
                    campaign_id=c.campaign_id,
                    device_id=t.device_id,
                    firmware_version=version,
                )
            )
        case Failed():
            campaigns.fail(c, t, verdict, changes, frame)
