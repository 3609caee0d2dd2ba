"""``/domain/telemetry`` (seed telemetry_service): frames' samples, metric definitions, alert
rules and alerts.

**Ingest.** The MQTT bridge tells ``TelemetryInbound`` once per inbound batch: telemetry
messages (their ``metrics``) and heartbeats (``free_bytes`` and ``uptime_s``) become samples of
(device, metric, time, value). A sample's time is its message's ``timestamp`` when that parses
as RFC 3339, is at most 60 s ahead of the hub's clock and is not older than the raw retention;
otherwise the batch's arrival time. Samples of unknown or deleted frames, with a bad metric name
(1 to 64 of ``[A-Za-z0-9_.-]``) or a non-finite value, past the 64th metric of a message and
past a frame's ``MAX_SERIES_PER_DEVICE`` distinct metrics, are dropped and counted by reason
(``GetTelemetryStats``, ``GET /metrics``).

**Group commit.** Samples wait in memory and are written together: one transaction per flush,
when ``FLUSH_SAMPLES`` are buffered or ``flush_interval_s`` after the first one, whichever comes
first. The same transaction upserts the 1-minute aggregates of the flushed samples (computed
by SQLite from the rows just inserted), writes the alerts and rule states their evaluation
changed and publishes the events that evaluation caused. One flush commits while the next
one is being filled, so the buffer grows under load and the flushes grow with it; past
``MAX_BUFFERED`` samples the ingest waits for the commit (and the bridge, then the broker, for
the ingest).

**What a crash loses.** The frames publish telemetry with QoS 1 and the hub's MQTT client
acknowledges (PUBACK) a message as soon as it has received it, before it is stored. Samples
received but not yet flushed — at most ``flush_interval_s`` worth, or whatever accumulated
behind a slow disk — are lost if the hub crashes or is killed: the frame will not send them
again. Everything a flush committed (samples, aggregates, alert state, events) stays, and
nothing is half-written; a graceful stop commits what is buffered. Alert evaluation state is
in the same transactions as the samples it saw, so a restart resumes it exactly from what was
stored.

**Coalesced sightings.** ``telemetry.data.received`` (device, samples since the last one,
latest sample time) is published in a flush at most once per frame per ``seen_interval_s``,
so the device registry updates ``last_seen`` without an event per sample.

**Alerts.** Rules are evaluated on ingest, per rule and frame, in sample-time order (a sample
older than the last one evaluated for that rule and frame is stored but not evaluated). A
breaching sample starts (or continues) a breach; when the breach has lasted ``for_seconds`` of
sample time and the rule has no open alert for that frame, an alert is triggered (``active``,
``alert.triggered``). A sample that does not breach ends the breach; an open alert resolves by
itself (``alert.resolved``, ``automatic``) only once a value lies on the good side of the
rule's ``clear_threshold`` (hysteresis). At most one open (active or acknowledged) alert per
rule and frame. Alerts are acknowledged and resolved by hand through this actor
(``AcknowledgeAlert``, ``ResolveAlert``): the state change and its event commit together.

**Seed handlers** (journal consumer ``telemetry``): ``device.registered`` adds the frame and its
model (model-scoped rules); ``device.deleted`` disables the rules scoped to that frame, resolves
its open alerts (``automatic``, note "device deleted") and stops taking its samples.

**Retention.** Once at start and every ``PRUNE_EVERY_S``: raw samples older than their metric's
``retention_days`` (default ``raw_retention_days``), minute aggregates older than
``aggregate_retention_days`` and resolved alerts older than that too are deleted.

Schema: ``series`` numbers each (device, metric) pair, so that ``samples`` (series, time,
value; indexed by series and time) and ``minute_aggregates`` (series, minute, min, max, sum,
count) stay small and fast to append to; ``metrics``, ``alert_rules``, ``rule_state`` and
``alerts``. Times in ``samples`` are REAL Unix seconds; minutes are Unix minutes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import trio

import wire
from actors.devices import DeviceMessage, ListAllDevices
from actors.errors import BadRequest, Conflict, Invalid, NotFound
from actors.events import (
    AlertAcknowledged,
    AlertResolved,
    AlertRuleCreated,
    AlertTriggered,
    Audit,
    DeviceDeleted,
    DeviceRegistered,
    Event,
    MetricDefined,
    TelemetryDataReceived,
    new_id,
    rfc3339,
    utc_now,
)
from actors.journal import Consumer, Journal, JournalNudge
from actors.paging import check_limit, page_of
from actors.store import Entry, Store, Transaction
from config import TelemetrySettings
from supervision import Actor, ActorRef, Timer

from ._messages import (
    DEFAULT_QUERY_SPAN_S,
    MAX_FUTURE_S,
    MAX_METRICS_PER_MESSAGE,
    MAX_QUERY_LIMIT,
    METRIC_NAME,
    AcknowledgeAlert,
    AlertPage,
    AlertRulePage,
    AlertRuleView,
    AlertState,
    AlertView,
    CreateAlertRule,
    DefineMetric,
    GetTelemetryStats,
    ListAlertRules,
    ListAlerts,
    ListMetrics,
    MetricPage,
    MetricView,
    MinutePoint,
    QueryTelemetry,
    ResolveAlert,
    SamplePoint,
    TelemetryInbound,
    TelemetrySeries,
    TelemetryStats,
)

log = logging.getLogger("framehub.telemetry")
_encode = msgspec.json.Encoder().encode


FLUSH_SAMPLES = 2_000
"""Buffered samples that start a flush without waiting for ``flush_interval_s``."""
MAX_BUFFERED = 100_000
"""Buffered samples past which the ingest waits for the flush being committed."""
MAX_SERIES_PER_DEVICE = 256
"""Metrics one frame may have: samples of further new names are dropped (and counted)."""
PRUNE_EVERY_S = 3600.0
DAY_S = 86_400.0
MAX_RETENTION_DAYS = 36_500.0
MAX_UNIT_LENGTH = 32
MAX_NOTE_LENGTH = 1000
MAX_TEXT_LENGTH = 64

TELEMETRY_MIGRATIONS = (
    """
    CREATE TABLE metrics (
        name TEXT PRIMARY KEY,
        unit TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('gauge', 'counter')),
        retention_days REAL,
        defined_at TEXT NOT NULL
    );
    CREATE TABLE series (
        series_id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        UNIQUE (device_id, metric)
    );
    CREATE TABLE samples (
        series_id INTEGER NOT NULL,
        ts REAL NOT NULL,
        value REAL NOT NULL
    );
    CREATE INDEX samples_by_series ON samples (series_id, ts);
    CREATE TABLE minute_aggregates (
        series_id INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        min_value REAL NOT NULL,
        max_value REAL NOT NULL,
        sum_value REAL NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (series_id, minute)
    ) WITHOUT ROWID;
    CREATE TABLE alert_rules (
        rule_id TEXT PRIMARY KEY,
        metric TEXT NOT NULL,
        device_id TEXT,
        model TEXT,
        comparison TEXT NOT NULL CHECK (comparison IN ('>', '>=', '<', '<=')),
        threshold REAL NOT NULL,
        for_seconds REAL NOT NULL,
        severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
        clear_threshold REAL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    );
    CREATE TABLE rule_state (
        rule_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        breach_since REAL,
        alert_id TEXT,
        last_ts REAL NOT NULL,
        PRIMARY KEY (rule_id, device_id)
    ) WITHOUT ROWID;
    CREATE TABLE alerts (
        alert_id TEXT PRIMARY KEY,
        rule_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        severity TEXT NOT NULL,
        value REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('active', 'acknowledged', 'resolved')),
        triggered_at TEXT NOT NULL,
        acknowledged_at TEXT,
        resolved_at TEXT,
        note TEXT NOT NULL DEFAULT '',
        correlation_id TEXT NOT NULL
    );
    CREATE INDEX alerts_by_time ON alerts (triggered_at, alert_id);
    """,
)
"""The telemetry schema (owner ``telemetry``)."""

_INSERT_SERIES = "INSERT INTO series (series_id, device_id, metric) VALUES (?, ?, ?)"
_INSERT_SAMPLES = (
    "INSERT INTO samples (series_id, ts, value) "
    "SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)"
)
"""The whole flush as one JSON array of [series, time, value] rows: one statement, so the
database thread does it without taking the interpreter's lock once per row."""
_UPSERT_MINUTES = """
    INSERT INTO minute_aggregates (series_id, minute, min_value, max_value, sum_value, count)
    SELECT series_id, CAST(ts / 60 AS INTEGER), min(value), max(value), sum(value), count(*)
    FROM samples WHERE rowid > (SELECT max(rowid) FROM samples) - ? GROUP BY 1, 2
    ON CONFLICT (series_id, minute) DO UPDATE SET
        min_value = min(min_value, excluded.min_value),
        max_value = max(max_value, excluded.max_value),
        sum_value = sum_value + excluded.sum_value,
        count = count + excluded.count
"""
"""The flushed samples are the table's last rows (one writer, rowids handed out in order):
their aggregates are folded into the minutes' rows in the same transaction."""
_UPSERT_RULE_STATE = (
    "INSERT INTO rule_state (rule_id, device_id, breach_since, alert_id, last_ts) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (rule_id, device_id) DO UPDATE SET "
    "breach_since = excluded.breach_since, alert_id = excluded.alert_id, "
    "last_ts = excluded.last_ts"
)
_INSERT_ALERT = (
    "INSERT INTO alerts (alert_id, rule_id, device_id, metric, severity, value, state, "
    "triggered_at, correlation_id) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?)"
)
_RESOLVE_ALERT = (
    "UPDATE alerts SET state = 'resolved', resolved_at = ?, note = ? WHERE alert_id = ?"
)
_ALERT_COLUMNS = (
    "alert_id, rule_id, device_id, metric, state, severity, value, triggered_at, resolved_at, "
    "acknowledged_at, note, correlation_id"
)

