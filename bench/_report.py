"""Shared helpers for benchmarks: percentiles, targets, a printed table and the JSON last line.

A benchmark collects its figures into a ``Report``: ``compare`` for a figure measured on
framehub and on a peer library (the ratio is framehub / peer), ``single`` for a figure of
framehub alone. Targets are information: they are printed with "met" or "MISSED" and never turn
into an assertion or an exit code. ``section`` adds a table of details (a figure per time window,
say) printed after the figures, whose figures go into the JSON line too.
"""

from __future__ import annotations

import argparse
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec

Figure = float | int
Op = Literal["<", "<=", ">", ">="]

_OPS: dict[Op, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in [0, 100]) of ``samples``."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class Target:
    """``value <op> bound``; ``of_peer`` makes the bound a multiple of the peer (a ratio)."""

    op: Op
    bound: float
    of_peer: bool = False

    def met(self, value: float) -> bool:
        return _OPS[self.op](value, self.bound)

    def describe(self, unit: str, peer: str) -> str:
        if self.of_peer:
            return f"{self.op} {self.bound:g}x {peer}"
        return f"{self.op} {self.bound:g} {unit}"


@dataclass(slots=True)
class _Row:
    label: str
    unit: str
    ours: Figure
    peer: Figure | None
    ratio: float | None
    target: Target | None
    checked: float | None  # what the target is checked against

    def met(self) -> bool | None:
        if self.target is None or self.checked is None:
            return None
        return self.target.met(self.checked)


@dataclass(slots=True)
class Report:
    """Figures of one benchmark run, in the order they are added."""

    title: str
    ours_name: str = "framehub"
    peer_name: str = "peer"
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _rows: list[_Row] = field(default_factory=list)
    _sections: list[tuple[str, list[tuple[str, ...]]]] = field(default_factory=list)

    def _put(self, key: str, value: Figure) -> None:
        if key in self.figures:
            raise ValueError(f"figure {key!r} reported twice")
        self.figures[key] = value

    def compare(
        self,
        label: str,
        unit: str,
        ours: tuple[str, Figure],
        peer: tuple[str, Figure],
        ratio_key: str,
        target: Target | None = None,
        ratio_digits: int = 3,
    ) -> float:
        """Record a figure of both libraries and their ratio (ours / peer); returns the ratio."""
        (ours_key, ours_value), (peer_key, peer_value) = ours, peer
        ratio = round(ours_value / peer_value, ratio_digits) if peer_value else math.inf
        self._put(ours_key, ours_value)
        self._put(peer_key, peer_value)
        self._put(ratio_key, ratio)
        checked = ratio if target is not None and target.of_peer else float(ours_value)
        self._rows.append(_Row(label, unit, ours_value, peer_value, ratio, target, checked))
        return ratio

    def single(
        self, label: str, unit: str, key: str, value: Figure, target: Target | None = None
    ) -> None:
        """Record a figure measured on our side only."""
        self._put(key, value)
        self._rows.append(_Row(label, unit, value, None, None, target, float(value)))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def section(
        self,
        title: str,
        header: tuple[str, ...],
        rows: Sequence[tuple[str, ...]],
        figures: dict[str, Figure],
    ) -> None:
        """A table of details printed after the figures (cells already formatted, the first
        column left-aligned); its ``figures`` go into the JSON line only."""
        for key, value in figures.items():
            self._put(key, value)
        self._sections.append((title, [header, *rows]))

    def missed(self) -> list[str]:
        return [row.label for row in self._rows if row.met() is False]

    def render(self) -> str:
        header = ("figure", "unit", self.ours_name, self.peer_name, "ratio", "target", "met")
        lines: list[tuple[str, ...]] = [header]
        for row in self._rows:
            met = row.met()
            lines.append(
                (
                    row.label,
                    row.unit,
                    fmt(row.ours),
                    fmt(row.peer) if row.peer is not None else "-",
                    f"{row.ratio:.3f}" if row.ratio is not None else "-",
                    row.target.describe(row.unit, self.peer_name) if row.target else "-",
                    "-" if met is None else ("met" if met else "MISSED"),
                )
            )
        out = [self.title, "=" * len(self.title), *_table(lines, left={0, 1, 5, 6})]
        missed = self.missed()
        out.append("")
        out.append(
            "targets (information only): "
            + (f"{len(missed)} missed: {', '.join(missed)}" if missed else "all met")
        )
        for title, table in self._sections:
            out.extend(["", title, *_table(table, left={0})])
        out.extend(f"note: {text}" for text in self.notes)
        return "\n".join(out)

    def finish(self, json_output: bool) -> dict[str, Figure]:
        """Print the table, then (with ``json_output``) the JSON object as the last line."""
        print(self.render(), flush=True)
        if json_output:
            print(msgspec.json.encode(self.figures).decode(), flush=True)
        return dict(self.figures)


def _table(lines: list[tuple[str, ...]], left: set[int]) -> list[str]:
    """``lines`` (a header first) in aligned columns, a rule under the header; the columns in
    ``left`` are left-aligned, the others right-aligned."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def fmt_line(line: tuple[str, ...]) -> str:
        cells = (
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [fmt_line(lines[0]), rule, *(fmt_line(line) for line in lines[1:])]


def fmt(value: Figure) -> str:
    """A figure as the tables print it."""
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}"


def run_cli(
    prog: str,
    description: str | None,
    main: Callable[..., object],
    *,
    minutes: float | None = None,
) -> None:
    """``python -m bench.NAME [--json]``: the command line every benchmark module shares. With
    ``minutes`` (its default), ``--minutes M`` too, passed on as ``main(json, minutes=M)``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON last")
    if minutes is not None:
        parser.add_argument(
            "--minutes", type=float, default=minutes, help="minutes measured (default %(default)g)"
        )
    args = parser.parse_args()
    if minutes is None:
        main(args.json)
    else:
        main(args.json, minutes=args.minutes)
