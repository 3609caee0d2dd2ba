"""How each event the notifier follows is told to a person: a title, sentences, a severity.

Events carry ids; the words come from what the notifier remembers of earlier events
(campaign names and versions from ``campaign.created``, alert rules from
``alert.rule.created``) and from the registry (frame names). Whatever is unknown is named by
its id, so an odd event still reads sensibly.
"""

from __future__ import annotations

import msgspec

from actors.events import (
    AlertAcknowledged,
    AlertResolved,
    AlertTriggered,
    CampaignCompleted,
    CampaignCreated,
    CampaignPaused,
    CampaignStarted,
    Event,
    RollbackInitiated,
    UpdateCancelled,
    UpdateFailed,
)

from ._messages import SEVERITIES, Severity

MAX_DETAIL = 500
"""Longest piece of an event's own text (a reason, an error, a note) quoted in a body."""


class CampaignFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What ``campaign.created`` said about a campaign."""

    campaign_id: str
    name: str
    version: str
    targets: int


class RuleFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What ``alert.rule.created`` said about an alert rule."""

    rule_id: str
    metric: str
    comparison: str
    threshold: float


class Described(msgspec.Struct, frozen=True, kw_only=True):
    """An event in words, with the ids of what it is about."""

    title: str
    body: str
    severity: Severity
    campaign_id: str | None = None
    device_id: str | None = None
    alert_id: str | None = None


def subject_device(event: Event) -> str | None:
    """The frame an event is about, if one: its name goes into the words."""
    device_id = getattr(event, "device_id", None)
    return device_id if isinstance(device_id, str) else None


