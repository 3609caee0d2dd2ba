"""Fault plans over every (actor, message type) pair the hub's actors handle.

``fault_targets`` enumerates the pairs from the running system: each actor under ``/domain``,
the frame fleet, every per-frame proxy (``/frames/<frame id>``, one path glob for all of them)
and the MQTT bridge, with each message type of its ``Actor[MessageUnion]`` type argument. A
message type added to an actor's union, or an actor added under ``/domain``, is a new pair
without touching the tests.

A plan installs ``supervision.FaultRule``s on ``system.faults``: ``observe`` (probability 0:
they count the messages each pair sees and never fire, for the fault-free run), ``each_once``
(every pair crashes once, on a seeded ``nth`` of its messages), ``random_faults`` (a few
seeded pairs crash with a probability, a bounded number of times) and ``single`` (one pair).
``Installed`` reads back what each rule matched and fired.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import actors
from actors.frames import FrameProxy
from supervision import Actor, ActorSnapshot, ActorSystem, FaultAction, FaultRule

DOMAIN = "/domain"
FRAME_PROXIES = "/frames/" + "[0-9a-f]" * 32
"""Every frame proxy's path (frame ids are 32 hex digits; ``/frames/fleet`` is not one)."""
NTH_AT_MOST = 3
"""A pair's fault fires on one of its first few messages (those the fault-free run saw)."""


@dataclass(frozen=True, order=True)
class Target:
    """Messages of one type to one actor (``path`` may be a glob)."""

    path: str
    message_type: str
    actor: str

    def __str__(self) -> str:
        return f"{self.path} {self.message_type}"

    @property
    def label(self) -> str:
        where = "/frames/<id>" if self.path == FRAME_PROXIES else self.path
        return f"{where} {self.message_type}"


def _union_members(annotation: Any) -> Iterator[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            yield from _union_members(member)
    else:
        yield annotation


def message_types(actor_class: type[Any]) -> list[str]:
    """The names of the message types ``actor_class`` handles: the members of the union it
    gave ``Actor[...]`` (found on it or its bases)."""
    for klass in actor_class.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is Actor:
                (union,) = typing.get_args(base)
                return sorted({member.__name__ for member in _union_members(union)})
    raise TypeError(f"{actor_class.__name__} does not say which messages it takes")


def _actor_classes() -> dict[str, type[Any]]:
    """Every ``Actor`` subclass in the ``actors`` package, by class name."""
    for module in pkgutil.walk_packages(actors.__path__, "actors."):
        importlib.import_module(module.name)
    found: dict[str, type[Any]] = {}
    pending: list[type[Any]] = [Actor]
    while pending:
        klass = pending.pop()
        for sub in klass.__subclasses__():
            found[sub.__name__] = sub
            pending.append(sub)
    return found


def _find(node: ActorSnapshot, path: str) -> ActorSnapshot:
    if node.path == path:
        return node
    for child in node.children:
        if path == child.path or path.startswith(child.path + "/"):
            return _find(child, path)
    raise LookupError(path)


def fault_targets(system: ActorSystem) -> list[Target]:
    """Every (actor, message type) pair to crash (see the module's docstring)."""
    classes = _actor_classes()
    root = system.snapshot()
    actors_at: list[tuple[str, str]] = [
        (child.path, child.actor_class) for child in _find(root, DOMAIN).children
    ]
    actors_at.append(("/frames/fleet", _find(root, "/frames/fleet").actor_class))
    actors_at.append((FRAME_PROXIES, FrameProxy.__name__))
    actors_at.append(("/infra/mqtt", _find(root, "/infra/mqtt").actor_class))
    targets = [
        Target(path, message_type, name)
        for path, name in actors_at
        for message_type in message_types(classes[name])
    ]
    return sorted(targets)


# -- plans -------------------------------------------------------------------------------------


@dataclass
class Installed:
    """Rules a plan installed on a system, by target."""

    system: ActorSystem
    rules: dict[Target, int]

    def counts(self) -> dict[Target, tuple[int, int]]:
        """(matched, fired) of each target's rule."""
        by_id = {i.rule_id: (i.matched, i.fired) for i in self.system.faults.installed()}
        return {target: by_id.get(rule_id, (0, 0)) for target, rule_id in self.rules.items()}

    def fired(self) -> dict[Target, int]:
        return {target: fired for target, (_, fired) in self.counts().items() if fired}

    def matched(self) -> dict[Target, int]:
        return {target: matched for target, (matched, _) in self.counts().items()}

    def remove(self) -> None:
        for rule_id in self.rules.values():
            self.system.faults.remove(rule_id)


def _install(system: ActorSystem, rules: dict[Target, FaultRule]) -> Installed:
    return Installed(system, {t: system.faults.install(rule) for t, rule in rules.items()})


def _crash(target: Target, **choice: Any) -> FaultRule:
    return FaultRule(
        action=FaultAction.CRASH, path=target.path, message_type=target.message_type, **choice
    )


def observe(system: ActorSystem, targets: list[Target]) -> Installed:
    """Rules that never fire (probability 0) but count each target's messages."""
    rules = {
        t: FaultRule(
            action=FaultAction.CRASH, path=t.path, message_type=t.message_type, probability=0.0
        )
        for t in targets
    }
    return _install(system, rules)


def nth_of(rng: random.Random, seen: int) -> int:
    """A seeded ``nth`` among the first messages the fault-free run saw of a pair."""
    return rng.randint(1, max(1, min(seen, NTH_AT_MOST)))


def each_once(
    system: ActorSystem, targets: list[Target], seen: dict[Target, int], seed: int
) -> Installed:
    """Every target crashes once, on a seeded ``nth`` of its messages."""
    rng = random.Random(seed)
    rules = {t: _crash(t, nth=nth_of(rng, seen.get(t, 0)), times=1) for t in targets}
    return _install(system, rules)


def random_faults(
    system: ActorSystem,
    targets: list[Target],
    seen: dict[Target, int],
    seed: int,
    *,
    count: int,
    probability: float,
    times: int,
) -> Installed:
    """``count`` seeded targets among those the fault-free run sent at least ``times``
    messages, each crashing on a message with ``probability`` (its own seeded draw), at most
    ``times`` times."""
    rng = random.Random(seed)
    exercised = sorted(t for t in targets if seen.get(t, 0) >= times)
    chosen = rng.sample(exercised, min(count, len(exercised)))
    rules = {
        t: _crash(t, probability=probability, seed=rng.randrange(2**31), times=times)
        for t in chosen
    }
    return _install(system, rules)


def single(system: ActorSystem, target: Target, seen: int, seed: int) -> Installed:
    """One target crashing once, on a seeded ``nth`` of its messages."""
    rng = random.Random(f"{seed}:{target}")
    return _install(system, {target: _crash(target, nth=nth_of(rng, seen), times=1)})
