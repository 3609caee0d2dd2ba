"""The console's commands: the same actor messages as the HTTP API, and fault rules."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeVar

from actors.accounts import AccountsMessage, Principal
from actors.devices import DeviceMessage, GetDevice
from actors.events import new_id
from actors.frames import FleetMessage, FrameDirectory, SendCommand
from actors.journal import KeeperMessage, ReplayDeadLetter
from actors.ota import (
    CampaignAction,
    CancelCampaign,
    OtaMessage,
    PauseCampaign,
    ResumeCampaign,
    RetryFailed,
    RollbackCampaign,
    StartCampaign,
)
from actors.telemetry import AcknowledgeAlert, ResolveAlert, TelemetryMessage
from supervision import ActorRef, FaultInjector

from ._protocol import Command, FaultInstalled, FaultRemoved

log = logging.getLogger("framehub.console")
_T = TypeVar("_T")

MAX_FAULT_DELAY_S = 60.0
"""The longest ``delay_s`` a console may give a fault rule."""
MAX_FAULT_CRASHES = 100
"""The most ``times`` a console's crash rule may fire; it must say how many."""

_CAMPAIGN_ACTIONS: dict[str, type[CampaignAction]] = {
    "campaign.start": StartCampaign,
    "campaign.pause": PauseCampaign,
    "campaign.resume": ResumeCampaign,
    "campaign.cancel": CancelCampaign,
    "campaign.rollback": RollbackCampaign,
    "campaign.retry-failed": RetryFailed,
}


@dataclass(frozen=True, slots=True)
class ConsolePeers:
    """The actors the console asks: who a token belongs to, the frames and their views,
    campaigns, alerts and dead letters."""

    accounts: ActorRef[AccountsMessage]
    devices: ActorRef[DeviceMessage]
    fleet: ActorRef[FleetMessage]
    frames: FrameDirectory
    ota: ActorRef[OtaMessage]
    telemetry: ActorRef[TelemetryMessage]
    journal: ActorRef[KeeperMessage]


async def carry_out(
    command: Command, principal: Principal, peers: ConsolePeers, faults: FaultInjector
) -> object:
    """Carry out a console ``command`` for ``principal``: its result, or the domain error (or
    ``ValueError`` for a command that lacks what its action needs) to answer it with."""
    action = command.action
    user_id = principal.id
    correlation_id = new_id()
    if action.startswith("frame."):
        frame_id = _required(command.frame_id, "frame_id")
        await peers.devices.ask(GetDevice(device_id=frame_id))  # NotFound if unknown
        return await peers.frames.get(frame_id).ask(
            SendCommand(
                command=action.removeprefix("frame."),
                file_id=command.file_id,
                user_id=user_id,
                correlation_id=correlation_id,
            ),
        )
    if action in _CAMPAIGN_ACTIONS:
        kind = _CAMPAIGN_ACTIONS[action]
        return await peers.ota.ask(
            kind(
                campaign_id=_required(command.campaign_id, "campaign_id"),
                user_id=user_id,
                correlation_id=correlation_id,
            ),
        )
    if action == "alert.acknowledge":
        return await peers.telemetry.ask(
            AcknowledgeAlert(
                alert_id=_required(command.alert_id, "alert_id"),
                user_id=user_id,
                correlation_id=correlation_id,
            ),
        )
    if action == "alert.resolve":
        return await peers.telemetry.ask(
            ResolveAlert(
                alert_id=_required(command.alert_id, "alert_id"),
                note=command.note,
                user_id=user_id,
                correlation_id=correlation_id,
            ),
        )
    if action == "fault.inject":
        rule = _required(command.fault, "fault")
        if rule.delay_s > MAX_FAULT_DELAY_S:
            # A delayed message is held even after its rule is removed: a long delay on
            # many actors would wedge them (and the hub) until it ran out.
            raise ValueError(f"delay_s must be at most {MAX_FAULT_DELAY_S:g} s")
        if rule.action == "crash" and not 1 <= (rule.times or 0) <= MAX_FAULT_CRASHES:
            # A crash rule without end would outlast every supervisor's restart budget
            # and stop the hub.
            raise ValueError(f"a crash rule needs times, 1 to {MAX_FAULT_CRASHES}")
        rule_id = faults.install(rule)
        log.warning("console %s injected fault %d: %r", principal.name, rule_id, rule)
        return FaultInstalled(rule_id=rule_id)
    if action == "fault.remove":
        rule_id = _required(command.rule_id, "rule_id")
        if not faults.remove(rule_id):
            raise ValueError(f"no fault rule {rule_id}")
        return FaultRemoved(rule_id=rule_id)
    # dead-letter.replay: the only action left
    return await peers.journal.ask(
        ReplayDeadLetter(letter_id=_required(command.letter_id, "letter_id")),
    )


def _required(value: _T | None, name: str) -> _T:
    if value is None:
        raise ValueError(f"this action needs {name}")
    return value
