"""Reading samples, minute aggregates and alerts back (committed data only)."""

from __future__ import annotations

import time

from actors.errors import Invalid
from actors.events import rfc3339
from actors.store import Keyset, Store, check_limit

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
from ._tables import ALERTS


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


_NEWEST_ALERTS = Keyset("triggered_at", "alert_id", key_type=tuple[str, str], newest_first=True)


async def alert_page(store: Store, message: ListAlerts) -> AlertPage:
    check_limit(message.limit)
    where: list[str] = []
    params: list[str] = []
    if message.state is not None:
        where.append("state = ?")
        params.append(message.state)
    if message.device_id is not None:
        where.append("device_id = ?")
        params.append(message.device_id)
    items, next_cursor = await _NEWEST_ALERTS.page(
        store,
        ALERTS.columns,
        "alerts",
        " AND ".join(where) or "1",
        params,
        ALERTS.of,
        message.limit,
        message.cursor,
    )
    return AlertPage(items=items, next_cursor=next_cursor)
