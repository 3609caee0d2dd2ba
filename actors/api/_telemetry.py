"""telemetry routes (being built)."""

from __future__ import annotations

from typing import Any

TELEMETRY_ROUTES: tuple[Any, ...] = ()
