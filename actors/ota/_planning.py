"""Which frames a new campaign updates, and the campaign as it is created (a draft).

Pure: the caller asks the registry for the paired frames and hands them over.
"""

from __future__ import annotations

import logging

from actors.devices import Device, version_key
from actors.errors import Invalid, NotFound
from actors.events import new_id, utc_now
from actors.text import check_text

from ._checks import MAX_BATCH_SIZE, MAX_NAME_LENGTH
from ._messages import CreateCampaign, Firmware
from ._rollout import Campaign, Target

log = logging.getLogger("framehub.ota")


def check_request(message: CreateCampaign) -> str:
    """The campaign's name once ``message``'s own fields are valid (else ``Invalid``), before
    anyone is asked which frames there are."""
    name = check_text(message.name, "name", MAX_NAME_LENGTH)
    if not 1 <= message.batch_size <= MAX_BATCH_SIZE:
        raise Invalid(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
    if not 0.0 <= message.success_threshold <= 1.0:
        raise Invalid("success_threshold must be a fraction between 0 and 1")
    if message.failure_threshold is not None and message.failure_threshold < 1:
        raise Invalid("failure_threshold must be at least 1 (or null for none)")
    percent = message.failure_threshold_percent
    if percent is not None and not 0.0 <= percent <= 100.0:
        raise Invalid("failure_threshold_percent must be between 0 and 100 (or null)")
    if not message.models and not message.device_ids:
        raise Invalid("name the targets: models and/or device_ids")
    return name


def requested(
    message: CreateCampaign, name: str, firmware: Firmware, devices: list[Device]
) -> Campaign:
    """The campaign ``message`` asks for among the paired ``devices``: ``NotFound`` for a
    named frame that is not paired, ``Invalid`` when none of the targets needs the update."""
    known = {d.device_id: d for d in devices}
    missing = [i for i in dict.fromkeys(message.device_ids) if i not in known]
    if missing:
        raise NotFound(f"no device {', '.join(missing[:5])}{' ...' * (len(missing) > 5)}")
    if message.models:
        models, named = set(message.models), set(message.device_ids)
        chosen = [d for d in devices if d.model in models or d.device_id in named]
    else:
        chosen = [known[i] for i in dict.fromkeys(message.device_ids)]
    targets, why = _compatible(firmware, chosen)
    if not targets:
        raise Invalid(
            f"no frame to update to {firmware.model} {firmware.version} among the "
            f"{len(chosen)} targeted: {why}"
        )
    return _new_campaign(
        name=name,
        firmware=firmware,
        devices=targets,
        batch_size=message.batch_size,
        success_threshold=message.success_threshold,
        failure_threshold=message.failure_threshold,
        failure_threshold_percent=message.failure_threshold_percent,
        correlation_id=message.correlation_id or new_id(),
        created_by=message.user_id,
    )


def automatic(
    firmware: Firmware, devices: list[Device], batch_size: int, correlation_id: str
) -> Campaign | None:
    """The campaign ``auto_campaign`` starts for a new firmware: every paired frame it suits,
    all of a batch completed before the next, paused at 20% failed; None (logged) when no
    frame needs it."""
    targets, why = _compatible(firmware, [d for d in devices if d.model == firmware.model])
    if not targets:
        log.info("no automatic campaign for %s %s: %s", firmware.model, firmware.version, why)
        return None
    return _new_campaign(
        name=f"automatic: {firmware.model} {firmware.version}",
        firmware=firmware,
        devices=targets,
        batch_size=batch_size,
        success_threshold=1.0,
        failure_threshold=None,
        failure_threshold_percent=20.0,
        correlation_id=correlation_id,
        created_by=None,
    )


def _compatible(firmware: Firmware, devices: list[Device]) -> tuple[list[Device], str]:
    """The frames ``firmware`` suits (its model, at least its minimum hardware version) that
    do not run it already, and why the others were left out."""
    floor = version_key(firmware.min_hw_version)
    kept: list[Device] = []
    other_model = too_old = current = 0
    for device in devices:
        if device.model != firmware.model:
            other_model += 1
        elif version_key(device.hw_version) < floor:
            too_old += 1
        elif device.firmware_version == firmware.version:
            current += 1
        else:
            kept.append(device)
    reasons: list[str] = []
    if other_model:
        reasons.append(f"{other_model} of another model than {firmware.model}")
    if too_old:
        reasons.append(f"{too_old} with hardware older than {firmware.min_hw_version}")
    if current:
        reasons.append(f"{current} already running {firmware.version}")
    return kept, "; ".join(reasons) or "no paired frame matches the targets"


def _new_campaign(
    *,
    name: str,
    firmware: Firmware,
    devices: list[Device],
    batch_size: int,
    success_threshold: float,
    failure_threshold: int | None,
    failure_threshold_percent: float | None,
    correlation_id: str,
    created_by: str | None,
) -> Campaign:
    now = utc_now()
    campaign = Campaign(
        campaign_id=new_id(),
        name=name,
        firmware=firmware,
        state="draft",
        batch_size=batch_size,
        current_batch=0,
        success_threshold=success_threshold,
        failure_threshold=failure_threshold,
        failure_threshold_percent=failure_threshold_percent,
        correlation_id=correlation_id,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    for position, device in enumerate(devices):
        campaign.add(Target(device_id=device.device_id, position=position, updated_at=now))
    return campaign
