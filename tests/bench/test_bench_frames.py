"""The frame benchmarks run end to end at a tiny size: each starts its own hub (in this process)
and simulator (a child process), prints its table and, last, one JSON line of its figures.
Figures are checked for being measured and sane, never against the benchmarks' targets."""

from __future__ import annotations

import json

import psutil
import pytest

from bench import e2e, fleet, ota


def _last_json_line(capsys: pytest.CaptureFixture[str]) -> dict[str, float]:
    figures: dict[str, float] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return figures


def _no_children_left() -> None:
    assert psutil.Process().children(recursive=True) == []


def test_upload_to_wall_benchmark_reports_latency_and_its_floor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures = e2e.main(json_output=True, frames=3, uploads=2)

    assert _last_json_line(capsys) == figures
    assert figures["frames"] == 3
    assert figures["uploads"] == 2
    assert 0 < figures["upload_to_wall_p50_s"] <= figures["upload_to_wall_p99_s"] < 60
    assert figures["first_frame_p50_s"] <= figures["upload_to_wall_p50_s"]
    assert 0 < figures["floor_s"] < figures["upload_to_wall_p50_s"]
    assert figures["p50_over_floor"] > 1
    _no_children_left()


def test_fleet_benchmark_reports_memory_mailboxes_and_mqtt_traffic(
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures = fleet.main(json_output=True, frames=20, idle_s=1.0, observe_s=3.0)

    assert _last_json_line(capsys) == figures
    assert figures["frames"] == figures["frame_proxies"] == 20
    assert figures["hub_rss_idle_mb"] > 0 and figures["hub_rss_mb"] > 0
    assert 0 <= figures["max_mailbox_depth"] < 1000
    assert figures["dropped"] == 0
    assert figures["heartbeats_per_s"] >= 0 and figures["mqtt_received_per_s"] >= 0
    assert figures["pairing_s"] > 0
    _no_children_left()


def test_ota_benchmark_reports_campaign_time_next_to_its_floor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures = ota.main(json_output=True, frames=4, batch=2, health_check_s=1.0)

    assert _last_json_line(capsys) == figures
    assert figures["frames"] == figures["completed"] == 4
    assert figures["failed"] == 0 and figures["batches"] == 2
    assert 0 < figures["download_floor_s"] < figures["floor_s"]
    # Batch after batch, each frame's health check runs before the next batch starts.
    assert figures["seconds"] >= figures["batches"] * figures["health_check_s"]
    assert 0 < figures["first_completed_s"] <= figures["seconds"]
    assert figures["seconds_over_floor"] == round(figures["seconds"] / figures["floor_s"], 3)
    _no_children_left()
