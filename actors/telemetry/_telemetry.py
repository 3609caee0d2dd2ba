"""``/domain/telemetry``: frames' samples and alert rules (being built)."""

from __future__ import annotations

from typing import Any

from supervision import Actor

TELEMETRY_PATH = "/domain/telemetry"


class TelemetryMonitor(Actor[Any]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def receive(self, message: Any) -> Any:
        return None
