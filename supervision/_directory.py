"""Typed access to the children a supervisor starts at run time, by name."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from ._actor import ActorRef
from ._errors import ActorNotFound
from ._spec import ChildSpec

M = TypeVar("M")


class ChildDirectory(Generic[M]):
    """The dynamic children of one supervisor, all accepting ``M`` (Erlang's
    ``simple_one_for_one`` seen from outside): one frame proxy per frame under ``/frames``.

    Whoever assembles the tree builds it from the supervisor's declared ref and hands it to the
    actors that start, stop or address those children, so none of them knows where the
    children live.
    """

    __slots__ = ("_parent",)

    def __init__(self, parent: ActorRef[Any]) -> None:
        self._parent = parent

    def get(self, name: str) -> ActorRef[M]:
        """The live child ``name``; raises ``ActorNotFound``."""
        found = self.find(name)
        if found is None:
            raise ActorNotFound(name)
        return found

    def find(self, name: str) -> ActorRef[M] | None:
        """The live child ``name``, or None."""
        parent = self._parent._cell
        cell = parent.system.registry.get(f"{parent.path.rstrip('/')}/{name}")
        return None if cell is None else cell.ref

    async def start(self, specs: list[ChildSpec[M]]) -> list[ActorRef[M]]:
        """Start children (all or none by name; ``ValueError`` if one is taken); returns once
        each one's ``on_start`` has run."""
        parent = self._parent._cell
        return await parent.system.start_children(parent.path, list(specs))

    async def stop(self, name: str) -> None:
        """Stop child ``name`` for good (it drains its mailbox first) and forget it."""
        parent = self._parent._cell
        await parent.system.stop_child(parent.path, name)
