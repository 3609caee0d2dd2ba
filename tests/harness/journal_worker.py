"""A hub that publishes and handles events until it is killed: ``python -m
tests.harness.journal_worker DATABASE``.

Three publisher tasks commit file events (with the publisher's own ``files`` row in the same
transaction) as fast as they can; the ``counter`` subscriber writes one ``effects`` row per
event. A small buffer makes the subscriber fall behind and catch up from the table, so a
``kill -9`` finds committed events in every state: unhandled, buffered, mid-handling.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import trio

from actors.journal import Journal
from actors.store import Store
from supervision import open_asyncio_bridge, open_system
from tests.harness.journal import (
    Probe,
    deleted,
    open_store,
    publish,
    recorder,
    subscribers,
    uploaded,
)

SUBSCRIBER = "counter"


async def publisher(store: Store, number: int) -> None:
    rng = random.Random(os.getpid() * 10 + number)
    for k in range(1_000_000):
        prefix = f"{os.getpid()}-{number}-{k}"
        events = [
            (uploaded if rng.random() < 0.7 else deleted)(f"{prefix}-{i}")
            for i in range(rng.randint(1, 3))
        ]
        await publish(store, *events)


async def main(path: Path) -> None:
    async with open_asyncio_bridge() as bridge, open_store(path, bridge) as store:
        journal = Journal(store, buffer_capacity=16, batch_max=32)
        tree = subscribers([recorder(journal, SUBSCRIBER, Probe())])
        async with open_system(tree, bridge=bridge), trio.open_nursery() as nursery:
            print("publishing", flush=True)
            for number in range(3):
                nursery.start_soon(publisher, store, number)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]))