_BREACHES: dict[str, Callable[[float, float], bool]] = {
    ">": lambda value, bound: value > bound,
    ">=": lambda value, bound: value >= bound,
    "<": lambda value, bound: value < bound,
    "<=": lambda value, bound: value <= bound,
}


# -- internal messages -------------------------------------------------------------------------


class _Flush(msgspec.Struct, frozen=True):
    """The flush timer fired (``sightings``: the one for ``telemetry.data.received``)."""

    sightings: bool = False


class _Flushed(msgspec.Struct, frozen=True):
    """The flush in flight committed (or failed)."""


class _Prune(msgspec.Struct, frozen=True):
    """Time to apply the retention."""


TelemetryMessage = (
    JournalNudge
    | TelemetryInbound
    | DefineMetric
    | ListMetrics
    | CreateAlertRule
    | ListAlertRules
    | ListAlerts
    | AcknowledgeAlert
    | ResolveAlert
    | QueryTelemetry
    | GetTelemetryStats
    | _Flush
    | _Flushed
    | _Prune
)


# -- state -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Rule:
    view: AlertRuleView
    breaches: Callable[[float, float], bool]

    @property
    def rule_id(self) -> str:
        return self.view.rule_id

    def clears(self, value: float) -> bool:
        """The value lies on the good side of the clear threshold (the threshold by default)."""
        view = self.view
        bound = view.threshold if view.clear_threshold is None else view.clear_threshold
        return not self.breaches(value, bound)


