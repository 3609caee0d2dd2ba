"""What the telemetry actor is asked and what it answers."""

from __future__ import annotations

import re
from typing import Literal

import msgspec

import wire
from actors.store import DEFAULT_PAGE
from supervision import Request

MetricKind = Literal["gauge", "counter"]
Comparison = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
AlertState = Literal["active", "acknowledged", "resolved"]
Resolution = Literal["raw", "minute"]

METRIC_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""A metric's name: 1 to 64 letters, digits, ``_``, ``.`` or ``-``."""
METRIC_NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
MAX_METRICS_PER_MESSAGE = 64
"""Samples taken from one telemetry message; the rest are dropped (and counted)."""
MAX_FUTURE_S = 60.0
"""A frame's timestamp further ahead of the hub's clock is replaced by the arrival time."""
MAX_QUERY_LIMIT = 10_000
DEFAULT_QUERY_LIMIT = 1_000
DEFAULT_QUERY_SPAN_S = 3600.0


# -- requests ----------------------------------------------------------------------------------


class DefineMetric(Request["MetricView"], frozen=True, kw_only=True):
    """Define (or redefine) a metric; answers ``MetricView`` and publishes ``metric.defined``
    unless nothing changed. ``retention_days`` None keeps raw samples for the configured
    ``raw_retention_days``. ``Invalid`` for a bad name, unit, kind or retention."""

    name: str
    unit: str
    kind: MetricKind = "gauge"
    retention_days: float | None = None
    user_id: str | None = None
    correlation_id: str | None = None


class ListMetrics(Request["MetricPage"], frozen=True, kw_only=True):
    """The defined metrics, in the order they were first defined; answers ``MetricPage``."""

    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class CreateAlertRule(Request["AlertRuleView"], frozen=True, kw_only=True):
    """A rule: ``metric`` ``comparison`` ``threshold`` for ``for_seconds`` of sample time.

    Its scope is one frame (``device_id``), a model, or every frame (neither). It clears
    when a value lies on the good side of ``clear_threshold`` (default: ``threshold``), which
    must not lie on the breaching side of ``threshold``. Answers ``AlertRuleView`` and
    publishes ``alert.rule.created``; ``Invalid`` for a bad field or both scopes, ``NotFound``
    for an unknown device.
    """

    metric: str
    comparison: Comparison
    threshold: float
    for_seconds: float = 0.0
    severity: Severity = "warning"
    device_id: str | None = None
    model: str | None = None
    clear_threshold: float | None = None
    user_id: str | None = None
    correlation_id: str | None = None


class ListAlertRules(Request["AlertRulePage"], frozen=True, kw_only=True):
    """Every rule (disabled ones too), oldest first; answers ``AlertRulePage``."""

    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class ListAlerts(Request["AlertPage"], frozen=True, kw_only=True):
    """Alerts, newest first, optionally of one ``state`` and one device; answers
    ``AlertPage``."""

    state: AlertState | None = None
    device_id: str | None = None
    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class AcknowledgeAlert(Request["AlertView"], frozen=True, kw_only=True):
    """Someone is on it: an active alert becomes ``acknowledged`` (``alert.acknowledged``);
    an acknowledged one is answered as it is. Answers ``AlertView``; ``NotFound``, or
    ``Conflict`` if it is resolved."""

    alert_id: str
    user_id: str | None = None
    correlation_id: str | None = None


class ResolveAlert(Request["AlertView"], frozen=True, kw_only=True):
    """Resolve an open alert by hand: the alert and ``alert.resolved`` (with ``note``) commit
    together. Its rule starts counting ``for_seconds`` again from the next breaching sample.
    Answers ``AlertView``; ``NotFound``, or ``Conflict`` if it is already resolved."""

    alert_id: str
    note: str = ""
    user_id: str | None = None
    correlation_id: str | None = None


class QueryTelemetry(Request["TelemetrySeries"], frozen=True, kw_only=True):
    """A device's samples of ``metric`` between ``since`` and ``until`` (Unix times, both
    included; default: the last hour), raw or as 1-minute aggregates, oldest first, at most
    ``limit``. Answers ``TelemetrySeries``; ``NotFound`` for an unknown device."""

    device_id: str
    metric: str
    since: float | None = None
    until: float | None = None
    resolution: Resolution = "raw"
    limit: int = DEFAULT_QUERY_LIMIT


class GetTelemetryStats(Request["TelemetryStats"], frozen=True):
    """Answers ``TelemetryStats``."""


# -- replies -----------------------------------------------------------------------------------


class MetricView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    unit: str
    kind: MetricKind
    retention_days: float | None
    defined_at: str


class MetricPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[MetricView]
    next_cursor: str | None


class AlertRuleView(msgspec.Struct, frozen=True, kw_only=True):
    rule_id: str
    metric: str
    device_id: str | None
    model: str | None
    comparison: Comparison
    threshold: float
    for_seconds: float
    severity: Severity
    clear_threshold: float | None
    enabled: bool
    """False once the rule's frame was deleted."""
    created_at: str


class AlertRulePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AlertRuleView]
    next_cursor: str | None


class AlertView(msgspec.Struct, frozen=True, kw_only=True):
    """An alert. ``triggered_at`` is the time of the sample that completed ``for_seconds``
    and ``value`` its value; ``resolved_at`` is the clearing sample's time when resolved
    automatically, the hub's time when resolved by hand."""

    alert_id: str
    rule_id: str
    device_id: str
    metric: str
    state: AlertState
    severity: Severity
    value: float
    triggered_at: str
    resolved_at: str | None = None
    acknowledged_at: str | None = None
    note: str = ""


class AlertPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AlertView]
    next_cursor: str | None


class SamplePoint(msgspec.Struct, frozen=True, kw_only=True):
    ts: str
    value: float


class MinutePoint(msgspec.Struct, frozen=True, kw_only=True):
    minute: str
    min: float
    max: float
    avg: float
    count: int


class TelemetrySeries(msgspec.Struct, frozen=True, kw_only=True):
    """``samples`` (raw) or ``aggregates`` (minute), the other one empty; ``truncated`` when
    ``limit`` cut the range short (ask again from the last point's time)."""

    device_id: str
    metric: str
    resolution: Resolution
    since: str
    until: str
    samples: list[SamplePoint]
    aggregates: list[MinutePoint]
    truncated: bool


class TelemetryStats(msgspec.Struct, frozen=True, kw_only=True):
    """The ingest's counters since the actor (re)started."""

    ingested: int
    """Samples accepted into the buffer."""
    stored: int
    """Samples committed to the database."""
    dropped: dict[str, int]
    """Samples dropped, by reason: ``unknown_device``, ``bad_metric_name``, ``non_finite``,
    ``too_many_metrics`` (past 64 in one message), ``too_many_series`` (past a frame's 256
    distinct metrics)."""
    timestamps_replaced: int
    """Messages whose timestamp was unusable (unparsable, too far ahead, too old): their
    samples took the arrival time."""
    flushes: int
    buffered: int
    """Samples accepted but not committed yet."""
    series: int
    rules: int
    open_alerts: int
    last_flush_at: float | None
    """Unix time of the last committed flush."""


class TelemetryInbound(msgspec.Struct, frozen=True, kw_only=True):
    """Told by the MQTT bridge once per inbound batch: the frames' telemetry and heartbeats
    (whose fields are samples too), checked against their topics, in arrival order;
    ``received_at`` is the hub's Unix time when the batch arrived."""

    items: list[wire.Telemetry | wire.Heartbeat]
    received_at: float
