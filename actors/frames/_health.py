"""A frame's health score (0..100): heartbeat regularity (half), free storage (a quarter) and
the absence of recent errors (a quarter); an offline frame scores at most half."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

LOW_STORAGE_BYTES = 512 * 1024 * 1024
"""Free storage below this lowers the health score."""
ERROR_WINDOW_S = 3600.0
"""Errors older than this no longer lower the health score."""


def health_score(
    *,
    now: float,
    beats: Sequence[float],
    errors: Iterable[float],
    heartbeat_interval_s: float,
    free_bytes: int | None,
    online: bool,
) -> int:
    """The score at ``now`` of a frame that sent ``beats`` (the latest heartbeats' times,
    oldest first) and reported ``errors`` (their times), all on ``now``'s clock."""
    if len(beats) >= 2:
        gaps = [b - a for a, b in itertools.pairwise(beats)]
        gaps.append(max(0.0, now - beats[-1]))
        regularity = sum(min(1.0, heartbeat_interval_s / max(g, 1e-3)) for g in gaps) / len(gaps)
    else:
        regularity = 1.0 if online else 0.0
    storage = 1.0 if free_bytes is None else min(1.0, free_bytes / LOW_STORAGE_BYTES)
    recent = sum(1 for t in errors if now - t <= ERROR_WINDOW_S)
    error_free = max(0.0, 1.0 - recent / 10)
    score = 100 * (0.5 * regularity + 0.25 * storage + 0.25 * error_free)
    if not online:
        score = min(score, 50.0)
    return round(score)
