"""The rules of OTA campaign states, without a hub: which operator actions a campaign's state
allows, what a frame's report or silence does to its target, and when a campaign releases
its next batch, pauses or completes."""

from __future__ import annotations

import pytest

import wire
from actors.errors import Conflict
from actors.ota import CampaignState, DeviceState, Firmware
from actors.ota._rollout import ROLLBACK, UPDATE, Campaign, Target
from actors.ota._states import (
    Action,
    Advanced,
    Alive,
    Completed,
    Failed,
    Ignored,
    Progressed,
    RolledBack,
    check_allowed,
    judge,
    timed_out,
)

CAMPAIGN_STATES: tuple[CampaignState, ...] = (
    "draft",
    "running",
    "paused",
    "completed",
    "cancelled",
    "rolling_back",
    "rolled_back",
)
ACTIONS_APPLY_IN: dict[Action, set[CampaignState]] = {
    "start": {"draft"},
    "pause": {"running"},
    "resume": {"paused"},
    "cancel": {"draft", "running", "paused"},
    "rollback": {"running", "paused", "completed", "cancelled"},
    "retry-failed": {"running", "paused", "completed"},
}
NEW = "2.0.0"
OLD = "1.0.0"


def firmware() -> Firmware:
    return Firmware(
        firmware_id="fw",
        version=NEW,
        model="frame-10",
        min_hw_version="1.0",
        notes="",
        sha256="0" * 64,
        size=1,
        file_name="frame-10-2.0.0.bin",
        uploaded_at="2024-01-01T00:00:00Z",
        uploaded_by=None,
    )


def campaign(
    frames: int,
    *,
    batch_size: int = 2,
    success_threshold: float = 1.0,
    failure_threshold: int | None = None,
    failure_threshold_percent: float | None = None,
) -> Campaign:
    c = Campaign(
        campaign_id="c1",
        name="spring",
        firmware=firmware(),
        state="running",
        batch_size=batch_size,
        current_batch=0,
        success_threshold=success_threshold,
        failure_threshold=failure_threshold,
        failure_threshold_percent=failure_threshold_percent,
        correlation_id="corr",
        created_by=None,
        created_at="2024-01-01T00:00:00Z",
        updated_at="2024-01-01T00:00:00Z",
    )
    for position in range(frames):
        c.add(Target(device_id=f"f{position}", position=position))
    return c


def updating(state: DeviceState, progress: float | None = None) -> Target:
    return Target(
        device_id="f0",
        position=0,
        state=state,
        progress=progress,
        command=UPDATE,
        command_id="cmd",
        previous_version=OLD,
    )


def rolling_back() -> Target:
    return Target(
        device_id="f0",
        position=0,
        state="rolling_back",
        command=ROLLBACK,
        command_id="cmd",
        previous_version=OLD,
    )


def report(
    state: wire.OtaState,
    *,
    frame_id: str = "f0",
    progress: float | None = None,
    version: str | None = None,
    error: str | None = None,
) -> wire.OtaProgress:
    return wire.OtaProgress(
        frame_id=frame_id,
        state=state,
        timestamp="2024-01-01T00:00:00Z",
        command_id="cmd",
        progress=progress,
        version=version,
        error=error,
    )


# -- operator actions --------------------------------------------------------------------------


@pytest.mark.parametrize("action", sorted(ACTIONS_APPLY_IN))
def test_each_action_applies_only_in_its_states(action: Action) -> None:
    for state in CAMPAIGN_STATES:
        if state in ACTIONS_APPLY_IN[action]:
            check_allowed("c1", state, action)
        else:
            with pytest.raises(Conflict):
                check_allowed("c1", state, action)


def test_a_refused_action_names_the_states_it_applies_to() -> None:
    with pytest.raises(Conflict) as refused:
        check_allowed("c1", "completed", "cancel")
    assert str(refused.value) == (
        "campaign c1 is completed; cancel applies to a draft, running or paused campaign"
    )
    with pytest.raises(Conflict) as refused:
        check_allowed("c1", "draft", "pause")
    assert str(refused.value) == "campaign c1 is draft; pause applies to a running campaign"


