"""notifications routes (being built)."""

from __future__ import annotations

from typing import Any

NOTIFICATIONS_ROUTES: tuple[Any, ...] = ()
