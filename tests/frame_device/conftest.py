"""What both frame program suites use: the hub's side of the broker and the frame's data dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.broker import Broker
from tests.harness.frame_program import HubClient


@pytest.fixture
def hub(broker: Broker) -> Iterator[HubClient]:
    client = HubClient(broker.port)
    yield client
    client.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "frame"