def describe(
    event: Event,
    *,
    campaign: CampaignFacts | None = None,
    rule: RuleFacts | None = None,
    frame: str = "",
) -> Described | None:
    """``event`` told to a person, or None for an event nobody is told about.

    ``campaign`` and ``rule`` are what is known of the event's campaign or alert rule,
    ``frame`` the name of its frame (else its id is used).
    """
    match event:
        case CampaignCreated(campaign_id=campaign_id, device_ids=device_ids):
            label = _campaign_label(campaign_id, campaign)
            version = event.version or (campaign.version if campaign else "")
            target = f"firmware {version}" if version else "a firmware update"
            return Described(
                title=f"{label} created",
                body=f"{label} created: {target} for {_frames(len(device_ids))}.",
                severity="info",
                campaign_id=campaign_id,
            )
        case CampaignStarted(campaign_id=campaign_id, resumed=True):
            label = _campaign_label(campaign_id, campaign)
            return Described(
                title=f"{label} resumed",
                body=f"{label} resumed.",
                severity="info",
                campaign_id=campaign_id,
            )
        case CampaignStarted(campaign_id=campaign_id):
            label = _campaign_label(campaign_id, campaign)
            if campaign is not None and campaign.version:
                body = f"{label} started: updating {_frames(campaign.targets)} to "
                body += f"{campaign.version}."
            else:
                body = f"{label} started."
            return Described(
                title=f"{label} started", body=body, severity="info", campaign_id=campaign_id
            )
        case CampaignPaused(campaign_id=campaign_id, reason=reason, automatic=automatic):
            label = _campaign_label(campaign_id, campaign)
            why = _detail(reason) or ("paused automatically" if automatic else "by an operator")
            return Described(
                title=f"{label} paused",
                body=f"{label} paused: {why.rstrip('.')}.",
                severity="warning" if automatic else "info",
                campaign_id=campaign_id,
            )
        case CampaignCompleted(campaign_id=campaign_id):
            label = _campaign_label(campaign_id, campaign)
            counts = [
                (event.completed, "completed"),
                (event.failed, "failed"),
                (event.cancelled, "cancelled"),
                (event.rolled_back, "rolled back"),
            ]
            total = sum(count for count, _ in counts)
            outcome = ", ".join(f"{count} {word}" for count, word in counts if count)
            body = f"{label} finished: {outcome or 'no frames'} (of {_frames(total)})."
            if event.completed == total and total:
                version = f" {campaign.version}" if campaign and campaign.version else ""
                body = f"{label} finished: all {_frames(total)} updated to firmware{version}."
            return Described(
                title=f"{label} finished",
                body=body,
                severity="warning" if event.failed or event.rolled_back else "info",
                campaign_id=campaign_id,
            )
        case UpdateFailed(campaign_id=campaign_id, device_id=device_id, error=error):
            label = _campaign_label(campaign_id, campaign)
            name = frame or device_id
            version = f" to {campaign.version}" if campaign and campaign.version else ""
            reason = _detail(error).rstrip(".") or "no reason given"
            body = f"Update{version} failed on frame {name} ({_lower(label)}): {reason}"
            if event.rolled_back:
                body += "; the frame rolled back"
                if event.firmware_version:
                    body += f" and still runs {event.firmware_version}"
            return Described(
                title=f"Update failed on frame {name}",
                body=f"{body}.",
                severity="warning",
                campaign_id=campaign_id,
                device_id=device_id,
            )
        case UpdateCancelled(campaign_id=campaign_id, device_id=None):
            label = _campaign_label(campaign_id, campaign)
            return Described(
                title=f"{label} cancelled",
                body=f"{label} cancelled: frames not yet updated keep their firmware.",
                severity="info",
                campaign_id=campaign_id,
            )
        case UpdateCancelled(campaign_id=campaign_id, device_id=str(device_id)):
            label = _campaign_label(campaign_id, campaign)
            name = frame or device_id
            return Described(
                title=f"Update cancelled on frame {name}",
                body=f"The update of frame {name} was cancelled ({_lower(label)}).",
                severity="info",
                campaign_id=campaign_id,
                device_id=device_id,
            )
        case RollbackInitiated(campaign_id=campaign_id, device_ids=device_ids):
            label = _campaign_label(campaign_id, campaign)
            return Described(
                title=f"{label} rolling back",
                body=f"{label} is rolling back {_frames(len(device_ids))} to their firmware "
                "before the update.",
                severity="warning",
                campaign_id=campaign_id,
            )
        case AlertTriggered(alert_id=alert_id, device_id=device_id):
            name = frame or device_id
            severity = _severity(event.severity)
            condition = f"{event.metric} {_number(event.value)}"
            if rule is not None:
                condition += f" {rule.comparison} {_number(rule.threshold)}"
            return Described(
                title=f"Alert on frame {name}: {event.metric} ({severity})",
                body=f"Alert: {condition} on frame {name} ({severity}).",
                severity=severity,
                device_id=device_id,
                alert_id=alert_id,
            )
        case AlertAcknowledged(alert_id=alert_id, device_id=device_id):
            name = frame or device_id
            what = _rule_label(rule)
            return Described(
                title=f"Alert acknowledged on frame {name}",
                body=f"Alert acknowledged: {what} on frame {name}.",
                severity="info",
                device_id=device_id,
                alert_id=alert_id,
            )
        case AlertResolved(alert_id=alert_id, device_id=device_id):
            name = frame or device_id
            what = _rule_label(rule)
            how = "automatically, the value recovered" if event.automatic else "by hand"
            note = _detail(event.note)
            if note:
                how += f": {note}"
            return Described(
                title=f"Alert resolved on frame {name}",
                body=f"Alert resolved: {what} on frame {name} ({how}).",
                severity="info",
                device_id=device_id,
                alert_id=alert_id,
            )
        case _:
            return None


def _campaign_label(campaign_id: str, campaign: CampaignFacts | None) -> str:
    if campaign is not None and campaign.name:
        return f"Campaign '{campaign.name}'"
    return f"Campaign {campaign_id}"


def _lower(label: str) -> str:
    return label[0].lower() + label[1:]


def _rule_label(rule: RuleFacts | None) -> str:
    if rule is None:
        return "the alert"
    return f"{rule.metric} {rule.comparison} {_number(rule.threshold)}"


def _frames(count: int) -> str:
    return f"{count} frame" if count == 1 else f"{count} frames"


def _number(value: float) -> str:
    return f"{value:g}"


def _severity(value: str) -> Severity:
    for severity in SEVERITIES:
        if value.lower() == severity:
            return severity
    return "warning"


def _detail(text: str) -> str:
    """An event's own words, on one line and not too long."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 1] + "…"
