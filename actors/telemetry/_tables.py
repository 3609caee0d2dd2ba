"""The telemetry actor's tables, the statements that write them, and their rows as Structs.

``series`` numbers each (device, metric) pair, so that ``samples`` (series, time, value;
indexed by series and time) and ``minute_aggregates`` (series, minute, min, max, sum, count)
stay small and fast to append to; ``metrics``, ``alert_rules``, ``rule_state`` and
``alerts``. Times in ``samples`` are REAL Unix seconds; minutes are Unix minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.events import rfc3339
from actors.store import Rows, Transaction

from ._messages import AlertRuleView, AlertView, MetricView

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

INSERT_SERIES = "INSERT INTO series (series_id, device_id, metric) VALUES (?, ?, ?)"
INSERT_SAMPLES = (
    "INSERT INTO samples (series_id, ts, value) "
    "SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)"
)
"""The whole flush as one JSON array of [series, time, value] rows: one statement, so the
database thread does it without taking the interpreter's lock once per row."""
UPSERT_MINUTES = """
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
UPSERT_RULE_STATE = (
    "INSERT INTO rule_state (rule_id, device_id, breach_since, alert_id, last_ts) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (rule_id, device_id) DO UPDATE SET "
    "breach_since = excluded.breach_since, alert_id = excluded.alert_id, "
    "last_ts = excluded.last_ts"
)
INSERT_ALERT = (
    "INSERT INTO alerts (alert_id, rule_id, device_id, metric, severity, value, state, "
    "triggered_at, correlation_id) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?)"
)
RESOLVE_ALERT = "UPDATE alerts SET state = 'resolved', resolved_at = ?, note = ? WHERE alert_id = ?"
ALERTS = Rows(AlertView)
METRICS = Rows(MetricView)
UPSERT_METRIC = (
    f"{METRICS.insert('metrics')} ON CONFLICT (name) DO "
    "UPDATE SET unit = excluded.unit, kind = excluded.kind, "
    "retention_days = excluded.retention_days"
)
RULES = Rows(AlertRuleView)
INSERT_RULE = RULES.insert("alert_rules")
DISABLE_RULE = "UPDATE alert_rules SET enabled = 0 WHERE rule_id = ?"
ACKNOWLEDGE_ALERT = (
    "UPDATE alerts SET state = 'acknowledged', acknowledged_at = ? WHERE alert_id = ?"
)


@dataclass(slots=True)
class AlertRecord:
    """An ``alerts`` row: what is shown, and the correlation id its events carry."""

    view: AlertView
    correlation_id: str


ALERT_RECORD_COLUMNS = f"{ALERTS.columns}, correlation_id"


def alert_record_of(row: tuple[Any, ...]) -> AlertRecord:
    """An ``alerts`` row selected with ``ALERT_RECORD_COLUMNS``."""
    return AlertRecord(view=ALERTS.of(row), correlation_id=row[len(ALERTS)])


def stage_retention(
    tx: Transaction,
    series: list[tuple[int, float]],
    minute_cut: int,
) -> None:
    """Delete raw samples older than each series' cut (``series``: id and cut, Unix time),
    minute aggregates before ``minute_cut`` and alerts resolved before it."""
    tx.executemany("DELETE FROM samples WHERE series_id = ? AND ts < ?", series)
    tx.executemany(
        "DELETE FROM minute_aggregates WHERE series_id = ? AND minute < ?",
        [(sid, minute_cut) for sid, _ in series],
    )
    tx.execute(
        "DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < ?",
        (rfc3339(minute_cut * 60.0),),
    )
