"""The one door to asyncio: libraries such as aiosqlite and aiomqtt run through it.

``trio-asyncio`` hosts a single asyncio event loop inside the Trio run, opened once at the root
of the actor system. No other module imports ``trio_asyncio`` or knows that asyncio exists:
they call ``bridge.run(coroutine_function, *args)``, enter ``bridge.context(cm)`` or iterate
``bridge.iterate(async_iterator)``. Each crossing costs a hand-off between the two loops, so
hot paths batch their work into few crossings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import trio_asyncio

from ._errors import lone_error

T = TypeVar("T")


class AsyncioBridge:
    """Calls into asyncio code from Trio tasks."""

    async def run(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``function(*args)`` on the asyncio loop; Trio cancellation is forwarded."""
        result: T = await trio_asyncio.aio_as_trio(function)(*args)
        return result

    def context(self, manager: AbstractAsyncContextManager[T]) -> AbstractAsyncContextManager[T]:
        """Use an asyncio async context manager (``async with``) from Trio."""
        wrapped: AbstractAsyncContextManager[T] = trio_asyncio.aio_as_trio(manager)
        return wrapped

    def iterate(self, iterator: AsyncIterator[T]) -> AsyncIterator[T]:
        """Iterate an asyncio async iterator from Trio."""
        wrapped: AsyncIterator[T] = trio_asyncio.aio_as_trio(iterator)
        return wrapped


@asynccontextmanager
async def open_asyncio_bridge() -> AsyncIterator[AsyncioBridge]:
    """Open the asyncio loop for the duration of the block."""
    try:
        async with trio_asyncio.open_loop():
            yield AsyncioBridge()
    except BaseExceptionGroup as group:
        error = lone_error(group)
        if error is None:
            raise
        raise error from None
