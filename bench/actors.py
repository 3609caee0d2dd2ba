"""Actor runtime benchmark: framehub (Trio) side by side with pykka (threads), in one run.

``python run.py bench actors [--json]`` or ``python -m bench.actors [--json]``.

1. tell throughput: one actor, 200,000 msgspec Struct messages, first send to last handled.
2. ask round trip: 20,000 sequential asks after 1,000 warm-up asks; p50 and p99.
3. memory per idle actor: RSS delta of 2,000 idle actors (and 10,000 for framehub alone).
4. start time per actor: the wall time of starting those 2,000 actors, divided by 2,000.
5. restart latency (framehub only): crash a permanent child, then ask the new incarnation.

Memory and start time are measured in a fresh subprocess per library
(``python -m bench.actors --only mem-framehub --count 2000``), so that one library's garbage
or threads never show up in the other's figure. Ratios are framehub / pykka.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pykka
import trio

from bench._report import Report, Target, percentile
from supervision import (
    Actor,
    ActorCrashed,
    Backoff,
    ChildSpec,
    Intensity,
    Request,
    open_system,
    supervisor,
)

TELL_MESSAGES = 200_000
ASK_WARMUP = 1_000
ASK_COUNT = 20_000
MEM_ACTORS = 2_000
MEM_ACTORS_LARGE = 10_000
MEM_WARMUP = 16
"""Actors started before the RSS baseline, so that one-time costs (first use of code paths,
first thread arena, interned strings) are not spread over the measured actors."""
RESTART_WARMUP = 100
RESTART_COUNT = 2_000
RESTART_BACKOFF = Backoff(min_s=0.0, max_s=0.0, jitter=0.0, reset_s=0.0)
"""No back-off at all. ``reset_s=0`` also keeps the consecutive-restart count at zero: as of
this writing ``Backoff.delay`` computes ``2.0 ** (k - 1)`` before capping it at ``max_s``, which
raises OverflowError (and fails the supervisor) from the 1,025th consecutive restart on."""
RESTART_INTENSITY = Intensity(max_restarts=10**9, within_s=1.0)
SUBPROCESS_TIMEOUT_S = 120.0

_ROOT = Path(__file__).resolve().parents[1]


# -- messages (the same objects go to both libraries) -----------------------------------------


class Tick(msgspec.Struct, frozen=True):
    n: int


class Ping(Request[object], frozen=True):
    """Echo answers with the message itself, the crashing actor with its incarnation."""


class Crash(Request[None], frozen=True):
    pass


# -- framehub actors --------------------------------------------------------------------------


class Counter(Actor[Tick]):
    def __init__(self, expected: int, done: trio.Event) -> None:
        self.expected = expected
        self.done = done
        self.count = 0

    async def receive(self, message: Tick) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done.set()


class Echo(Actor[Ping]):
    async def receive(self, message: Ping) -> Ping:
        return message


class Idle(Actor[Any]):
    pass


_incarnations = itertools.count(1)


class Fragile(Actor[Ping | Crash]):
    """Crashes on ``Crash``; answers ``Ping`` with the number of its incarnation."""

    def __init__(self) -> None:
        self.incarnation = next(_incarnations)

    async def receive(self, message: Ping | Crash) -> int:
        if isinstance(message, Crash):
            raise RuntimeError("crash requested by the benchmark")
        return self.incarnation


# -- pykka actors -----------------------------------------------------------------------------


class PykkaCounter(pykka.ThreadingActor):
    def __init__(self, expected: int, done: threading.Event) -> None:
        super().__init__()
        self.expected = expected
        self.done = done
        self.count = 0

    def on_receive(self, message: Any) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done.set()


class PykkaEcho(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


class PykkaIdle(pykka.ThreadingActor):
    pass


# -- helpers ----------------------------------------------------------------------------------


@contextmanager
def _quiet_runtime() -> Iterator[None]:
    # The restart benchmark crashes an actor thousands of times and each crash is logged with
    # its traceback. The benchmark measures the runtime, not the log handler, so the runtime's
    # logger is silenced for its duration (the runtime then skips formatting altogether).
    logger = logging.getLogger("supervision")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _progress(text: str) -> None:
    print(f"[bench actors] {text}", file=sys.stderr, flush=True)


def _rss() -> int:
    rss: int = psutil.Process().memory_info().rss
    return rss


def _timed_samples(count: int, warmup: int, step: Callable[[], object]) -> list[float]:
    """Run ``step`` ``warmup + count`` times; the last ``count`` durations in microseconds."""
    clock = time.perf_counter_ns
    samples: list[float] = []
    for i in range(warmup + count):
        t0 = clock()
        step()
        t1 = clock()
        if i >= warmup:
            samples.append((t1 - t0) / 1000.0)
    return samples


# -- 1. tell throughput -----------------------------------------------------------------------


async def _framehub_tell(messages: list[Tick]) -> float:
    done = trio.Event()
    count = len(messages)
    async with open_system(supervisor("bench"), with_asyncio=False) as system:
        ref = await system.start_child(
            "/", ChildSpec(name="counter", factory=lambda: Counter(count, done))
        )
        gc.collect()
        t0 = time.perf_counter()
        for message in messages:
            await ref.tell(message)
        await done.wait()
        elapsed = time.perf_counter() - t0
    return count / elapsed


def _pykka_tell(messages: list[Tick]) -> float:
    done = threading.Event()
    ref = PykkaCounter.start(len(messages), done)
    try:
        gc.collect()
        t0 = time.perf_counter()
        for message in messages:
            ref.tell(message)
        done.wait()
        elapsed = time.perf_counter() - t0
    finally:
        ref.stop()
    return len(messages) / elapsed


# -- 2. ask round trip ------------------------------------------------------------------------


async def _framehub_ask() -> list[float]:
    ping = Ping()
    clock = time.perf_counter_ns
    samples: list[float] = []
    async with open_system(supervisor("bench"), with_asyncio=False) as system:
        ref = await system.start_child("/", ChildSpec(name="echo", factory=Echo))
        for _ in range(ASK_WARMUP):
            await ref.ask(ping)
        gc.collect()
        for _ in range(ASK_COUNT):
            t0 = clock()
            await ref.ask(ping)
            t1 = clock()
            samples.append((t1 - t0) / 1000.0)
    return samples


def _pykka_ask() -> list[float]:
    ping = Ping()
    ref = PykkaEcho.start()
    try:
        for _ in range(ASK_WARMUP):
            ref.ask(ping)
        gc.collect()
        return _timed_samples(ASK_COUNT, 0, lambda: ref.ask(ping))
    finally:
        ref.stop()


# -- 5. restart latency -----------------------------------------------------------------------


async def _framehub_restart() -> list[float]:
    crash, ping = Crash(), Ping()
    clock = time.perf_counter_ns
    samples: list[float] = []
    root = supervisor("bench", intensity=RESTART_INTENSITY, backoff=RESTART_BACKOFF)
    async with open_system(root, with_asyncio=False) as system:
        ref = await system.start_child("/", ChildSpec(name="fragile", factory=Fragile))
        previous = await ref.ask(ping)
        gc.collect()
        for i in range(RESTART_WARMUP + RESTART_COUNT):
            t0 = clock()
            try:
                await ref.ask(crash)
            except ActorCrashed:
                pass
            else:
                raise RuntimeError("the Crash message did not crash the actor")
            incarnation = await ref.ask(ping)
            t1 = clock()
            if incarnation == previous:
                raise RuntimeError("Ping was answered by the crashed incarnation")
            previous = incarnation
            if i >= RESTART_WARMUP:
                samples.append((t1 - t0) / 1000.0)
    return samples


# -- 3 + 4. memory and start time (each in a fresh subprocess) --------------------------------


class MemResult(msgspec.Struct, frozen=True):
    count: int
    rss_delta_bytes: int
    start_s: float


async def _framehub_mem(count: int) -> MemResult:
    root = supervisor("bench", [supervisor("pool")])
    async with open_system(root, with_asyncio=False) as system:
        warm = [ChildSpec(name=f"warm{i}", factory=Idle) for i in range(MEM_WARMUP)]
        await system.start_children("/pool", warm)
        await trio.sleep(0.05)
        gc.collect()
        before = _rss()
        t0 = time.perf_counter()
        # Building the specs is part of starting an actor (and the spec lives as long as it).
        specs = [ChildSpec(name=f"a{i}", factory=Idle) for i in range(count)]
        refs = await system.start_children("/pool", specs)
        elapsed = time.perf_counter() - t0
        await trio.sleep(0.05)
        gc.collect()
        after = _rss()
        if len(refs) != count or not all(ref.alive for ref in refs):
            raise RuntimeError("not every actor started")
    return MemResult(count=count, rss_delta_bytes=after - before, start_s=elapsed)


def _pykka_mem(count: int) -> MemResult:
    try:
        for _ in range(MEM_WARMUP):
            PykkaIdle.start()
        time.sleep(0.05)
        gc.collect()
        before = _rss()
        t0 = time.perf_counter()
        refs = [PykkaIdle.start() for _ in range(count)]
        elapsed = time.perf_counter() - t0
        time.sleep(0.05)
        gc.collect()
        after = _rss()
        if not all(ref.is_alive() for ref in refs):
            raise RuntimeError("not every actor started")
    finally:
        pykka.ActorRegistry.stop_all()
    return MemResult(count=count, rss_delta_bytes=after - before, start_s=elapsed)


def _run_mem_subprocess(library: str, count: int) -> MemResult:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "bench.actors", "--only", f"mem-{library}"]
    command += ["--count", str(count)]
    done = subprocess.run(
        command,
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=MemResult)


# -- the whole run ----------------------------------------------------------------------------


def main(json_output: bool) -> dict[str, float | int]:
    """Run every measurement, print the table (and the JSON last line); return the figures."""
    with _quiet_runtime():
        try:
            return _run(json_output)
        finally:
            pykka.ActorRegistry.stop_all()


def _run(json_output: bool) -> dict[str, float | int]:
    cpus = os.cpu_count()
    _progress(f"memory and start time, {MEM_ACTORS:,} actors each, in subprocesses")
    mem_fh = _run_mem_subprocess("framehub", MEM_ACTORS)
    mem_pk = _run_mem_subprocess("pykka", MEM_ACTORS)
    _progress(f"memory, {MEM_ACTORS_LARGE:,} framehub actors")
    mem_fh_large = _run_mem_subprocess("framehub", MEM_ACTORS_LARGE)

    messages = [Tick(i) for i in range(TELL_MESSAGES)]
    _progress(f"tell throughput, {TELL_MESSAGES:,} messages")
    tell_fh = trio.run(_framehub_tell, messages)
    tell_pk = _pykka_tell(messages)
    del messages

    _progress(f"ask round trip, {ASK_COUNT:,} asks")
    ask_fh = trio.run(_framehub_ask)
    ask_pk = _pykka_ask()

    _progress(f"restart latency, {RESTART_COUNT:,} restarts")
    restarts = trio.run(_framehub_restart)

    report = Report(
        f"framehub (Trio) vs pykka {_version('pykka')} (threads), actors benchmark",
        peer_name="pykka",
    )
    report.compare(
        f"tell throughput ({TELL_MESSAGES:,} msgs)",
        "msg/s",
        ("tell_per_s", round(tell_fh, 1)),
        ("tell_per_s_pykka", round(tell_pk, 1)),
        "tell_ratio",
        Target(">=", 5.0, of_peer=True),
    )
    for q, key in ((50, "p50"), (99, "p99")):
        report.compare(
            f"ask round trip {key}",
            "us",
            (f"ask_{key}_us", round(percentile(ask_fh, q), 2)),
            (f"ask_{key}_us_pykka", round(percentile(ask_pk, q), 2)),
            f"ask_{key}_ratio",
            Target("<=", 0.6, of_peer=True),
        )
    report.compare(
        f"memory per idle actor ({MEM_ACTORS:,})",
        "bytes",
        ("mem_per_actor_bytes", mem_fh.rss_delta_bytes // mem_fh.count),
        ("mem_per_actor_bytes_pykka", mem_pk.rss_delta_bytes // mem_pk.count),
        "mem_ratio",
        Target("<=", 0.35, of_peer=True),
    )
    report.single(
        f"memory per idle actor ({MEM_ACTORS_LARGE:,})",
        "bytes",
        "mem_per_actor_10k_bytes",
        mem_fh_large.rss_delta_bytes // mem_fh_large.count,
    )
    report.compare(
        f"start time per actor ({MEM_ACTORS:,})",
        "us",
        ("start_us", round(mem_fh.start_s / mem_fh.count * 1e6, 2)),
        ("start_us_pykka", round(mem_pk.start_s / mem_pk.count * 1e6, 2)),
        "start_ratio",
        Target("<=", 0.1, of_peer=True),
    )
    report.single(
        "restart latency p50",
        "us",
        "restart_p50_us",
        round(percentile(restarts, 50), 2),
        Target("<", 200.0),
    )
    report.single("restart latency p99", "us", "restart_p99_us", round(percentile(restarts, 99), 2))

    report.note(
        f"python {sys.version.split()[0]}, trio {trio.__version__}, {cpus} CPUs; framehub systems"
        " opened with with_asyncio=False and the default batch_size (64) and mailbox capacity"
        " (1000, so tell meets backpressure); pykka mailboxes are unbounded queues"
    )
    report.note(
        f"asks: {ASK_WARMUP:,} warm-up then {ASK_COUNT:,} timed, one at a time; framehub with"
        " the default ask timeout (5 s), pykka without a timeout (its default)"
    )
    report.note("gc.collect() before each timed section; the collector stays enabled while timing")
    report.note(
        "memory: RSS delta after gc.collect(), each library in a fresh subprocess,"
        f" {MEM_WARMUP} warm-up actors before the baseline; framehub actors are dynamic"
        " children of one supervisor started by a single start_children call (spec building"
        " included in the start time); pykka actors by PykkaIdle.start() each (one thread each)"
    )
    report.note(
        f"restart: {RESTART_COUNT:,} restarts after {RESTART_WARMUP} warm-up, from ask(Crash())"
        " to the new incarnation's answer to ask(Ping()), nothing subtracted; supervisor"
        f" {RESTART_INTENSITY}, {RESTART_BACKOFF}: every restart immediate (with the default"
        " Backoff only the first restart after a quiet period would be; reset_s=0 also keeps"
        " Backoff.delay clear of its OverflowError after 1,024 consecutive restarts)"
    )
    return report.finish(json_output)


def _subprocess_entry(only: str, count: int) -> None:
    with _quiet_runtime():
        if only == "mem-framehub":
            result = trio.run(_framehub_mem, count)
        elif only == "mem-pykka":
            result = _pykka_mem(count)
        else:
            raise SystemExit(f"unknown --only {only!r}")
    print(json.dumps(msgspec.to_builtins(result)), flush=True)


def _cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.actors",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON last")
    parser.add_argument("--only", choices=["mem-framehub", "mem-pykka"], help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=MEM_ACTORS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        _subprocess_entry(args.only, args.count)
    else:
        main(args.json)


if __name__ == "__main__":
    _cli()
