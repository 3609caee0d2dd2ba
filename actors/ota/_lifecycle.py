"""What operators do to a campaign: start, pause, resume (acknowledging the failures so far),
cancel, roll back, retry the failed frames.

Each action applies only in the states ``_states.allowed`` names (else ``Conflict``), changes
the campaign through ``Campaigns`` in the caller's transaction and evaluates it again.
"""

from __future__ import annotations

import logging

from actors.errors import Conflict
from actors.events import (
    Audit,
    CampaignStarted,
    RollbackInitiated,
    UpdateCancelled,
    utc_now,
)

from ._campaigns import Campaigns
from ._messages import (
    CampaignAction,
    CancelCampaign,
    PauseCampaign,
    ResumeCampaign,
    RetryFailed,
    RollbackCampaign,
    StartCampaign,
)
from ._rollout import FAILURES, Campaign
from ._states import check_allowed
from ._tables import Changes

log = logging.getLogger("framehub.ota")


async def act(
    campaigns: Campaigns, c: Campaign, action: CampaignAction, changes: Changes, audit: Audit
) -> None:
    """Carry out ``action`` on ``c``."""
    match action:
        case StartCampaign():
            await start(campaigns, c, changes, audit)
        case PauseCampaign():
            check_allowed(c.campaign_id, c.state, "pause")
            campaigns.pause(c, changes, audit, "paused by an operator", automatic=False)
        case ResumeCampaign():
            await _resume(campaigns, c, changes, audit)
        case CancelCampaign():
            await _cancel(campaigns, c, changes, audit)
        case RollbackCampaign():
            await _rollback(campaigns, c, changes, audit)
        case RetryFailed():
            await _retry(campaigns, c, changes, audit)


async def start(campaigns: Campaigns, c: Campaign, changes: Changes, audit: Audit) -> None:
    """The draft ``c`` runs: its first batch is released."""
    check_allowed(c.campaign_id, c.state, "start")
    c.state = "running"
    c.started_at = c.updated_at = utc_now()
    c.release(0)
    changes.campaign(c)
    changes.publish(
        CampaignStarted(audit=audit, correlation_id=c.correlation_id, campaign_id=c.campaign_id)
    )
    log.info("campaign %s started", c.campaign_id)
    await campaigns.evaluate(c, changes)


async def _resume(campaigns: Campaigns, c: Campaign, changes: Changes, audit: Audit) -> None:
    check_allowed(c.campaign_id, c.state, "resume")
    for t in c.acknowledge_failures():
        changes.target(c, t, history=False)
    _run_again(c, changes, audit)
    await campaigns.evaluate(c, changes)


def _run_again(c: Campaign, changes: Changes, audit: Audit) -> None:
    c.state = "running"
    c.pause_reason = ""
    c.finished_at = None
    c.updated_at = utc_now()
    changes.campaign(c)
    changes.publish(
        CampaignStarted(
            audit=audit,
            correlation_id=c.correlation_id,
            campaign_id=c.campaign_id,
            resumed=True,
        )
    )
    log.info("campaign %s runs again", c.campaign_id)


async def _cancel(campaigns: Campaigns, c: Campaign, changes: Changes, audit: Audit) -> None:
    """Queued targets are cancelled; updates in flight are followed to their end."""
    check_allowed(c.campaign_id, c.state, "cancel")
    for t in c.targets:
        if t.state == "queued":
            campaigns.move(c, t, "cancelled", changes, error="the campaign was cancelled")
    c.waiting.clear()
    c.state = "cancelled"
    c.pause_reason = ""
    changes.campaign(c)
    changes.publish(
        UpdateCancelled(audit=audit, correlation_id=c.correlation_id, campaign_id=c.campaign_id)
    )
    log.info("campaign %s cancelled", c.campaign_id)
    await campaigns.evaluate(c, changes)


async def _rollback(campaigns: Campaigns, c: Campaign, changes: Changes, audit: Audit) -> None:
    """Queued targets are cancelled; every completed one is owed a rollback."""
    check_allowed(c.campaign_id, c.state, "rollback")
    completed = [t for t in c.targets if t.state == "completed"]
    queued = [t for t in c.targets if t.state == "queued"]
    for t in queued:
        campaigns.move(c, t, "cancelled", changes, error="the campaign was rolled back")
    c.waiting.clear()
    c.state = "rolling_back"
    c.pause_reason = ""
    c.finished_at = None
    changes.campaign(c)
    changes.publish(
        RollbackInitiated(
            audit=audit,
            correlation_id=c.correlation_id,
            campaign_id=c.campaign_id,
            device_ids=[t.device_id for t in completed],
        )
    )
    if queued:
        changes.publish(
            UpdateCancelled(audit=audit, correlation_id=c.correlation_id, campaign_id=c.campaign_id)
        )
    for t in completed:
        campaigns.order_rollback(c, t, changes)
    log.info("campaign %s rolls back %d frames", c.campaign_id, len(completed))
    await campaigns.evaluate(c, changes)


async def _retry(campaigns: Campaigns, c: Campaign, changes: Changes, audit: Audit) -> None:
    """The failed targets are queued again; the campaign runs (again)."""
    check_allowed(c.campaign_id, c.state, "retry-failed")
    failed = [t for t in c.targets if t.state in FAILURES]
    if not failed:
        raise Conflict(f"campaign {c.campaign_id} has no failed frames to retry")
    for t in failed:
        campaigns.move(c, t, "queued", changes, error="")
        c.waiting.add(t.device_id)
    if c.state != "running":
        _run_again(c, changes, audit)
    await campaigns.evaluate(c, changes)