@dataclass(slots=True)
class _RuleState:
    breach_since: float | None
    alert_id: str | None
    last_ts: float


@dataclass(slots=True)
class _Alert:
    view: AlertView
    correlation_id: str


@dataclass(slots=True)
class _Seen:
    """A frame's samples since its last ``telemetry.data.received``."""

    samples: int = 0
    last_ts: float = 0.0
    published_at: float = -1e18
    """``trio.current_time()`` of the last one published."""


class _Flight:
    """One flush being committed by a service of the actor."""

    __slots__ = ("committed_at", "done", "error", "samples")

    def __init__(self, samples: int) -> None:
        self.samples = samples
        self.done = trio.Event()
        self.error: BaseException | None = None
        self.committed_at = 0.0

    def committed(self) -> None:
        """Its transaction's on-commit callback: done before anyone sees the commit."""
        self.committed_at = time.time()
        self.done.set()


def parse_time(text: str) -> float | None:
    """An RFC 3339 timestamp with an offset as a Unix time; None if it is not one."""
    if len(text) > 40:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def _check_finite(value: float, what: str) -> float:
    if value - value != 0.0:
        raise Invalid(f"{what} must be a finite number")
    return value


def _check_text(value: str, what: str, longest: int, *, empty: bool = False) -> str:
    value = value.strip()
    if not (0 if empty else 1) <= len(value) <= longest:
        raise Invalid(f"{what} must be {'0' if empty else '1'} to {longest} characters long")
    if not value.isprintable():
        raise Invalid(f"{what} must not contain control characters")
    return value


def check_metric_name(name: str) -> str:
    if not METRIC_NAME.fullmatch(name):
        raise Invalid("a metric name is 1 to 64 letters, digits, '_', '.' or '-'")
    return name


def _audit(user_id: str | None) -> Audit:
    return Audit.system("telemetry") if user_id is None else Audit.user(user_id)


# -- the actor ---------------------------------------------------------------------------------


