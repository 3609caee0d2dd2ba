"""The one door to asyncio: libraries such as aiosqlite and aiomqtt run through it.

``trio-asyncio`` hosts a single asyncio event loop inside the Trio run, opened once at the root
of the actor system. No other module imports ``trio_asyncio`` or knows that asyncio exists:
they call ``bridge.run(coroutine_function, *args)``, enter ``bridge.context(cm)`` or iterate
``bridge.iterate(async_iterator)``. Each crossing costs a hand-off between the two loops, so
hot paths batch their work into few crossings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sized
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import trio_asyncio

from ._errors import lone_error

T = TypeVar("T")

log = logging.getLogger("supervision.asyncio")


class AsyncioBridge:
    """Calls into asyncio code from Trio tasks (any task of the run: the loop is bound here,
    not looked up in the calling task's context)."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop

    async def run(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``function(*args)`` on the asyncio loop; Trio cancellation is forwarded."""
        result: T = await trio_asyncio.aio_as_trio(function, loop=self._loop)(*args)
        return result

    def context(self, manager: AbstractAsyncContextManager[T]) -> AbstractAsyncContextManager[T]:
        """Use an asyncio async context manager (``async with``) from Trio."""
        wrapped: AbstractAsyncContextManager[T] = trio_asyncio.aio_as_trio(manager, loop=self._loop)
        return wrapped

    async def iterate(self, iterable: AsyncIterable[T]) -> AsyncIterator[T]:
        """Iterate an asyncio async iterable from Trio, one crossing per item."""
        async for batch in self.batches(iterable, 1):
            for item in batch:
                yield item

    async def run_all(
        self, function: Callable[..., Awaitable[T]], arguments: Iterable[tuple[Any, ...]]
    ) -> list[T]:
        """Await ``function(*args)`` for every ``args`` concurrently, in one crossing.

        Pipelining: N acknowledged MQTT publishes cost one hand-off and about one round trip,
        not N of each. Raises the first error; the other calls still run to their end.
        """
        calls = list(arguments)

        async def gather() -> list[T]:
            return list(await asyncio.gather(*(function(*args) for args in calls)))

        return await self.run(gather)

    async def batches(self, iterable: AsyncIterable[T], limit: int) -> AsyncIterator[list[T]]:
        """Iterate in lists, one crossing each: wait for an item, then take what is already
        queued (up to ``limit``) when the iterable is ``Sized`` (aiomqtt's messages are)."""
        iterator = aiter(iterable)
        sized = iterable if isinstance(iterable, Sized) else None

        async def take() -> list[T] | None:
            try:
                batch = [await anext(iterator)]
                if sized is not None:
                    while len(batch) < limit and len(sized) > 0:
                        batch.append(await anext(iterator))
            except StopAsyncIteration:
                return None
            return batch

        while True:
            batch = await self.run(take)
            if batch is None:
                return
            yield batch


def _log_unhandled(loop: Any, context: dict[str, Any]) -> None:
    """An error no asyncio code awaited (a future's exception never retrieved, a failing
    callback): logged. trio-asyncio's default handler raises it into the Trio run instead,
    which would take the whole hub down for a library's stray future."""
    log.error(
        "asyncio: %s", context.get("message", "unhandled error"), exc_info=context.get("exception")
    )


@asynccontextmanager
async def open_asyncio_bridge() -> AsyncIterator[AsyncioBridge]:
    """Open the asyncio loop for the duration of the block."""
    try:
        async with trio_asyncio.open_loop() as loop:
            loop.set_exception_handler(_log_unhandled)
            yield AsyncioBridge(loop)
    except BaseExceptionGroup as group:
        error = lone_error(group)
        if error is None:
            raise
        raise error from None
