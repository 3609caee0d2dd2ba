"""How one sample moves an alert rule's state for one frame: a pure function, no I/O.

A breaching sample starts (or continues) a breach; once the breach has lasted the rule's
``for_seconds`` of sample time and no alert is open, the rule triggers. A sample that does not
breach ends the breach; an open alert clears only once a value lies on the good side of the
rule's ``clear_threshold`` (the threshold by default): hysteresis. A sample older than the last
one evaluated is not evaluated.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Literal, NamedTuple

from ._messages import AlertRuleView, Comparison

BREACHES: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
"""Whether ``value`` breaches ``bound``, by comparison."""

Decision = Literal["trigger", "clear"] | None
"""What the caller does: open an alert, resolve the open one, or nothing."""


class RuleState(NamedTuple):
    """A rule's state for one frame, as the ``rule_state`` table holds it."""

    breach_since: float | None
    """Sample time of the first sample of the current breach."""
    alert_id: str | None
    """The rule's open alert for the frame."""
    last_ts: float
    """Sample time of the last sample evaluated."""


class Evaluation(NamedTuple):
    state: RuleState
    """The state after the sample. On ``trigger`` its ``alert_id`` is None: the caller opens
    the alert and records it (``state._replace(alert_id=...)``)."""
    decision: Decision


def breaches(comparison: Comparison, value: float, bound: float) -> bool:
    return BREACHES[comparison](value, bound)


def evaluate(
    rule: AlertRuleView, state: RuleState | None, ts: float, value: float
) -> Evaluation | None:
    """The rule's state after the sample (``ts``, ``value``) and what it decides; None when
    the sample is older than the last one evaluated (nothing changes). ``state`` None: the
    rule has not seen this frame yet."""
    if state is None:
        breach_since = None
        alert_id = None
    elif ts < state.last_ts:
        return None
    else:
        breach_since = state.breach_since
        alert_id = state.alert_id
    compare = BREACHES[rule.comparison]
    if compare(value, rule.threshold):
        if breach_since is None:
            breach_since = ts
        if alert_id is None and ts - breach_since >= rule.for_seconds:
            return Evaluation(RuleState(breach_since, None, ts), "trigger")
        return Evaluation(RuleState(breach_since, alert_id, ts), None)
    if alert_id is not None:
        bound = rule.threshold if rule.clear_threshold is None else rule.clear_threshold
        if not compare(value, bound):
            return Evaluation(RuleState(None, None, ts), "clear")
    return Evaluation(RuleState(None, alert_id, ts), None)
