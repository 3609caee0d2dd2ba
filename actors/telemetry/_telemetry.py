"""The telemetry actor (seed telemetry_service): frames' samples, metric definitions, alert
rules and alerts.

**Ingest.** The MQTT bridge tells ``TelemetryInbound`` once per inbound batch: telemetry
messages and heartbeats become samples of (device, metric, time, value), checked and timed as
``_ingest`` says; what is dropped is counted by reason (``GetTelemetryStats``, ``GET /metrics``).

**Group commit** (``actors.store.GroupCommit``). Samples wait in memory and are written
together: one transaction per flush,
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

Schema: see ``_tables``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import trio

from actors.devices import DeviceMessage, ListAllDevices
from actors.errors import NotFound
from actors.events import (
    AlertRuleCreated,
    Audit,
    DeviceDeleted,
    DeviceRegistered,
    MetricDefined,
    new_id,
)
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import Entry, GroupCommit, SortedRecords, Store, Transaction
from config import TelemetrySettings
from supervision import Actor, ActorRef, Timer

from ._alerts import Alerts
from ._definitions import DAY_S, metric_defined, rule_defined
from ._ingest import Intake
from ._messages import (
    AcknowledgeAlert,
    AlertRulePage,
    AlertRuleView,
    CreateAlertRule,
    DefineMetric,
    GetTelemetryStats,
    ListAlertRules,
    ListAlerts,
    ListMetrics,
    MetricPage,
    MetricView,
    QueryTelemetry,
    ResolveAlert,
    TelemetryInbound,
    TelemetryStats,
)
from ._queries import alert_page, series_between
from ._rules import RuleState
from ._tables import (
    ALERT_RECORD_COLUMNS,
    DISABLE_RULE,
    INSERT_RULE,
    INSERT_SAMPLES,
    INSERT_SERIES,
    METRICS,
    RULES,
    TELEMETRY_MIGRATIONS,
    UPSERT_METRIC,
    UPSERT_MINUTES,
    alert_record_of,
    stage_retention,
)

log = logging.getLogger("framehub.telemetry")
_encode = msgspec.json.Encoder().encode


FLUSH_SAMPLES = 2_000
"""Buffered samples that start a flush without waiting for ``flush_interval_s``."""
MAX_BUFFERED = 100_000
"""Buffered samples past which the ingest waits for the flush being committed."""
PRUNE_EVERY_S = 3600.0

Sample = tuple[int, float, float]
"""A sample waiting for its flush: series, time, value."""


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


# -- the actor ---------------------------------------------------------------------------------


class TelemetryMonitor(Actor[TelemetryMessage]):
    """The telemetry actor: see the module's docstring. Owns ``metrics``, ``series``,
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
        self._intake = Intake()
        self._metrics: SortedRecords[MetricView, tuple[str, str]] = SortedRecords(
            lambda m: (m.defined_at, m.name), tuple[str, str]
        )
        self._rules: SortedRecords[AlertRuleView, tuple[str, str]] = SortedRecords(
            lambda r: (r.created_at, r.rule_id), tuple[str, str]
        )
        self._rules_by_metric: dict[str, list[AlertRuleView]] = {}
        """Enabled rules only."""
        self._alerts = Alerts(store)
        self._flushes: GroupCommit[Sample, TelemetryMessage] = GroupCommit(
            self,
            store,
            self._write_flush,
            window_s=settings.flush_interval_s,
            batch_size=FLUSH_SAMPLES,
            max_buffered=MAX_BUFFERED,
            window_ended=_Flush(),
            committed=_Flushed(),
            overdue=self._sightings_due,
            after_flush=self._arm_seen_timer,
        )
        self._seen_timer: Timer | None = None

    async def on_start(self) -> None:
        store = self._store
        await store.migrate("telemetry", TELEMETRY_MIGRATIONS)
        for metric in METRICS.all(await store.fetch_all(f"SELECT {METRICS.columns} FROM metrics")):
            self._metrics[metric.name] = metric
        for series_id, device_id, metric_name in await store.fetch_all(
            "SELECT series_id, device_id, metric FROM series"
        ):
            self._intake.known_series(series_id, device_id, metric_name)
        for rule in RULES.all(await store.fetch_all(f"SELECT {RULES.columns} FROM alert_rules")):
            self._add_rule(rule)
        states = self._alerts.states
        for rule_id, device_id, breach_since, alert_id, last_ts in await store.fetch_all(
            "SELECT rule_id, device_id, breach_since, alert_id, last_ts FROM rule_state"
        ):
            states[(rule_id, device_id)] = RuleState(breach_since, alert_id, last_ts)
        for row in await store.fetch_all(
            f"SELECT {ALERT_RECORD_COLUMNS} FROM alerts WHERE state != 'resolved'"
        ):
            alert = alert_record_of(row)
            self._alerts.open[alert.view.alert_id] = alert
        # The consumer first: a frame paired while the registry is being asked is in both.
        self._consumer = await self._journal.consume(
            "telemetry",
            ["device.registered", "device.deleted"],
            self.context,
            self._on_event,
        )
        for device in await self._registry.ask(ListAllDevices()):
            self._intake.devices[device.device_id] = device.model
        self.context.send_after(0.0, _Prune())
        self.context.send_every(PRUNE_EVERY_S, _Prune())

    async def on_stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        # The flush service is gone with the incarnation; what it was committing is in the
        # store's queue already. Commit the rest after it.
        await self._flushes.close()

    async def receive(self, message: TelemetryMessage) -> Any:
        assert self._consumer is not None
        self._flushes.check()
        await self._consumer.drain()
        match message:
            case TelemetryInbound():
                self._ingest(message)
                await self._flushes.added()
                return None
            case JournalNudge():
                return None
            case _Flush(sightings=True):
                self._seen_timer = None
                await self._flushes.flush_now()
                return None
            case _Flush():
                await self._flushes.window_ended()
                return None
            case _Flushed():
                await self._flushes.commit_finished()
                return None
            case DefineMetric():
                return await self._define_metric(message)
            case ListMetrics(limit=limit, cursor=cursor):
                metrics, next_cursor = self._metrics.page(limit, cursor)
                return MetricPage(items=metrics, next_cursor=next_cursor)
            case CreateAlertRule():
                return await self._create_rule(message)
            case ListAlertRules(limit=limit, cursor=cursor):
                rules, next_cursor = self._rules.page(limit, cursor)
                return AlertRulePage(items=rules, next_cursor=next_cursor)
            case ListAlerts():
                await self._flushes.settle()
                return await alert_page(self._store, message)
            case AcknowledgeAlert():
                await self._flushes.settle()
                return await self._alerts.acknowledge(message)
            case ResolveAlert():
                await self._flushes.settle()
                return await self._alerts.resolve(message)
            case QueryTelemetry():
                await self._flushes.settle()
                if message.device_id not in self._intake.devices:
                    raise NotFound(f"no device {message.device_id}")
                series = self._intake.series.get(message.device_id, {}).get(message.metric)
                return await series_between(self._store, series, message)
            case GetTelemetryStats():
                return self._stats()
            case _Prune():
                await self._prune()
                return None

    # -- ingest --------------------------------------------------------------------------------

    def _ingest(self, message: TelemetryInbound) -> None:
        """Buffer the batch's samples and evaluate the rules on them. Hot: one pass."""
        samples: list[Sample] = []
        append = samples.append
        rules_by_metric = self._rules_by_metric
        evaluate = self._alerts.evaluate
        for device_id, model, ts, name, value, series in self._intake.take(
            message, message.received_at - self._longest_retention_s()
        ):
            append((series, ts, value))
            rules = rules_by_metric.get(name)
            if rules is not None:
                for rule in rules:
                    if (rule.device_id is None or rule.device_id == device_id) and (
                        rule.model is None or rule.model == model
                    ):
                        evaluate(rule, device_id, ts, value)
        self._flushes.extend(samples)

    def _longest_retention_s(self) -> float:
        days = self._settings.raw_retention_days
        for metric in self._metrics.values():
            if metric.retention_days is not None and metric.retention_days > days:
                days = metric.retention_days
        return days * DAY_S

    # -- flushing ------------------------------------------------------------------------------

    def _write_flush(self, tx: Transaction, samples: list[Sample]) -> None:
        """A flush: new series, the samples and their minute aggregates, what the rules'
        evaluation staged, and the sightings that are due."""
        intake = self._intake
        events = intake.due_sightings(trio.current_time(), self._settings.seen_interval_s)
        if intake.new_series:
            tx.executemany(INSERT_SERIES, intake.new_series)
            intake.new_series = []
        if samples:
            tx.execute(INSERT_SAMPLES, (_encode(samples).decode(),))
            tx.execute(UPSERT_MINUTES, (len(samples),))
        self._alerts.write(tx)
        for event in events:
            tx.publish(event)

    def _sightings_due(self) -> bool:
        return self._intake.sightings_due(trio.current_time(), self._settings.seen_interval_s)

    def _arm_seen_timer(self) -> None:
        """Samples whose sighting must wait for ``seen_interval_s``: flush when it is up."""
        if self._seen_timer is not None:
            return
        due_at = self._intake.next_sighting_at(self._settings.seen_interval_s)
        if due_at is not None:
            delay = max(0.0, due_at - trio.current_time())
            self._seen_timer = self.context.send_after(delay, _Flush(sightings=True))

    def _stats(self) -> TelemetryStats:
        intake, flushes = self._intake, self._flushes
        return TelemetryStats(
            ingested=intake.ingested,
            stored=flushes.committed_items,
            dropped=dict(intake.dropped),
            timestamps_replaced=intake.replaced,
            flushes=flushes.flushes,
            buffered=flushes.buffered,
            series=len(intake.series_names),
            rules=sum(r.enabled for r in self._rules.values()),
            open_alerts=len(self._alerts.open),
            last_flush_at=flushes.last_commit_at,
        )

    # -- metrics and rules ---------------------------------------------------------------------

    async def _define_metric(self, message: DefineMetric) -> MetricView:
        known = self._metrics.get(message.name)
        metric = metric_defined(message, known)
        if metric == known:
            return metric
        async with self._store.transaction() as tx:
            tx.execute(UPSERT_METRIC, METRICS.values(metric))
            tx.publish(
                MetricDefined(
                    audit=Audit.user_or_system(message.user_id, "telemetry"),
                    correlation_id=message.correlation_id or new_id(),
                    name=metric.name,
                    unit=metric.unit,
                    kind=metric.kind,
                    retention_days=metric.retention_days,
                )
            )
        self._metrics[metric.name] = metric
        return metric

    async def _create_rule(self, message: CreateAlertRule) -> AlertRuleView:
        rule = rule_defined(message, self._intake.devices)
        async with self._store.transaction() as tx:
            tx.execute(INSERT_RULE, RULES.values(rule))
            tx.publish(
                AlertRuleCreated(
                    audit=Audit.user_or_system(message.user_id, "telemetry"),
                    correlation_id=message.correlation_id or new_id(),
                    rule_id=rule.rule_id,
                    metric=rule.metric,
                    comparison=rule.comparison,
                    threshold=rule.threshold,
                    severity=rule.severity,
                    device_id=rule.device_id,
                    model=rule.model,
                    for_seconds=rule.for_seconds,
                    clear_threshold=rule.clear_threshold,
                )
            )
        self._add_rule(rule)
        return rule

    def _add_rule(self, rule: AlertRuleView) -> None:
        self._rules[rule.rule_id] = rule
        if rule.enabled:
            self._rules_by_metric.setdefault(rule.metric, []).append(rule)

    def _disable_rule(self, rule_id: str) -> None:
        rule = self._rules[rule_id] = msgspec.structs.replace(self._rules[rule_id], enabled=False)
        kept = [r for r in self._rules_by_metric.get(rule.metric, []) if r.rule_id != rule_id]
        if kept:
            self._rules_by_metric[rule.metric] = kept
        else:
            self._rules_by_metric.pop(rule.metric, None)

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
        series = sorted(self._intake.series_names.items())
        if not series:
            return
        async with self._store.transaction() as tx:
            stage_retention(
                tx, [(sid, cuts.get(metric, default_cut)) for sid, metric in series], minute_cut
            )

    # -- journal handlers ----------------------------------------------------------------------

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        match entry.event:
            case DeviceRegistered(device_id=device_id, model=model):
                tx.on_commit(lambda: self._intake.devices.__setitem__(device_id, model))
            case DeviceDeleted(device_id=device_id) as event:
                # After what is buffered: this transaction commits after the last flush.
                await self._flushes.settle()
                self._forget_device(tx, device_id, event.correlation_id)
            case _:
                pass

    def _forget_device(self, tx: Transaction, device_id: str, correlation_id: str) -> None:
        rules = [r.rule_id for r in self._rules.values() if r.device_id == device_id and r.enabled]
        tx.executemany(DISABLE_RULE, [(rule_id,) for rule_id in rules])
        alerts = self._alerts.forget_device(tx, device_id)

        def forget() -> None:
            self._intake.forget(device_id)
            for rule_id in rules:
                self._disable_rule(rule_id)

        tx.on_commit(forget)
        if rules or alerts:
            log.info(
                "device %s deleted: %d rules disabled, %d alerts resolved (%s)",
                device_id,
                len(rules),
                alerts,
                correlation_id,
            )
