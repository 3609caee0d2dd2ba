"""``/domain/ota``: firmware images and update campaigns (being built)."""

from __future__ import annotations

from typing import Any

from supervision import Actor

OTA_PATH = "/domain/ota"


class OtaCampaigns(Actor[Any]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def receive(self, message: Any) -> Any:
        return None
