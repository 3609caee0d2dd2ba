"""Alert rule evaluation as a pure function: for-duration, hysteresis, comparisons."""

from __future__ import annotations

import pytest

from actors.telemetry._messages import AlertRuleView, Comparison
from actors.telemetry._rules import Evaluation, RuleState, evaluate


def rule(
    comparison: Comparison = ">",
    threshold: float = 50.0,
    *,
    for_seconds: float = 0.0,
    clear_threshold: float | None = None,
) -> AlertRuleView:
    return AlertRuleView(
        rule_id="r1",
        metric="temperature_c",
        device_id=None,
        model=None,
        comparison=comparison,
        threshold=threshold,
        for_seconds=for_seconds,
        severity="warning",
        clear_threshold=clear_threshold,
        enabled=True,
        created_at="2024-01-01T00:00:00Z",
    )


def run(view: AlertRuleView, samples: list[tuple[float, float]]) -> list[Evaluation | None]:
    """Evaluate ``samples`` in order, opening alert ``a<n>`` on each trigger as the actor does."""
    state: RuleState | None = None
    outcomes = []
    for ts, value in samples:
        outcome = evaluate(view, state, ts, value)
        outcomes.append(outcome)
        if outcome is not None:
            state = outcome.state
            if outcome.decision == "trigger":
                state = state._replace(alert_id=f"a{len(outcomes)}")
    return outcomes


def decisions(outcomes: list[Evaluation | None]) -> list[str | None]:
    return [None if o is None else o.decision for o in outcomes]


def test_a_breach_shorter_than_for_seconds_does_not_trigger() -> None:
    outcomes = run(rule(for_seconds=60), [(0, 55), (30, 56), (59, 57)])
    assert decisions(outcomes) == [None, None, None]
    last = outcomes[-1]
    assert last is not None and last.state == RuleState(0, None, 59)


def test_a_breach_that_lasts_for_seconds_triggers_once() -> None:
    outcomes = run(rule(for_seconds=60), [(0, 55), (30, 56), (60, 57), (90, 58)])
    assert decisions(outcomes) == [None, None, "trigger", None]
    last = outcomes[-1]
    assert last is not None and last.state == RuleState(0, "a3", 90)


def test_a_good_value_before_for_seconds_restarts_the_breach() -> None:
    outcomes = run(rule(for_seconds=60), [(0, 55), (40, 45), (50, 55), (100, 55), (110, 55)])
    assert decisions(outcomes) == [None, None, None, None, "trigger"]
    second_breach = outcomes[2]
    assert second_breach is not None and second_breach.state.breach_since == 50


def test_without_for_seconds_the_first_breaching_sample_triggers() -> None:
    outcomes = run(rule(), [(0, 50), (1, 51)])
    assert decisions(outcomes) == [None, "trigger"]
    triggered = outcomes[1]
    assert triggered is not None and triggered.state == RuleState(1, None, 1)


def test_without_clear_threshold_a_good_value_clears() -> None:
    outcomes = run(rule(), [(0, 60), (1, 50)])
    assert decisions(outcomes) == ["trigger", "clear"]
    cleared = outcomes[1]
    assert cleared is not None and cleared.state == RuleState(None, None, 1)


def test_hysteresis_holds_the_alert_until_the_clear_threshold() -> None:
    outcomes = run(rule(clear_threshold=40), [(0, 60), (1, 45), (2, 40.5), (3, 40)])
    assert decisions(outcomes) == ["trigger", None, None, "clear"]
    held = outcomes[1]
    assert held is not None and held.state == RuleState(None, "a1", 1)


def test_hysteresis_a_new_breach_while_held_does_not_trigger_again() -> None:
    outcomes = run(rule(clear_threshold=40), [(0, 60), (1, 45), (2, 70), (3, 30), (4, 70)])
    assert decisions(outcomes) == ["trigger", None, None, "clear", "trigger"]


def test_hysteresis_for_a_lower_bound_rule() -> None:
    outcomes = run(rule("<", 10, clear_threshold=20), [(0, 5), (1, 15), (2, 19.5), (3, 20)])
    assert decisions(outcomes) == ["trigger", None, None, "clear"]


def test_an_older_sample_is_not_evaluated() -> None:
    view = rule(for_seconds=10)
    state = RuleState(breach_since=100, alert_id=None, last_ts=105)
    assert evaluate(view, state, 104, 99) is None
    same_time = evaluate(view, state, 105, 99)
    assert same_time is not None and same_time.state.last_ts == 105


@pytest.mark.parametrize(
    ("comparison", "breaching", "good"),
    [(">", 51, 50), (">=", 50, 49.9), ("<", 49, 50), ("<=", 50, 50.1)],
)
def test_each_comparison_breaches_on_its_side_of_the_threshold(
    comparison: Comparison, breaching: float, good: float
) -> None:
    view = rule(comparison, 50)
    triggered = evaluate(view, None, 0, breaching)
    assert triggered is not None and triggered.decision == "trigger"
    quiet = evaluate(view, None, 0, good)
    assert quiet is not None and quiet.decision is None
    assert quiet.state == RuleState(None, None, 0)
