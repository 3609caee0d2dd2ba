"""ota routes (being built)."""

from __future__ import annotations

from typing import Any

OTA_ROUTES: tuple[Any, ...] = ()
