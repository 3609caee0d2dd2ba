"""The rules' state per frame and the open alerts, and how they change.

On ingest, each sample moves its rules' states (``evaluate`` in ``_rules``); the alerts it
triggers or clears, and the states it moved, are staged for the next flush, so they commit
with the samples that caused them. By hand (``acknowledge``, ``resolve``) and when a frame is
deleted, the change and its event commit in a transaction of their own. Memory changes only
once that transaction has committed; staged changes are in memory at once (a failed flush
crashes the actor, which rebuilds from what is stored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from actors.errors import Conflict, NotFound
from actors.events import (
    AlertAcknowledged,
    AlertResolved,
    AlertTriggered,
    Audit,
    Event,
    new_id,
    rfc3339,
    utc_now,
)
from actors.store import Store, Transaction

from ._definitions import check_note
from ._messages import AcknowledgeAlert, AlertRuleView, AlertView, ResolveAlert
from ._rules import RuleState, evaluate
from ._tables import (
    ACKNOWLEDGE_ALERT,
    INSERT_ALERT,
    RESOLVE_ALERT,
    UPSERT_RULE_STATE,
    AlertRecord,
)

RuleKey = tuple[str, str]
"""A rule and a frame."""


class Alerts:
    """``states`` (by rule and frame) and ``open`` alerts (active and acknowledged, by id)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.states: dict[RuleKey, RuleState] = {}
        self.open: dict[str, AlertRecord] = {}
        # What the next flush writes.
        self._staged: list[tuple[str, Sequence[Any]]] = []
        self._staged_events: list[Event] = []
        self._dirty: set[RuleKey] = set()

    # -- on ingest -----------------------------------------------------------------------------

    def evaluate(self, rule: AlertRuleView, device_id: str, ts: float, value: float) -> None:
        key = (rule.rule_id, device_id)
        before = self.states.get(key)
        outcome = evaluate(rule, before, ts, value)
        if outcome is None:
            return
        state, decision = outcome
        if decision == "trigger":
            state = state._replace(alert_id=self._trigger(rule, device_id, ts, value))
        elif decision == "clear":
            assert before is not None and before.alert_id is not None
            alert = self.open.pop(before.alert_id, None)
            if alert is not None:
                self._stage_resolution(
                    alert, rfc3339(ts), f"cleared: {rule.metric} {value:g}", None
                )
        self.states[key] = state
        self._dirty.add(key)

    def write(self, tx: Transaction) -> None:
        """Add what ingest staged to the flush's transaction."""
        for sql, params in self._staged:
            tx.execute(sql, params)
        for event in self._staged_events:
            tx.publish(event)
        self._staged, self._staged_events = [], []
        if self._dirty:
            states = self.states
            rows = []
            for key in self._dirty:
                state = states.get(key)
                if state is not None:
                    rows.append((*key, *state))
            tx.executemany(UPSERT_RULE_STATE, rows)
            self._dirty = set()

    def _trigger(self, rule: AlertRuleView, device_id: str, ts: float, value: float) -> str:
        alert = AlertRecord(
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
        self.open[view.alert_id] = alert
        self._staged.append(
            (
                INSERT_ALERT,
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
        alert: AlertRecord,
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
        statement = (RESOLVE_ALERT, (resolved_at, note, view.alert_id))
        event = AlertResolved(
            audit=Audit.user_or_system(user_id, "telemetry"),
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

    # -- by hand -------------------------------------------------------------------------------

    async def _closed(self, alert_id: str) -> Conflict | NotFound:
        row = await self._store.fetch_one(
            "SELECT state FROM alerts WHERE alert_id = ?", (alert_id,)
        )
        if row is None:
            return NotFound(f"no alert {alert_id}")
        return Conflict(f"alert {alert_id} is already resolved")

    async def acknowledge(self, message: AcknowledgeAlert) -> AlertView:
        alert = self.open.get(message.alert_id)
        if alert is None:
            raise await self._closed(message.alert_id)
        if alert.view.state == "acknowledged":
            return alert.view
        view = msgspec.structs.replace(alert.view, state="acknowledged", acknowledged_at=utc_now())
        async with self._store.transaction() as tx:
            tx.execute(ACKNOWLEDGE_ALERT, (view.acknowledged_at, view.alert_id))
            tx.publish(
                AlertAcknowledged(
                    audit=Audit.user_or_system(message.user_id, "telemetry"),
                    correlation_id=alert.correlation_id,
                    alert_id=view.alert_id,
                    rule_id=view.rule_id,
                    device_id=view.device_id,
                )
            )
        alert.view = view
        return view

    async def resolve(self, message: ResolveAlert) -> AlertView:
        alert = self.open.get(message.alert_id)
        if alert is None:
            raise await self._closed(message.alert_id)
        note = check_note(message.note)
        view = alert.view
        key = (view.rule_id, view.device_id)
        state = self.states.get(key)
        if state is not None and state.alert_id != view.alert_id:
            state = None
        async with self._store.transaction() as tx:
            resolved = self._stage_resolution(
                alert, utc_now(), note, tx, user_id=message.user_id, automatic=False
            )
            if state is not None:
                # A new alert needs a whole new for_seconds of breaching samples.
                tx.execute(UPSERT_RULE_STATE, (*key, None, None, state.last_ts))
        self.open.pop(view.alert_id, None)
        if state is not None:
            self.states[key] = state._replace(breach_since=None, alert_id=None)
        return resolved

    def forget_device(self, tx: Transaction, device_id: str) -> int:
        """Resolve the frame's open alerts and delete its rule states in ``tx``; returns how
        many alerts. Memory follows once ``tx`` commits."""
        alerts = [a for a in self.open.values() if a.view.device_id == device_id]
        resolved_at = utc_now()
        for alert in alerts:
            self._stage_resolution(alert, resolved_at, "device deleted", tx)
        tx.execute("DELETE FROM rule_state WHERE device_id = ?", (device_id,))

        def forget() -> None:
            for alert in alerts:
                self.open.pop(alert.view.alert_id, None)
            for key in [k for k in self.states if k[1] == device_id]:
                del self.states[key]
                self._dirty.discard(key)

        tx.on_commit(forget)
        return len(alerts)