# -- an update's reports -----------------------------------------------------------------------


def test_a_report_from_another_frame_is_ignored() -> None:
    assert judge(updating("notified"), report("completed", frame_id="f9"), NEW) == Ignored(
        "wrong_frame"
    )


def test_an_update_moves_forward_through_download_and_install() -> None:
    assert judge(updating("notified"), report("downloading", progress=0.25), NEW) == Advanced(
        "downloading", 0.25
    )
    assert judge(updating("notified"), report("downloading"), NEW) == Advanced("downloading", 0.0)
    assert judge(updating("downloading", 0.5), report("downloaded"), NEW) == Advanced(
        "downloaded", 1.0
    )
    assert judge(updating("downloaded"), report("installing"), NEW) == Advanced("installing", 1.0)


def test_a_report_may_skip_states_forward() -> None:
    assert judge(updating("notified"), report("completed", version=NEW), NEW) == Completed()


def test_reported_progress_is_kept_between_0_and_1() -> None:
    assert judge(updating("notified"), report("downloading", progress=7.0), NEW) == Advanced(
        "downloading", 1.0
    )
    assert judge(updating("notified"), report("downloading", progress=-1.0), NEW) == Advanced(
        "downloading", 0.0
    )
    assert judge(updating("downloading", 0.5), report("downloading", progress=3.0), NEW) == (
        Progressed(1.0)
    )


def test_more_progress_within_a_state_is_remembered_and_less_is_ignored() -> None:
    target = updating("downloading", 0.5)
    assert judge(target, report("downloading", progress=0.75), NEW) == Progressed(0.75)
    assert judge(target, report("downloading", progress=0.5), NEW) == Ignored("not_forward")
    assert judge(target, report("downloading", progress=0.25), NEW) == Ignored("not_forward")
    assert judge(target, report("downloading"), NEW) == Ignored("not_forward")


def test_a_report_never_moves_a_target_back_or_between_ends() -> None:
    assert judge(updating("installing"), report("downloading", progress=0.9), NEW) == Ignored(
        "not_forward"
    )
    assert judge(updating("installing"), report("downloaded"), NEW) == Ignored("not_forward")
    assert judge(updating("installing"), report("installing"), NEW) == Ignored("not_forward")


def test_completion_on_another_version_is_a_failure() -> None:
    verdict = judge(updating("installing"), report("completed", version="1.5.0"), NEW)
    assert verdict == Failed(error="the frame reports version 1.5.0 after the update to 2.0.0")
    assert judge(updating("installing"), report("completed"), NEW) == Completed()


def test_a_failure_keeps_the_frames_reason_or_says_one() -> None:
    assert judge(updating("downloading"), report("failed", error="bad signature"), NEW) == (
        Failed(error="bad signature")
    )
    assert judge(updating("downloading"), report("failed"), NEW) == Failed(
        error="the frame reported a failure"
    )


def test_a_frame_back_on_its_old_firmware_ends_rolled_back() -> None:
    assert judge(updating("installing"), report("rolled_back"), NEW) == Failed(
        error="the frame went back to its previous firmware", rolled_back=True
    )


# -- a rollback's reports ----------------------------------------------------------------------


def test_a_rollback_ends_on_the_version_the_frame_reports_or_ran_before() -> None:
    assert judge(rolling_back(), report("rolled_back", version="1.2.0"), NEW) == RolledBack("1.2.0")
    assert judge(rolling_back(), report("rolled_back"), NEW) == RolledBack(OLD)
    unknown = rolling_back()
    unknown.previous_version = None
    assert judge(unknown, report("rolled_back"), NEW) == RolledBack("unknown")


def test_a_failed_rollback_leaves_the_frame_on_the_campaigns_firmware() -> None:
    assert judge(rolling_back(), report("failed", error="no slot"), NEW) == Failed(
        error="rollback failed: no slot", running=NEW
    )
    assert judge(rolling_back(), report("failed"), NEW) == Failed(
        error="rollback failed: no reason given", running=NEW
    )


