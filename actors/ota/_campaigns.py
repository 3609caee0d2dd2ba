"""Every campaign in memory and each change to one: a target's move (written with a history
entry, its command followed while in flight), a pause, the end, and the evaluation after every
change that applies the thresholds, releases batches and sends what is owed to frames online.

Nothing here commits: each change goes to the ``Changes`` of the caller's transaction, which
also carries the events it publishes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from actors.errors import NotFound
from actors.events import (
    Audit,
    CampaignCompleted,
    CampaignCreated,
    CampaignPaused,
    UpdateCancelled,
    UpdateFailed,
    new_id,
    utc_now,
)
from actors.http import PublicUrl
from actors.store import SortedRecords

from ._commands import Commands
from ._messages import CampaignPage, CampaignState, DeviceState
from ._rollout import ROLLBACK, UPDATE, Campaign, Target
from ._states import Failed
from ._tables import Changes

log = logging.getLogger("framehub.ota")

RunningVersions = Callable[[list[str]], Awaitable[dict[str, str | None]]]
"""The firmware each of some frames runs now, None where nobody knows."""

_SENDING: tuple[CampaignState, ...] = ("running", "rolling_back")


class Campaigns:
    """The campaigns by id, which frames are online, and the commands in flight."""

    def __init__(
        self, commands: Commands, public_url: PublicUrl, running_versions: RunningVersions
    ) -> None:
        self.commands = commands
        self._public_url = public_url
        self._running_versions = running_versions
        self._campaigns: SortedRecords[Campaign, tuple[str, str]] = SortedRecords(
            lambda c: (c.created_at, c.campaign_id), tuple[str, str], newest_first=True
        )
        self._online: set[str] = set()

    def restore(self, campaigns: list[Campaign], online: set[str]) -> None:
        """Start again from what the tables hold: the commands in flight are followed anew
        and every frame owed a command is waiting for it."""
        self._campaigns.clear()
        self._campaigns.update((c.campaign_id, c) for c in campaigns)
        self._online = online
        self.commands.restore(campaigns)
        for c in campaigns:
            c.waiting.clear()
            c.waiting.update(
                t.device_id for t in c.targets if t.state == "rolling_back" and not t.in_flight
            )
            if c.state in ("running", "paused"):
                end = (c.current_batch + 1) * c.batch_size
                c.waiting.update(t.device_id for t in c.targets[:end] if t.state == "queued")

    def get(self, campaign_id: str) -> Campaign:
        """The campaign ``campaign_id``, or ``NotFound``."""
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
        return campaign

    def page(self, limit: int, cursor: str | None) -> CampaignPage:
        """Newest first."""
        campaigns, next_cursor = self._campaigns.page(limit, cursor)
        return CampaignPage(items=[c.summary() for c in campaigns], next_cursor=next_cursor)

    def add(self, c: Campaign, changes: Changes, audit: Audit) -> None:
        """A new campaign (``campaign.created``), a draft until it is started."""
        self._campaigns[c.campaign_id] = c
        for t in c.targets:
            changes.target(c, t)
        changes.publish(
            CampaignCreated(
                audit=audit,
                correlation_id=c.correlation_id,
                campaign_id=c.campaign_id,
                firmware_id=c.firmware.firmware_id,
                device_ids=[t.device_id for t in c.targets],
                name=c.name,
                version=c.firmware.version,
            )
        )
        log.info(
            "campaign %s (%s) created: %s %s to %d frames in batches of %d",
            c.campaign_id,
            c.name,
            c.firmware.model,
            c.firmware.version,
            len(c.targets),
            c.batch_size,
        )

    # -- a target's changes --------------------------------------------------------------------

    def move(
        self,
        c: Campaign,
        t: Target,
        state: DeviceState,
        changes: Changes,
        *,
        error: str | None = None,
    ) -> None:
        """Put ``t`` in ``state`` (with a history entry) and follow its command."""
        c.set_state(t, state)
        if error is not None:
            t.error = error
        t.updated_at = c.updated_at = utc_now()
        self.commands.follow(c, t)
        changes.target(c, t)

    def fail(self, c: Campaign, t: Target, failed: Failed, changes: Changes, audit: Audit) -> None:
        """``t``'s command failed (``update.failed``)."""
        state: DeviceState = "rolled_back" if failed.rolled_back else "failed"
        self.move(c, t, state, changes, error=failed.error)
        changes.publish(
            UpdateFailed(
                audit=audit,
                correlation_id=c.correlation_id,
                campaign_id=c.campaign_id,
                device_id=t.device_id,
                error=failed.error,
                rolled_back=failed.rolled_back,
                firmware_version=failed.running or t.previous_version,
            )
        )

    def order_rollback(self, c: Campaign, t: Target, changes: Changes) -> None:
        """``t`` completed the update in a campaign being rolled back: it is owed a rollback."""
        self.move(c, t, "rolling_back", changes)
        c.waiting.add(t.device_id)

    # -- a campaign's changes ------------------------------------------------------------------

    def pause(
        self, c: Campaign, changes: Changes, audit: Audit, reason: str, *, automatic: bool
    ) -> None:
        c.state = "paused"
        c.pause_reason = reason
        c.updated_at = utc_now()
        changes.campaign(c)
        changes.publish(
            CampaignPaused(
                audit=audit,
                correlation_id=c.correlation_id,
                campaign_id=c.campaign_id,
                reason=reason,
                automatic=automatic,
            )
        )
        log.info("campaign %s paused: %s", c.campaign_id, reason)

    def _finish(self, c: Campaign, state: CampaignState, changes: Changes) -> None:
        c.state = state
        c.finished_at = c.updated_at = utc_now()
        c.pause_reason = ""
        c.waiting.clear()
        changes.campaign(c)
        counts = c.counts
        changes.publish(
            CampaignCompleted(
                audit=Audit.system("ota"),
                correlation_id=c.correlation_id,
                campaign_id=c.campaign_id,
                completed=counts["completed"],
                failed=counts["failed"],
                cancelled=counts["cancelled"],
                rolled_back=counts["rolled_back"],
            )
        )
        log.info("campaign %s is %s: %s", c.campaign_id, state, dict(+counts))

    async def evaluate(self, c: Campaign, changes: Changes) -> None:
        """Apply the thresholds after a change, release batches, send what is owed."""
        if c.state == "running":
            while True:
                reason = c.failure_reason()
                if reason is not None:
                    self.pause(c, changes, Audit.system("ota"), reason, automatic=True)
                    return
                step, why = c.batch_step()
                if step == "release":
                    c.release(c.current_batch + 1)
                    changes.campaign(c)
                    log.info(
                        "campaign %s released batch %d of %d",
                        c.campaign_id,
                        c.current_batch + 1,
                        c.batches,
                    )
                    continue
                if step == "complete":
                    self._finish(c, "completed", changes)
                    return
                if step == "stall":
                    self.pause(c, changes, Audit.system("ota"), why, automatic=True)
                    return
                break
            await self._send_commands(c, changes)
        elif c.state == "rolling_back":
            if c.all_final():
                self._finish(c, "rolled_back", changes)
            else:
                await self._send_commands(c, changes)
        elif c.state == "cancelled" and c.finished_at is None and c.all_final():
            self._finish(c, "cancelled", changes)

    async def public_url_known(self, resend: bool, changes: Changes) -> None:
        """Commands can go out now: with ``resend``, every command in flight again (see
        the actor's docstring), then what each campaign owes."""
        if resend:
            self.commands.resend(self._public_url.value, changes)
        for c in list(self._campaigns.values()):
            await self.evaluate(c, changes)

    # -- sending -------------------------------------------------------------------------------

    async def _send_commands(self, c: Campaign, changes: Changes) -> None:
        """Send the commands ``c`` owes to frames that are online, in rollout order."""
        if c.state not in _SENDING or not c.waiting:
            return
        base_url = self._public_url.value
        if not base_url:
            return  # the gateway is not listening yet: public_url_known sends them
        ready = sorted(
            (c.by_device[d] for d in c.waiting if d in self._online), key=lambda t: t.position
        )
        updates = [t.device_id for t in ready if c.state == "running" and t.state == "queued"]
        running = await self._running_versions(updates) if updates else {}
        for t in ready:
            c.waiting.discard(t.device_id)
            if c.state == "running" and t.state == "queued":
                self._send_update(c, t, base_url, running.get(t.device_id), changes)
            elif c.state == "rolling_back" and t.state == "rolling_back" and not t.in_flight:
                self._send_rollback(c, t, changes)

    def _send_update(
        self, c: Campaign, t: Target, base_url: str, running: str | None, changes: Changes
    ) -> None:
        """Notify ``t``; ``running`` is the firmware it runs now (a rollback returns to it)."""
        if t.previous_version is None or running not in (None, c.firmware.version):
            t.previous_version = running
        t.command, t.command_id = UPDATE, new_id()
        t.attempts += 1
        t.progress = None
        self.move(c, t, "notified", changes, error="")
        self.commands.issue(c, t, base_url, changes)

    def _send_rollback(self, c: Campaign, t: Target, changes: Changes) -> None:
        t.command, t.command_id = ROLLBACK, new_id()
        t.progress = None
        self.move(c, t, "rolling_back", changes)
        self.commands.issue(c, t, self._public_url.value, changes)

    # -- frames' presence ----------------------------------------------------------------------

    async def frame_online(self, device_id: str, changes: Changes) -> None:
        """The frame is online: the commands it is owed go out."""
        self._online.add(device_id)
        changes.presence(device_id, True)
        for c in list(self._campaigns.values()):
            if device_id in c.waiting:
                await self._send_commands(c, changes)

    def frame_offline(self, device_id: str, changes: Changes) -> None:
        """Commands wait for the frame; those in flight keep their deadline."""
        self._online.discard(device_id)
        changes.presence(device_id, False)

    async def frame_deleted(self, device_id: str, changes: Changes) -> None:
        """The frame leaves every open campaign it has not finished (cancelled)."""
        self._online.discard(device_id)
        changes.presence(device_id, None)
        for c in list(self._campaigns.values()):
            t = c.by_device.get(device_id)
            if t is None or t.final or not c.open:
                continue
            self.move(c, t, "cancelled", changes, error="device deleted")
            c.waiting.discard(device_id)
            changes.publish(
                UpdateCancelled(
                    audit=Audit.system("ota"),
                    correlation_id=c.correlation_id,
                    campaign_id=c.campaign_id,
                    device_id=device_id,
                )
            )
            await self.evaluate(c, changes)
