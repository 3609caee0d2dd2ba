"""Fault injection: crash, delay or drop chosen messages, by rule, at run time.

The receive loop asks the injector only when at least one rule is installed, so an idle
injector costs one truthiness test per message.
"""

from __future__ import annotations

import enum
import fnmatch
import itertools
import random
import re
from typing import Any

import msgspec


class FaultAction(enum.StrEnum):
    CRASH = "crash"
    """Raise ``InjectedFault`` in place of the handler: the actor crashes as if it had a bug."""
    DELAY = "delay"
    """Wait ``delay_s`` seconds, then handle the message normally."""
    DROP = "drop"
    """Discard the message unhandled; an asker gets no reply and times out."""


class FaultRule(msgspec.Struct, frozen=True, kw_only=True):
    """Which messages a fault hits.

    ``path`` is a glob over actor paths (``/domain/*``). ``message_type`` is a message class
    name, or None for any. Among matching messages the rule fires on the ``nth`` one only, or
    on each with ``probability`` (drawn from an RNG seeded with ``seed``, so runs repeat), or on
    every one; ``times`` caps how often it fires in all.
    """

    action: FaultAction
    path: str = "*"
    message_type: str | None = None
    nth: int | None = None
    probability: float | None = None
    seed: int = 0
    times: int | None = None
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.nth is not None and self.nth < 1:
            raise ValueError("nth counts from 1")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.nth is not None and self.probability is not None:
            raise ValueError("give nth or probability, not both")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1")
        if self.delay_s < 0:
            raise ValueError("delay_s must not be negative")


class InstalledFault(msgspec.Struct, frozen=True, kw_only=True):
    """An installed rule with what it has done so far."""

    rule_id: int
    rule: FaultRule
    matched: int
    fired: int


class _Active:
    __slots__ = ("fired", "id", "matched", "path_re", "rng", "rule")

    def __init__(self, rule_id: int, rule: FaultRule) -> None:
        self.id = rule_id
        self.rule = rule
        self.path_re = re.compile(fnmatch.translate(rule.path))
        self.rng = random.Random(rule.seed)
        self.matched = 0
        self.fired = 0

    def hit(self, path: str, message: Any) -> bool:
        rule = self.rule
        if rule.message_type is not None and type(message).__name__ != rule.message_type:
            return False
        if self.path_re.match(path) is None:
            return False
        if rule.times is not None and self.fired >= rule.times:
            return False
        self.matched += 1
        if rule.nth is not None:
            fire = self.matched == rule.nth
        elif rule.probability is not None:
            fire = self.rng.random() < rule.probability
        else:
            fire = True
        if fire:
            self.fired += 1
        return fire


class FaultInjector:
    """The set of installed fault rules of one actor system."""

    def __init__(self) -> None:
        self.rules: list[_Active] = []
        self._ids = itertools.count(1)

    def install(self, rule: FaultRule) -> int:
        """Install ``rule``; returns its id for ``remove``."""
        active = _Active(next(self._ids), rule)
        self.rules = [*self.rules, active]
        return active.id

    def remove(self, rule_id: int) -> bool:
        """Remove one rule; False when no rule has that id."""
        kept = [active for active in self.rules if active.id != rule_id]
        found = len(kept) != len(self.rules)
        self.rules = kept
        return found

    def clear(self) -> None:
        self.rules = []

    def installed(self) -> list[InstalledFault]:
        return [
            InstalledFault(rule_id=a.id, rule=a.rule, matched=a.matched, fired=a.fired)
            for a in self.rules
        ]

    def match(self, path: str, message: Any) -> FaultRule | None:
        """The rule that fires on this message, if any (the first installed wins)."""
        for active in self.rules:
            if active.hit(path, message):
                return active.rule
        return None
