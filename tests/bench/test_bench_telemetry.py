"""The telemetry benchmark runs end to end at a tiny size: its own hub (in this process), its
publisher (a child process), a ceiling and a hub pass, its table and, last, one JSON line of
its figures. Figures are checked for being measured and sane, never against the targets."""

from __future__ import annotations

import json

import psutil
import pytest

from bench import telemetry


def test_telemetry_benchmark_reports_ingest_next_to_its_ceiling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures = telemetry.main(json_output=True, frames=3, samples=1200, rounds=1)

    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == figures
    for key in ("samples_per_s", "ceiling_per_s", "ratio", "lost"):
        assert key in figures
    assert figures["frames"] == 3 and figures["rounds"] == 1
    assert figures["published"] == 1200
    assert figures["lost"] == 0 and figures["ceiling_lost"] == 0
    assert figures["stored"] == figures["table_rows"] == 1200
    assert figures["samples_per_s"] > 0 and figures["ceiling_per_s"] > 0
    assert figures["ratio"] == round(figures["samples_per_s"] / figures["ceiling_per_s"], 3)
    assert figures["flushes"] >= 1 and figures["bridge_dropped"] == 0
    assert psutil.Process().children(recursive=True) == []