def test_other_reports_during_a_rollback_only_show_the_frame_alive() -> None:
    assert judge(rolling_back(), report("downloading", progress=0.5), NEW) == Alive()
    assert judge(rolling_back(), report("completed", version=OLD), NEW) == Alive()


# -- silence -----------------------------------------------------------------------------------


def test_silence_fails_an_update_and_a_rollback_differently() -> None:
    assert timed_out(updating("downloading"), 30.0, NEW) == Failed(error="no progress for 30 s")
    assert timed_out(rolling_back(), 2.5, NEW) == Failed(
        error="rollback failed: no progress for 2.5 s", running=NEW
    )


# -- a campaign's batches ----------------------------------------------------------------------


def finish(c: Campaign, device_id: str, state: DeviceState) -> None:
    target = c.by_device[device_id]
    target.command = UPDATE
    c.set_state(target, state)


def test_the_next_batch_is_released_once_enough_of_this_one_completed() -> None:
    c = campaign(4, batch_size=2, success_threshold=0.5)
    assert c.batch_step() == ("wait", "")
    finish(c, "f0", "completed")
    assert c.batch_step() == ("release", "")


def test_a_batch_short_of_the_threshold_waits_while_frames_are_updating() -> None:
    c = campaign(4, batch_size=2, success_threshold=1.0)
    finish(c, "f0", "completed")
    finish(c, "f1", "downloading")
    assert c.batch_step() == ("wait", "")


def test_a_finished_batch_with_unacknowledged_failures_stalls() -> None:
    c = campaign(4, batch_size=2, success_threshold=1.0)
    finish(c, "f0", "completed")
    finish(c, "f1", "failed")
    step, why = c.batch_step()
    assert step == "stall"
    assert why == (
        "batch 1 of 2 ended with 1 of 2 frames updated, below the success threshold (2 needed)"
    )
    c.acknowledge_failures()
    assert c.batch_step() == ("release", "")


def test_the_last_batch_completes_the_campaign_once_every_frame_is_done() -> None:
    c = campaign(2, batch_size=2)
    finish(c, "f0", "completed")
    assert c.batch_step() == ("wait", "")
    finish(c, "f1", "failed")
    assert c.batch_step() == ("complete", "")


def test_cancelled_frames_do_not_count_against_a_batch() -> None:
    c = campaign(4, batch_size=2, success_threshold=1.0)
    finish(c, "f0", "completed")
    c.set_state(c.by_device["f1"], "cancelled")
    assert c.batch_step() == ("release", "")


# -- failure thresholds ------------------------------------------------------------------------


def test_failures_reaching_the_count_threshold_pause_the_campaign() -> None:
    c = campaign(6, batch_size=6, failure_threshold=2)
    finish(c, "f0", "failed")
    assert c.failure_reason() is None
    finish(c, "f1", "rolled_back")
    assert c.failure_reason() == "2 failed updates reached the failure threshold of 2"


def test_the_percent_threshold_is_a_share_of_the_released_frames() -> None:
    c = campaign(10, batch_size=4, failure_threshold_percent=50.0)
    finish(c, "f0", "failed")
    assert c.failure_reason() is None
    finish(c, "f1", "failed")
    assert c.failure_reason() == (
        "2 of 4 released frames failed (50%), at or above the failure threshold of 50%"
    )


def test_acknowledged_failures_and_failed_rollbacks_do_not_count() -> None:
    c = campaign(4, batch_size=4, failure_threshold=1)
    finish(c, "f0", "failed")
    assert c.failure_reason() is not None
    assert [t.device_id for t in c.acknowledge_failures()] == ["f0"]
    assert c.failure_reason() is None
    back = c.by_device["f1"]
    back.command = ROLLBACK
    c.set_state(back, "failed")
    assert c.failure_reason() is None
    finish(c, "f0", "queued")
    finish(c, "f0", "failed")
    assert c.failure_reason() == "1 failed update reached the failure threshold of 1"
