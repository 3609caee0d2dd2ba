"""How a child is started and supervised: plain, frozen descriptions the runtime reads."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from ._actor import Actor, ActorRef

M = TypeVar("M")


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one of them fails (Erlang/OTP names)."""

    ONE_FOR_ONE = "one_for_one"
    """Only the failed child."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: the others are stopped (in reverse start order) and all start again in order."""
    REST_FOR_ONE = "rest_for_one"
    """The failed child and every child started after it."""


class Restart(enum.StrEnum):
    """When a child that ended is started again."""

    PERMANENT = "permanent"
    """Always."""
    TRANSIENT = "transient"
    """Only when it ended abnormally (crashed or was killed), not when it stopped normally."""
    TEMPORARY = "temporary"
    """Never; it is removed from its supervisor when it ends."""


@dataclass(frozen=True, slots=True)
class Intensity:
    """At most ``max_restarts`` restarts within ``within_s`` seconds, or the supervisor gives up."""

    max_restarts: int = 5
    within_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before the k-th consecutive restart of a child.

    The first restart after a quiet period is immediate (as in OTP); each further one waits
    ``min_s * 2**(k-1)`` seconds, capped at ``max_s``, stretched by a random factor in
    ``[0, jitter]`` so that restarting children do not move in lock step. After ``reset_s``
    seconds without a restart the count starts again from zero.
    """

    min_s: float = 0.1
    max_s: float = 5.0
    jitter: float = 0.2
    reset_s: float = 10.0

    def delay(self, consecutive: int, random_factor: float) -> float:
        if consecutive <= 0:
            return 0.0
        base = min(self.max_s, self.min_s * 2.0 ** min(consecutive - 1, 64))
        return base * (1.0 + self.jitter * random_factor)


@dataclass(frozen=True, slots=True)
class Supervision:
    """How an actor supervises its own children."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: Intensity = field(default_factory=Intensity)
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True, slots=True)
class ChildSpec(Generic[M]):
    """Everything needed to start (and restart) one actor.

    ``factory`` builds a fresh actor for every incarnation: state that must survive a restart
    belongs in the database, not in the factory's closure. ``children`` are started in order
    once ``on_start`` has returned, and stopped in reverse order before ``on_stop``.
    """

    name: str
    factory: Callable[[], Actor[M]]
    restart: Restart = Restart.PERMANENT
    mailbox_capacity: int = 1000
    shutdown_timeout: float = 5.0
    supervision: Supervision = field(default_factory=Supervision)
    children: tuple[ChildSpec[Any], ...] = ()
    ref: ActorRef[M] | None = None
    """A ref declared beforehand (``ActorRef.declare()``) that the started actor answers to."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name in {".", ".."}:
            raise ValueError(f"invalid actor name {self.name!r}")
        if self.mailbox_capacity < 1:
            raise ValueError(f"{self.name}: mailbox_capacity must be at least 1")
        if self.shutdown_timeout <= 0:
            raise ValueError(f"{self.name}: shutdown_timeout must be positive")
        names = [child.name for child in self.children]
        if len(names) != len(set(names)):
            raise ValueError(f"{self.name}: duplicate child names in {names}")
