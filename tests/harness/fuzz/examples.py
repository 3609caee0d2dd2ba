"""Hypothesis examples drawn up front, to be sent to one live hub.

A hub per hypothesis example would be far too slow. ``draw`` runs hypothesis' generation phase
alone, seeded, and hands back the examples it produced; a test then sends them all to the same
hub and checks the outcome as a whole. The same seed gives the same examples (``--seed``), so a
failing run repeats exactly.
"""

from __future__ import annotations

import functools
from typing import TypeVar

import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

T = TypeVar("T")


async def drawn(strategy: st.SearchStrategy[T], count: int, seed: int) -> list[T]:
    """``draw`` in a worker thread: a live hub in the same process keeps running meanwhile
    (a long generation on the event loop would stall it past its MQTT keep-alive)."""
    return await trio.to_thread.run_sync(draw, strategy, count, seed)


def draw(strategy: st.SearchStrategy[T], count: int, seed: int) -> list[T]:
    """Up to ``count`` examples of ``strategy`` (fewer only if it has fewer), reproducibly
    chosen from ``seed``: hypothesis' generation phase without shrinking or its database."""
    found: list[T] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: T) -> None:
        found.append(example)

    collect()
    return found


@functools.cache
def json_values(max_leaves: int = 8) -> st.SearchStrategy[object]:
    """Any JSON value: scalars of every kind (unicode, huge and tiny numbers), nested lists
    and objects."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=16),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )
