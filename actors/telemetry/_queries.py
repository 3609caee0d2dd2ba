"""Reading samples, minute aggregates and alerts back (committed data only)."""

from __future__ import annotations

import time

from actors.errors import BadRequest, Invalid
from actors.events import rfc3339
from actors.paging import check_limit
from actors.store import Store

from ._messages import (
    DEFAULT_QUERY_SPAN_S,
    MAX_QUERY_LIMIT,
    AlertPage,
    ListAlerts,
    MinutePoint,
    QueryTelemetry,
    SamplePoint,
    TelemetrySeries,
)
from ._tables import ALERT_COLUMNS, alert_of


async def series_between(
    store: Store, series: int | None, message: QueryTelemetry
) -> TelemetrySeries:
    """What ``message`` asks of ``series`` (None: the frame has no such series yet)."""
    if not 1 <= message.limit <= MAX_QUERY_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
    until = time.time() if message.until is None else message.until
    since = until - DEFAULT_QUERY_SPAN_S if message.since is None else message.since
    if since > until:
        raise Invalid("since must not be after until")
    samples: list[SamplePoint] = []
    aggregates: list[MinutePoint] = []
    truncated = False
    if series is not None:
        if message.resolution == "raw":
            rows = await store.fetch_all(
                "SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts <= ? "
                "ORDER BY ts LIMIT ?",
                (series, since, until, message.limit + 1),
            )
            truncated = len(rows) > message.limit
            samples = [SamplePoint(ts=rfc3339(ts), value=v) for ts, v in rows[: message.limit]]
        else:
            rows = await store.fetch_all(
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


async def alert_page(store: Store, message: ListAlerts) -> AlertPage:
    check_limit(message.limit)
    after: tuple[str, str] | None = None
    if message.cursor is not None:
        stamp, sep, ident = message.cursor.partition("~")
        if not sep or not ident:
            raise BadRequest("malformed cursor")
        after = (stamp, ident)
    rows = await store.fetch_all(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE (?1 IS NULL OR state = ?1) "
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
    items = [alert_of(row).view for row in rows[: message.limit]]
    next_cursor = None
    if len(rows) > message.limit:
        last = items[-1]
        next_cursor = f"{last.triggered_at}~{last.alert_id}"
    return AlertPage(items=items, next_cursor=next_cursor)
