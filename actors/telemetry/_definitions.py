"""Checking what people define: metrics, alert rules, notes. ``Invalid`` names the bad field."""

from __future__ import annotations

from collections.abc import Container

from actors.errors import Invalid, NotFound
from actors.events import new_id, utc_now
from actors.text import check_text

from ._messages import METRIC_NAME, AlertRuleView, CreateAlertRule, DefineMetric, MetricView
from ._rules import BREACHES

DAY_S = 86_400.0
MAX_RETENTION_DAYS = 36_500.0
MAX_UNIT_LENGTH = 32
MAX_NOTE_LENGTH = 1000
MAX_TEXT_LENGTH = 64


def check_finite(value: float, what: str) -> float:
    if value - value != 0.0:
        raise Invalid(f"{what} must be a finite number")
    return value


def check_metric_name(name: str) -> str:
    if not METRIC_NAME.fullmatch(name):
        raise Invalid("a metric name is 1 to 64 letters, digits, '_', '.' or '-'")
    return name


def check_note(note: str) -> str:
    return check_text(note, "note", MAX_NOTE_LENGTH, empty=True)


def metric_defined(message: DefineMetric, known: MetricView | None) -> MetricView:
    """The metric ``message`` defines; a redefinition keeps ``known``'s ``defined_at``."""
    name = check_metric_name(message.name)
    unit = check_text(message.unit, "unit", MAX_UNIT_LENGTH, empty=True)
    if message.kind not in ("gauge", "counter"):
        raise Invalid("kind must be gauge or counter")
    retention = message.retention_days
    if retention is not None:
        check_finite(retention, "retention_days")
        if not 0 < retention <= MAX_RETENTION_DAYS:
            raise Invalid(f"retention_days must be above 0 and at most {MAX_RETENTION_DAYS:g}")
    return MetricView(
        name=name,
        unit=unit,
        kind=message.kind,
        retention_days=retention,
        defined_at=known.defined_at if known is not None else utc_now(),
    )


def rule_defined(message: CreateAlertRule, devices: Container[str]) -> AlertRuleView:
    """The new rule ``message`` defines; ``NotFound`` if its frame is not in ``devices``."""
    metric = check_metric_name(message.metric)
    if message.comparison not in BREACHES:
        raise Invalid("comparison must be one of >, >=, <, <=")
    if message.severity not in ("info", "warning", "critical"):
        raise Invalid("severity must be info, warning or critical")
    threshold = check_finite(message.threshold, "threshold")
    for_seconds = check_finite(message.for_seconds, "for_seconds")
    if not 0 <= for_seconds <= 30 * DAY_S:
        raise Invalid("for_seconds must be between 0 and 30 days")
    if message.device_id is not None and message.model is not None:
        raise Invalid("a rule is for one device, one model or every frame, not both")
    model = message.model
    if model is not None:
        model = check_text(model, "model", MAX_TEXT_LENGTH)
    if message.device_id is not None and message.device_id not in devices:
        raise NotFound(f"no device {message.device_id}")
    clear = message.clear_threshold
    if clear is not None:
        check_finite(clear, "clear_threshold")
        if BREACHES[message.comparison](clear, threshold):
            raise Invalid(
                f"clear_threshold {clear:g} lies on the breaching side of {message.comparison}"
                f" {threshold:g}"
            )
    return AlertRuleView(
        rule_id=new_id(),
        metric=metric,
        device_id=message.device_id,
        model=model,
        comparison=message.comparison,
        threshold=threshold,
        for_seconds=for_seconds,
        severity=message.severity,
        clear_threshold=clear,
        enabled=True,
        created_at=utc_now(),
    )
