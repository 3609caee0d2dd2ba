"""Token buckets keyed by caller: a burst of ``per_minute`` requests, refilled steadily."""

from __future__ import annotations

from collections.abc import Callable

import trio

_SWEEP_AT = 10_000
"""Buckets kept before full (idle) ones are dropped, so memory stays bounded."""


class RateLimiter:
    """One bucket per key (a token's hash, a client address).

    Each bucket holds up to ``per_minute`` requests and refills at ``per_minute / 60`` per
    second. Not thread-safe; the gateway uses it from Trio tasks without awaiting in between.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = trio.current_time) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, now: float) -> float:
        tokens, stamp = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - stamp) * self.rate)

    def wait_time(self, key: str) -> float:
        """Seconds until ``key`` may make a request (0 if it may now); takes nothing."""
        level = self._level(key, self._clock())
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate

    def take(self, key: str) -> float:
        """Spend one request of ``key``'s bucket: 0 if allowed, else seconds to wait."""
        now = self._clock()
        level = self._level(key, now)
        if level < 1.0:
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate
        if len(self._buckets) >= _SWEEP_AT:
            self._sweep(now)
        self._buckets[key] = (level - 1.0, now)
        return 0.0

    def _sweep(self, now: float) -> None:
        self._buckets = {
            key: (tokens, stamp)
            for key, (tokens, stamp) in self._buckets.items()
            if tokens + (now - stamp) * self.rate < self.capacity
        }