class TelemetryMonitor(Actor[TelemetryMessage]):
    """``/domain/telemetry``: see the module's docstring. Owns ``metrics``, ``series``,
    ``samples``, ``minute_aggregates``, ``alert_rules``, ``rule_state`` and ``alerts``;
    publishes ``telemetry.data.received``, ``metric.defined``, ``alert.rule.created``,
    ``alert.triggered``, ``alert.acknowledged`` and ``alert.resolved``."""

    def __init__(
        self,
        store: Store,
        journal: Journal,
        settings: TelemetrySettings,
        *,
        registry: ActorRef[DeviceMessage],
    ) -> None:
        self._registry = registry
        self._store = store
        self._journal = journal
        self._settings = settings
        self._consumer: Consumer | None = None
        self._devices: dict[str, str] = {}
        """The frames whose samples are taken, with their model."""
        self._metrics: dict[str, MetricView] = {}
        self._series: dict[str, dict[str, int]] = {}
        """Series id by device, then metric."""
        self._series_names: dict[int, str] = {}
        """Each series' metric (for retention)."""
        self._next_series = 1
        self._rules: dict[str, _Rule] = {}
        self._rules_by_metric: dict[str, list[_Rule]] = {}
        """Enabled rules only."""
        self._states: dict[tuple[str, str], _RuleState] = {}
        self._open: dict[str, _Alert] = {}
        """Active and acknowledged alerts."""
        # What the next flush writes.
        self._samples: list[tuple[int, float, float]] = []
        self._new_series: list[tuple[int, str, str]] = []
        self._staged: list[tuple[str, Sequence[Any]]] = []
        self._staged_events: list[Event] = []
        self._dirty: set[tuple[str, str]] = set()
        self._seen: dict[str, _Seen] = {}
        self._flight: _Flight | None = None
        self._flush_timer: Timer | None = None
        self._seen_timer: Timer | None = None
        self._flush_due = False
        self._failed: BaseException | None = None
        """A flush failed: what is in memory is ahead of the database (the next message
        crashes the actor, which starts again from what is stored)."""
        # Counters.
        self._ingested = 0
        self._stored = 0
        self._dropped: Counter[str] = Counter()
        self._replaced = 0
        self._flushes = 0
        self._last_flush_at: float | None = None

    async def on_start(self) -> None:
        store = self._store
        await store.migrate("telemetry", TELEMETRY_MIGRATIONS)
        for name, unit, kind, retention, defined_at in await store.fetch_all(
            "SELECT name, unit, kind, retention_days, defined_at FROM metrics"
        ):
            self._metrics[name] = MetricView(
                name=name, unit=unit, kind=kind, retention_days=retention, defined_at=defined_at
            )
        for series_id, device_id, metric in await store.fetch_all(
            "SELECT series_id, device_id, metric FROM series"
        ):
            self._series.setdefault(device_id, {})[metric] = series_id
            self._series_names[series_id] = metric
            self._next_series = max(self._next_series, series_id + 1)
        for row in await store.fetch_all(
            "SELECT rule_id, metric, device_id, model, comparison, threshold, for_seconds, "
            "severity, clear_threshold, enabled, created_at FROM alert_rules"
        ):
            self._add_rule(
                AlertRuleView(
                    rule_id=row[0],
                    metric=row[1],
                    device_id=row[2],
                    model=row[3],
                    comparison=row[4],
                    threshold=row[5],
                    for_seconds=row[6],
                    severity=row[7],
                    clear_threshold=row[8],
                    enabled=bool(row[9]),
                    created_at=row[10],
                )
            )
        for rule_id, device_id, breach_since, alert_id, last_ts in await store.fetch_all(
            "SELECT rule_id, device_id, breach_since, alert_id, last_ts FROM rule_state"
        ):
            self._states[(rule_id, device_id)] = _RuleState(breach_since, alert_id, last_ts)
        for row in await store.fetch_all(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE state != 'resolved'"
        ):
            alert = _alert_of(row)
            self._open[alert.view.alert_id] = alert
        # The consumer first: a frame paired while the registry is being asked is in both.
        self._consumer = await self._journal.consume(
            "telemetry",
            ["device.registered", "device.deleted"],
            self.context,
            self._on_event,
        )
        for device in await self._registry.ask(ListAllDevices()):
            self._devices[device.device_id] = device.model
        self.context.send_after(0.0, _Prune())
        self.context.send_every(PRUNE_EVERY_S, _Prune())

    async def on_stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        # The flush service is gone with the incarnation; what it was committing is in the
        # store's queue already. Commit the rest after it.
        built = self._build_flush() if self._failed is None else None
        if built is not None:
            tx, samples = built
            await self._store.commit(tx)
            self._stored += samples

    async def receive(self, message: TelemetryMessage) -> Any:
        assert self._consumer is not None
        if self._failed is not None:
            raise RuntimeError("a telemetry flush failed") from self._failed
        await self._consumer.drain()
        match message:
            case TelemetryInbound():
                self._ingest(message)
                await self._after_ingest()
                return None
            case JournalNudge():
                return None
            case _Flush(sightings=sightings):
                if sightings:
                    self._seen_timer = None
                else:
                    self._flush_timer = None
                self._flush_due = True
                await self._flush()
                return None
            case _Flushed():
                await self._flush()
                return None
            case DefineMetric():
                return await self._define_metric(message)
            case ListMetrics(limit=limit, cursor=cursor):
                metrics, next_cursor = page_of(
                    self._metrics.values(), lambda m: (m.defined_at, m.name), limit, cursor
                )
                return MetricPage(items=metrics, next_cursor=next_cursor)
            case CreateAlertRule():
                return await self._create_rule(message)
            case ListAlertRules(limit=limit, cursor=cursor):
                rules, next_cursor = page_of(
                    [r.view for r in self._rules.values()],
                    lambda r: (r.created_at, r.rule_id),
                    limit,
                    cursor,
                )
                return AlertRulePage(items=rules, next_cursor=next_cursor)
            case ListAlerts():
                await self._settle()
                return await self._list_alerts(message)
            case AcknowledgeAlert():
                await self._settle()
                return await self._acknowledge(message)
            case ResolveAlert():
                await self._settle()
                return await self._resolve(message)
            case QueryTelemetry():
                await self._settle()
                return await self._query(message)
            case GetTelemetryStats():
                self._reap()
                return self._stats()
            case _Prune():
                await self._prune()
                return None

    # -- ingest --------------------------------------------------------------------------------

    def _ingest(self, message: TelemetryInbound) -> None:
        """Turn a batch into buffered samples and evaluate the rules on them. Hot: one pass,
        no allocation per sample but its row."""
        received_at = message.received_at
        newest = received_at + MAX_FUTURE_S
        oldest = received_at - self._longest_retention_s()
        devices = self._devices
        all_series = self._series
        rules_by_metric = self._rules_by_metric
        append = self._samples.append
        seen_of = self._seen
        dropped = self._dropped
        accepted = 0
        last_stamp: str | None = None
        ts = received_at
        for item in message.items:
            device_id = item.frame_id
            pairs: Any
            if type(item) is wire.Telemetry:
                pairs = item.metrics.items()
                offered = len(item.metrics)
            else:
                assert isinstance(item, wire.Heartbeat)
                pairs = (("free_bytes", float(item.free_bytes)), ("uptime_s", item.uptime_s))
                offered = 2
            model = devices.get(device_id)
            if model is None:
                dropped["unknown_device"] += offered
                continue
            stamp = item.timestamp
            if stamp != last_stamp:
                last_stamp = stamp
                parsed = parse_time(stamp)
                if parsed is None or not oldest <= parsed <= newest:
                    self._replaced += 1
                    ts = received_at
                else:
                    ts = parsed
            if offered > MAX_METRICS_PER_MESSAGE:
                dropped["too_many_metrics"] += offered - MAX_METRICS_PER_MESSAGE
                pairs = list(pairs)[:MAX_METRICS_PER_MESSAGE]
            series_of = all_series.get(device_id)
            if series_of is None:
                series_of = all_series[device_id] = {}
            taken = 0
            for name, value in pairs:
                if value - value != 0.0:
                    dropped["non_finite"] += 1
                    continue
                series = series_of.get(name)
                if series is None:
                    if not METRIC_NAME.fullmatch(name):
                        dropped["bad_metric_name"] += 1
                        continue
                    if len(series_of) >= MAX_SERIES_PER_DEVICE:
                        dropped["too_many_series"] += 1
                        continue
                    series = self._add_series(series_of, device_id, name)
                append((series, ts, value))
                taken += 1
                rules = rules_by_metric.get(name)
                if rules is not None:
                    for rule in rules:
                        view = rule.view
                        if (view.device_id is None or view.device_id == device_id) and (
                            view.model is None or view.model == model
                        ):
                            self._evaluate(rule, device_id, ts, value)
            if taken:
                accepted += taken
                seen = seen_of.get(device_id)
                if seen is None:
                    seen = seen_of[device_id] = _Seen()
                seen.samples += taken
                if ts > seen.last_ts:
                    seen.last_ts = ts
        self._ingested += accepted

    def _add_series(self, series_of: dict[str, int], device_id: str, metric: str) -> int:
        series = self._next_series
        self._next_series += 1
        series_of[metric] = series
        self._series_names[series] = metric
        self._new_series.append((series, device_id, metric))
        return series

    def _longest_retention_s(self) -> float:
        days = self._settings.raw_retention_days
        for metric in self._metrics.values():
            if metric.retention_days is not None and metric.retention_days > days:
                days = metric.retention_days
        return days * DAY_S

    async def _after_ingest(self) -> None:
        buffered = len(self._samples)
        if buffered >= FLUSH_SAMPLES:
            self._flush_due = True
            await self._flush(wait=buffered >= MAX_BUFFERED)
        elif self._flush_timer is None and not self._flush_due and self._pending():
            self._flush_timer = self.context.send_after(self._settings.flush_interval_s, _Flush())

    # -- rules ---------------------------------------------------------------------------------

    def _evaluate(self, rule: _Rule, device_id: str, ts: float, value: float) -> None:
        key = (rule.rule_id, device_id)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _RuleState(None, None, ts)
        elif ts < state.last_ts:
            return
        state.last_ts = ts
        self._dirty.add(key)
        view = rule.view
        if rule.breaches(value, view.threshold):
            if state.breach_since is None:
                state.breach_since = ts
            if state.alert_id is None and ts - state.breach_since >= view.for_seconds:
                state.alert_id = self._trigger(view, device_id, ts, value)
            return
        state.breach_since = None
        if state.alert_id is not None and rule.clears(value):
            alert = self._open.pop(state.alert_id, None)
            state.alert_id = None
            if alert is not None:
                self._stage_resolution(
                    alert, rfc3339(ts), f"cleared: {view.metric} {value:g}", None
                )

    def _trigger(self, rule: AlertRuleView, device_id: str, ts: float, value: float) -> str:
        alert = _Alert(
            view=AlertView(
                alert_id=new_id(),
                rule_id=rule.rule_id,
                device_id=device_id,
                metric=rule.metric,
                state="active",
                severity=rule.severity,
                value=value,
                triggered_at=rfc3339(ts),
            ),
            correlation_id=new_id(),
        )
        view = alert.view
        self._open[view.alert_id] = alert
        self._staged.append(
            (
                _INSERT_ALERT,
                (
                    view.alert_id,
                    view.rule_id,
                    device_id,
                    view.metric,
                    view.severity,
                    value,
                    view.triggered_at,
                    alert.correlation_id,
                ),
            )
        )
        self._staged_events.append(
            AlertTriggered(
                audit=Audit.system("telemetry"),
                correlation_id=alert.correlation_id,
                alert_id=view.alert_id,
                rule_id=view.rule_id,
                device_id=device_id,
                metric=view.metric,
                value=value,
                severity=view.severity,
            )
        )
        return view.alert_id

    def _stage_resolution(
        self,
        alert: _Alert,
        resolved_at: str,
        note: str,
        tx: Transaction | None,
        *,
        user_id: str | None = None,
        automatic: bool = True,
    ) -> AlertView:
        """Resolve ``alert`` in ``tx``, or in the next flush when None (on ingest)."""
        view = msgspec.structs.replace(
            alert.view, state="resolved", resolved_at=resolved_at, note=note
        )
        statement = (_RESOLVE_ALERT, (resolved_at, note, view.alert_id))
        event = AlertResolved(
            audit=_audit(user_id),
            correlation_id=alert.correlation_id,
            alert_id=view.alert_id,
            rule_id=view.rule_id,
            device_id=view.device_id,
            note=note,
            automatic=automatic,
        )
        if tx is None:
            self._staged.append(statement)
            self._staged_events.append(event)
        else:
            tx.execute(*statement)
            tx.publish(event)
        return view

    # -- flushing ------------------------------------------------------------------------------

    def _pending(self) -> bool:
        return bool(self._samples or self._staged or self._dirty or self._new_series)

    async def _flush(self, *, wait: bool = False) -> None:
        """Hand what is buffered to a new flush, unless one is still committing (then the
        buffer keeps growing and ``_Flushed`` tries again; ``wait`` waits for it instead)."""
        flight = self._flight
        if flight is not None:
            if not flight.done.is_set():
                if not wait:
                    return
                await flight.done.wait()
            self._reap()
        if not self._flush_due and not self._seen_due():
            return
        built = self._build_flush()
        self._flush_due = False
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if built is None:
            self._arm_seen_timer()
            return
        tx, samples = built
        self._flight = flight = _Flight(samples)
        tx.on_commit(flight.committed)
        await self.context.start_service(self._commit, tx, flight)
        self._arm_seen_timer()

    async def _settle(self) -> None:
        """Flush everything and wait until it is committed: what follows (a query, an alert
        changed by hand, a journal handler's transaction) sees and comes after it."""
        while True:
            flight = self._flight
            if flight is not None:
                await flight.done.wait()
                self._reap()
            if not self._pending() and not self._seen_due():
                return
            self._flush_due = True
            await self._flush()

    def _reap(self) -> None:
        flight = self._flight
        if flight is None or not flight.done.is_set():
            return
        self._flight = None
        if flight.error is not None:
            self._failed = flight.error
            raise RuntimeError("a telemetry flush failed") from flight.error
        self._stored += flight.samples
        self._flushes += 1
        self._last_flush_at = flight.committed_at

    async def _commit(
        self,
        tx: Transaction,
        flight: _Flight,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        try:
            # On a full disk the flush waits for room rather than failing: the rule states
            # in memory are already ahead of the database, so a failure means a restart,
            # and restarts on a disk that stays full would crash-loop the actor until its
            # supervisor gave up. Meanwhile the buffer fills to MAX_BUFFERED, then the
            # ingest waits and the broker holds the frames back.
            await self._store.commit(tx, wait_for_room=True)
        except Exception as error:
            flight.error = error
        finally:
            flight.done.set()
            if self.context.ref.alive:
                self.context.ref.nudge(_Flushed())

    def _build_flush(self) -> tuple[Transaction, int] | None:
        """The next flush's transaction and its number of samples; None if there is nothing
        to write. Takes the buffer."""
        events = self._due_sightings()
        if not (self._pending() or events):
            return None
        tx = Transaction()
        if self._new_series:
            tx.executemany(_INSERT_SERIES, self._new_series)
            self._new_series = []
        samples = self._samples
        if samples:
            self._samples = []
            tx.execute(_INSERT_SAMPLES, (_encode(samples).decode(),))
            tx.execute(_UPSERT_MINUTES, (len(samples),))
        for sql, params in self._staged:
            tx.execute(sql, params)
        for event in self._staged_events:
            tx.publish(event)
        self._staged, self._staged_events = [], []
        if self._dirty:
            states = self._states
            rows = []
            for key in self._dirty:
                state = states.get(key)
                if state is not None:
                    rows.append((*key, state.breach_since, state.alert_id, state.last_ts))
            tx.executemany(_UPSERT_RULE_STATE, rows)
            self._dirty = set()
        for event in events:
            tx.publish(event)
        return tx, len(samples)

    def _seen_due(self) -> bool:
        interval = self._settings.seen_interval_s
        now = trio.current_time()
        return any(
            seen.samples and now - seen.published_at >= interval for seen in self._seen.values()
        )

    def _due_sightings(self) -> list[TelemetryDataReceived]:
        interval = self._settings.seen_interval_s
        now = trio.current_time()
        events = []
        for device_id, seen in self._seen.items():
            if seen.samples and now - seen.published_at >= interval:
                events.append(
                    TelemetryDataReceived(
                        audit=Audit.frame(device_id),
                        device_id=device_id,
                        samples=seen.samples,
                        last_sample_at=rfc3339(seen.last_ts),
                    )
                )
                seen.samples = 0
                seen.published_at = now
        return events

    def _arm_seen_timer(self) -> None:
        """Samples whose sighting must wait for ``seen_interval_s``: flush when it is up."""
        if self._seen_timer is not None:
            return
        waiting = [seen.published_at for seen in self._seen.values() if seen.samples]
        if not waiting:
            return
        delay = min(waiting) + self._settings.seen_interval_s - trio.current_time()
        self._seen_timer = self.context.send_after(max(0.0, delay), _Flush(sightings=True))

    # -- metrics and rules ---------------------------------------------------------------------

    async def _define_metric(self, message: DefineMetric) -> MetricView:
        name = check_metric_name(message.name)
        unit = _check_text(message.unit, "unit", MAX_UNIT_LENGTH, empty=True)
        if message.kind not in ("gauge", "counter"):
            raise Invalid("kind must be gauge or counter")
        retention = message.retention_days
        if retention is not None:
            _check_finite(retention, "retention_days")
            if not 0 < retention <= MAX_RETENTION_DAYS:
                raise Invalid(f"retention_days must be above 0 and at most {MAX_RETENTION_DAYS:g}")
        known = self._metrics.get(name)
        metric = MetricView(
            name=name,
            unit=unit,
            kind=message.kind,
            retention_days=retention,
            defined_at=known.defined_at if known is not None else utc_now(),
        )
        if metric == known:
            return metric
        async with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO metrics (name, unit, kind, retention_days, defined_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, "
                "kind = excluded.kind, retention_days = excluded.retention_days",
                (name, unit, metric.kind, retention, metric.defined_at),
            )
            tx.publish(
                MetricDefined(
                    audit=_audit(message.user_id),
                    correlation_id=message.correlation_id or new_id(),
                    name=name,
                    unit=unit,
                    kind=metric.kind,
                    retention_days=retention,
                )
            )
        self._metrics[name] = metric
        return metric

    async def _create_rule(self, message: CreateAlertRule) -> AlertRuleView:
        metric = check_metric_name(message.metric)
        if message.comparison not in _BREACHES:
            raise Invalid("comparison must be one of >, >=, <, <=")
        if message.severity not in ("info", "warning", "critical"):
            raise Invalid("severity must be info, warning or critical")
        threshold = _check_finite(message.threshold, "threshold")
        for_seconds = _check_finite(message.for_seconds, "for_seconds")
        if not 0 <= for_seconds <= 30 * DAY_S:
            raise Invalid("for_seconds must be between 0 and 30 days")
        if message.device_id is not None and message.model is not None:
            raise Invalid("a rule is for one device, one model or every frame, not both")
        model = message.model
        if model is not None:
            model = _check_text(model, "model", MAX_TEXT_LENGTH)
        if message.device_id is not None and message.device_id not in self._devices:
            raise NotFound(f"no device {message.device_id}")
        clear = message.clear_threshold
        if clear is not None:
            _check_finite(clear, "clear_threshold")
            if _BREACHES[message.comparison](clear, threshold):
                raise Invalid(
                    f"clear_threshold {clear:g} lies on the breaching side of {message.comparison}"
                    f" {threshold:g}"
                )
        rule = AlertRuleView(
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
        async with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO alert_rules (rule_id, metric, device_id, model, comparison, "
                "threshold, for_seconds, severity, clear_threshold, enabled, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                (
                    rule.rule_id,
                    metric,
                    rule.device_id,
                    model,
                    rule.comparison,
                    threshold,
                    for_seconds,
                    rule.severity,
                    clear,
                    rule.created_at,
                ),
            )
            tx.publish(
                AlertRuleCreated(
                    audit=_audit(message.user_id),
                    correlation_id=message.correlation_id or new_id(),
                    rule_id=rule.rule_id,
                    metric=metric,
                    comparison=rule.comparison,
                    threshold=threshold,
                    severity=rule.severity,
                    device_id=rule.device_id,
                    model=model,
                    for_seconds=for_seconds,
                    clear_threshold=clear,
                )
            )
        self._add_rule(rule)
        return rule

    def _add_rule(self, view: AlertRuleView) -> None:
        rule = _Rule(view, _BREACHES[view.comparison])
        self._rules[view.rule_id] = rule
        if view.enabled:
            self._rules_by_metric.setdefault(view.metric, []).append(rule)

    def _disable_rule(self, rule_id: str) -> None:
        rule = self._rules[rule_id]
        rule.view = msgspec.structs.replace(rule.view, enabled=False)
        kept = [r for r in self._rules_by_metric.get(rule.view.metric, []) if r is not rule]
        if kept:
            self._rules_by_metric[rule.view.metric] = kept
        else:
            self._rules_by_metric.pop(rule.view.metric, None)

    # -- alerts --------------------------------------------------------------------------------

    async def _list_alerts(self, message: ListAlerts) -> AlertPage:
        check_limit(message.limit)
        after: tuple[str, str] | None = None
        if message.cursor is not None:
            stamp, sep, ident = message.cursor.partition("~")
            if not sep or not ident:
                raise BadRequest("malformed cursor")
            after = (stamp, ident)
        rows = await self._store.fetch_all(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE (?1 IS NULL OR state = ?1) "
            "AND (?2 IS NULL OR device_id = ?2) "
            "AND (?3 IS NULL OR (triggered_at, alert_id) < (?3, ?4)) "
            "ORDER BY triggered_at DESC, alert_id DESC LIMIT ?5",
            (
                message.state,
                message.device_id,
                after[0] if after else None,
                after[1] if after else None,
                message.limit + 1,
            ),
        )
        items = [_alert_of(row).view for row in rows[: message.limit]]
        next_cursor = None
        if len(rows) > message.limit:
            last = items[-1]
            next_cursor = f"{last.triggered_at}~{last.alert_id}"
        return AlertPage(items=items, next_cursor=next_cursor)

    async def _closed_alert(self, alert_id: str) -> Conflict | NotFound:
        row = await self._store.fetch_one(
            "SELECT state FROM alerts WHERE alert_id = ?", (alert_id,)
        )
        if row is None:
            return NotFound(f"no alert {alert_id}")
        return Conflict(f"alert {alert_id} is already resolved")

    async def _acknowledge(self, message: AcknowledgeAlert) -> AlertView:
        alert = self._open.get(message.alert_id)
        if alert is None:
            raise await self._closed_alert(message.alert_id)
        if alert.view.state == "acknowledged":
            return alert.view
        view = msgspec.structs.replace(alert.view, state="acknowledged", acknowledged_at=utc_now())
        async with self._store.transaction() as tx:
            tx.execute(
                "UPDATE alerts SET state = 'acknowledged', acknowledged_at = ? WHERE alert_id = ?",
                (view.acknowledged_at, view.alert_id),
            )
            tx.publish(
                AlertAcknowledged(
                    audit=_audit(message.user_id),
                    correlation_id=alert.correlation_id,
                    alert_id=view.alert_id,
                    rule_id=view.rule_id,
                    device_id=view.device_id,
                )
            )
        alert.view = view
        return view

    async def _resolve(self, message: ResolveAlert) -> AlertView:
        alert = self._open.get(message.alert_id)
        if alert is None:
            raise await self._closed_alert(message.alert_id)
        note = _check_text(message.note, "note", MAX_NOTE_LENGTH, empty=True)
        view = alert.view
        key = (view.rule_id, view.device_id)
        state = self._states.get(key)
        async with self._store.transaction() as tx:
            resolved = self._stage_resolution(
                alert, utc_now(), note, tx, user_id=message.user_id, automatic=False
            )
            if state is not None and state.alert_id == view.alert_id:
                # A new alert needs a whole new for_seconds of breaching samples.
                tx.execute(_UPSERT_RULE_STATE, (*key, None, None, state.last_ts))
        self._open.pop(view.alert_id, None)
        if state is not None and state.alert_id == view.alert_id:
            state.alert_id = None
            state.breach_since = None
        return resolved

    # -- queries -------------------------------------------------------------------------------

    async def _query(self, message: QueryTelemetry) -> TelemetrySeries:
        if message.device_id not in self._devices:
            raise NotFound(f"no device {message.device_id}")
        if not 1 <= message.limit <= MAX_QUERY_LIMIT:
            raise Invalid(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
        until = time.time() if message.until is None else message.until
        since = until - DEFAULT_QUERY_SPAN_S if message.since is None else message.since
        if since > until:
            raise Invalid("since must not be after until")
        series = self._series.get(message.device_id, {}).get(message.metric)
        samples: list[SamplePoint] = []
        aggregates: list[MinutePoint] = []
        truncated = False
        if series is not None:
            if message.resolution == "raw":
                rows = await self._store.fetch_all(
                    "SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts <= ? "
                    "ORDER BY ts LIMIT ?",
                    (series, since, until, message.limit + 1),
                )
                truncated = len(rows) > message.limit
                samples = [SamplePoint(ts=rfc3339(ts), value=v) for ts, v in rows[: message.limit]]
            else:
                rows = await self._store.fetch_all(
                    "SELECT minute, min_value, max_value, sum_value, count FROM minute_aggregates "
                    "WHERE series_id = ? AND minute >= ? AND minute <= ? ORDER BY minute LIMIT ?",
                    (series, int(since // 60), int(until // 60), message.limit + 1),
                )
                truncated = len(rows) > message.limit
                aggregates = [
                    MinutePoint(
                        minute=rfc3339(minute * 60.0),
                        min=low,
                        max=high,
                        avg=total / count,
                        count=count,
                    )
                    for minute, low, high, total, count in rows[: message.limit]
                ]
        return TelemetrySeries(
            device_id=message.device_id,
            metric=message.metric,
            resolution=message.resolution,
            since=rfc3339(since),
            until=rfc3339(until),
            samples=samples,
            aggregates=aggregates,
            truncated=truncated,
        )

    def _stats(self) -> TelemetryStats:
        buffered = len(self._samples)
        if self._flight is not None:
            buffered += self._flight.samples
        return TelemetryStats(
            ingested=self._ingested,
            stored=self._stored,
            dropped=dict(self._dropped),
            timestamps_replaced=self._replaced,
            flushes=self._flushes,
            buffered=buffered,
            series=len(self._series_names),
            rules=sum(r.view.enabled for r in self._rules.values()),
            open_alerts=len(self._open),
            last_flush_at=self._last_flush_at,
        )

    # -- retention -----------------------------------------------------------------------------

    async def _prune(self) -> None:
        now = time.time()
        settings = self._settings
        default_cut = now - settings.raw_retention_days * DAY_S
        cuts: dict[str, float] = {}
        for metric in self._metrics.values():
            if metric.retention_days is not None:
                cuts[metric.name] = now - metric.retention_days * DAY_S
        minute_cut = int((now - settings.aggregate_retention_days * DAY_S) // 60)
        series = sorted(self._series_names.items())
        if not series:
            return
        async with self._store.transaction() as tx:
            tx.executemany(
                "DELETE FROM samples WHERE series_id = ? AND ts < ?",
                [(sid, cuts.get(metric, default_cut)) for sid, metric in series],
            )
            tx.executemany(
                "DELETE FROM minute_aggregates WHERE series_id = ? AND minute < ?",
                [(sid, minute_cut) for sid, _ in series],
            )
            tx.execute(
                "DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < ?",
                (rfc3339(minute_cut * 60.0),),
            )

    # -- journal handlers ----------------------------------------------------------------------

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        match entry.event:
            case DeviceRegistered(device_id=device_id, model=model):
                tx.on_commit(lambda: self._devices.__setitem__(device_id, model))
            case DeviceDeleted(device_id=device_id) as event:
                # After what is buffered: this transaction commits after the last flush.
                await self._settle()
                self._forget_device(tx, device_id, event.correlation_id)
            case _:
                pass

    def _forget_device(self, tx: Transaction, device_id: str, correlation_id: str) -> None:
        rules = [
            r.rule_id
            for r in self._rules.values()
            if r.view.device_id == device_id and r.view.enabled
        ]
        tx.executemany(
            "UPDATE alert_rules SET enabled = 0 WHERE rule_id = ?",
            [(rule_id,) for rule_id in rules],
        )
        alerts = [a for a in self._open.values() if a.view.device_id == device_id]
        resolved_at = utc_now()
        for alert in alerts:
            self._stage_resolution(alert, resolved_at, "device deleted", tx)
        tx.execute("DELETE FROM rule_state WHERE device_id = ?", (device_id,))

        def forget() -> None:
            self._devices.pop(device_id, None)
            self._seen.pop(device_id, None)
            for rule_id in rules:
                self._disable_rule(rule_id)
            for alert in alerts:
                self._open.pop(alert.view.alert_id, None)
            for key in [k for k in self._states if k[1] == device_id]:
                del self._states[key]
                self._dirty.discard(key)

        tx.on_commit(forget)
        if rules or alerts:
            log.info(
                "device %s deleted: %d rules disabled, %d alerts resolved (%s)",
                device_id,
                len(rules),
                len(alerts),
                correlation_id,
            )


def _alert_of(row: tuple[Any, ...]) -> _Alert:
    state: AlertState = row[4]
    return _Alert(
        view=AlertView(
            alert_id=row[0],
            rule_id=row[1],
            device_id=row[2],
            metric=row[3],
            state=state,
            severity=row[5],
            value=row[6],
            triggered_at=row[7],
            resolved_at=row[8],
            acknowledged_at=row[9],
            note=row[10],
        ),
        correlation_id=row[11],
    )
