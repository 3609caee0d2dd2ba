"""Which samples of the frames' telemetry are taken, at what time, in which series.

Telemetry messages (their ``metrics``) and heartbeats (``free_bytes`` and ``uptime_s``) become
samples of (device, metric, time, value). A sample's time is its message's ``timestamp`` when
that parses as RFC 3339, is at most ``MAX_FUTURE_S`` ahead of the arrival time and not older
than the longest raw retention; otherwise the arrival time. Samples of unknown or deleted
frames, with a bad metric name (1 to 64 of ``[A-Za-z0-9_.-]``) or a non-finite value, past the
64th metric of a message and past a frame's ``MAX_SERIES_PER_DEVICE`` distinct metrics, are
dropped and counted by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import wire
from actors.events import Audit, TelemetryDataReceived, rfc3339

from ._messages import MAX_FUTURE_S, MAX_METRICS_PER_MESSAGE, METRIC_NAME, TelemetryInbound

MAX_SERIES_PER_DEVICE = 256
"""Metrics one frame may have: samples of further new names are dropped (and counted)."""

Taken = tuple[str, str, float, str, float, int]
"""A sample taken: device, its model, time, metric, value, series."""


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


@dataclass(slots=True)
class Seen:
    """A frame's samples since its last ``telemetry.data.received``."""

    samples: int = 0
    last_ts: float = 0.0
    published_at: float = -1e18
    """``trio.current_time()`` of the last one published."""


class Intake:
    """The frames whose samples are taken, their series, and the counters of the ingest.

    ``take`` is the hot path: one pass over a batch, no allocation per sample but its tuple.
    New series wait in ``new_series`` for the next flush to write them.
    """

    __slots__ = (
        "devices",
        "dropped",
        "ingested",
        "new_series",
        "next_series",
        "replaced",
        "seen",
        "series",
        "series_names",
    )

    def __init__(self) -> None:
        self.devices: dict[str, str] = {}
        """The frames whose samples are taken, with their model."""
        self.series: dict[str, dict[str, int]] = {}
        """Series id by device, then metric."""
        self.series_names: dict[int, str] = {}
        """Each series' metric (for retention)."""
        self.next_series = 1
        self.new_series: list[tuple[int, str, str]] = []
        self.seen: dict[str, Seen] = {}
        self.ingested = 0
        self.dropped: Counter[str] = Counter()
        self.replaced = 0
        """Messages whose timestamp was replaced by the arrival time."""

    def known_series(self, series_id: int, device_id: str, metric: str) -> None:
        """A series read from the database."""
        self.series.setdefault(device_id, {})[metric] = series_id
        self.series_names[series_id] = metric
        self.next_series = max(self.next_series, series_id + 1)

    def forget(self, device_id: str) -> None:
        """A deleted frame: its samples are no longer taken."""
        self.devices.pop(device_id, None)
        self.seen.pop(device_id, None)

    def take(self, message: TelemetryInbound, oldest: float) -> Iterator[Taken]:
        """The samples of ``message`` that are taken, in order; the rest are counted in
        ``dropped``. ``oldest``: the earliest time a frame's timestamp may say."""
        received_at = message.received_at
        newest = received_at + MAX_FUTURE_S
        devices = self.devices
        all_series = self.series
        seen_of = self.seen
        dropped = self.dropped
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
                    self.replaced += 1
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
                yield device_id, model, ts, name, value, series
                taken += 1
            if taken:
                accepted += taken
                seen = seen_of.get(device_id)
                if seen is None:
                    seen = seen_of[device_id] = Seen()
                seen.samples += taken
                if ts > seen.last_ts:
                    seen.last_ts = ts
        self.ingested += accepted

    def _add_series(self, series_of: dict[str, int], device_id: str, metric: str) -> int:
        series = self.next_series
        self.next_series += 1
        series_of[metric] = series
        self.series_names[series] = metric
        self.new_series.append((series, device_id, metric))
        return series

    # -- sightings -----------------------------------------------------------------------------

    def sightings_due(self, now: float, interval: float) -> bool:
        return any(
            seen.samples and now - seen.published_at >= interval for seen in self.seen.values()
        )

    def due_sightings(self, now: float, interval: float) -> list[TelemetryDataReceived]:
        """``telemetry.data.received`` for each frame with samples whose last one is at least
        ``interval`` old (trio time), counted as published at ``now``."""
        events = []
        for device_id, seen in self.seen.items():
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

    def next_sighting_at(self, interval: float) -> float | None:
        """When the earliest sighting held back falls due (trio time); None if none is."""
        waiting = [seen.published_at for seen in self.seen.values() if seen.samples]
        return min(waiting) + interval if waiting else None
