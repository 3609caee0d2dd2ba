"""Shared fixtures of the tests: an event log that tests wait on instead of sleeping, a free
port, a Mosquitto of the tests' own (all from ``tests/harness``), and the switches of the
reliability suite.

``--long`` runs the reliability suite at full length (every fault on its own, many kills, a
longer soak) instead of the seeded subset CI runs; ``--seed N`` picks the seed of its random
choices (faults, kill moments, fuzz), so a failing run repeats exactly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio

from tests.harness import ports
from tests.harness.broker import Broker


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


@pytest.fixture
def free_port() -> Callable[[], int]:
    """``free_port()``: a loopback port nobody listens on now."""
    return ports.free_port


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """An anonymous Mosquitto on a free loopback port, shared by the tests of one module."""
    running = Broker(tmp_path_factory.mktemp("broker"))
    running.start()
    yield running
    running.stop()


DEFAULT_SEED = 8


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("framehub reliability suite")
    group.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run the reliability suite at full length instead of its seeded CI subset",
    )
    group.addoption(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the reliability suite's random choices (default {DEFAULT_SEED})",
    )


@pytest.fixture
def long_run(request: pytest.FixtureRequest) -> bool:
    """True under ``--long``: run every case instead of the seeded subset."""
    return bool(request.config.getoption("--long"))


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The ``--seed`` of this run's random choices."""
    return int(request.config.getoption("--seed"))


def pytest_report_header(config: pytest.Config) -> str:
    length = "full length (--long)" if config.getoption("--long") else "seeded subset"
    return f"framehub reliability suite: {length}, --seed {config.getoption('--seed')}"
