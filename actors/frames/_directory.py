"""The frames' proxies by frame id."""

from __future__ import annotations

import re

from supervision import ActorNotFound, ActorRef, ChildDirectory, ChildSpec

from ._proxy import ProxyMessage

FRAME_ID = re.compile(r"[0-9a-f]{32}")
"""What the registry names frames (``new_id``): a name of another shape (the fleet's) is no
frame's."""


class FrameDirectory:
    """One proxy per paired frame, each named by its frame's id, beside the fleet that keeps
    them: the fleet starts and stops them, the bridge, the console and the OTA actor address
    one by id. A name that is not a frame id (``fleet``) finds nothing."""

    __slots__ = ("_children",)

    def __init__(self, children: ChildDirectory[ProxyMessage]) -> None:
        self._children = children

    def find(self, frame_id: str) -> ActorRef[ProxyMessage] | None:
        """The running proxy of ``frame_id``, or None."""
        if not FRAME_ID.fullmatch(frame_id):
            return None
        return self._children.find(frame_id)

    def get(self, frame_id: str) -> ActorRef[ProxyMessage]:
        """The running proxy of ``frame_id``; ``ActorNotFound`` (a 503 at the edges, to be
        retried: a frame paired a moment ago has its proxy starting) if there is none."""
        proxy = self.find(frame_id)
        if proxy is None:
            raise ActorNotFound(f"frame {frame_id}")
        return proxy

    def running(self, frame_id: str) -> bool:
        proxy = self.find(frame_id)
        return proxy is not None and proxy.alive

    async def start(self, specs: list[ChildSpec[ProxyMessage]]) -> None:
        await self._children.start(specs)

    async def stop(self, frame_id: str) -> None:
        await self._children.stop(frame_id)
