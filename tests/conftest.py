"""Shared helpers of the runtime tests: an event log that tests wait on instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio


class EventLog:
    """Append-only list of tuples; ``wait_for`` parks until a predicate over it holds."""

    def __init__(self) -> None:
        self.entries: list[tuple[Any, ...]] = []
        self._changed = trio.Event()

    def add(self, *entry: Any) -> None:
        self.entries.append(entry)
        self._changed.set()
        self._changed = trio.Event()

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        """The entries whose first element is ``kind``, without it."""
        return [entry[1:] for entry in self.entries if entry[0] == kind]

    async def wait_for(self, predicate: Callable[[EventLog], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds; fail after ``timeout`` (virtual) seconds."""
        with trio.fail_after(timeout):
            while not predicate(self):
                await self._changed.wait()

    async def wait_count(self, kind: str, count: int) -> None:
        await self.wait_for(lambda log: len(log.of(kind)) >= count)


@pytest.fixture
def events() -> EventLog:
    return EventLog()
