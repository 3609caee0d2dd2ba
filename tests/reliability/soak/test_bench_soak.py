"""The soak benchmark runs end to end for a minute (CI's version; ``--long``: the full ten minutes
with 200 frames): its own hub (``run.py serve``, a child process), simulator and load, its tables
and, last, one JSON line of its figures. Figures are checked for being measured and consistent
(nothing lost, mailboxes within their capacity, every window reported), never against the
benchmark's targets (RSS growth, p99 flatness: those the benchmark reports)."""

from __future__ import annotations

import json

import psutil
import pytest

from bench import soak


def test_soak_benchmark_reports_memory_mailboxes_and_latency_over_time(
    capsys: pytest.CaptureFixture[str], long_run: bool, seed: int
) -> None:
    if long_run:
        figures = soak.main(json_output=True, seed=seed)
    else:
        # A smaller fleet (set-up takes seconds, not minutes) beating faster (its telemetry
        # comes every 10th heartbeat: within the minute).
        figures = soak.main(
            json_output=True,
            minutes=1,
            frames=10,
            users=2,
            albums_per_user=1,
            heartbeat_s=3,
            seed=seed,
        )

    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == figures
    assert figures["minutes"] == (soak.MINUTES if long_run else 1)
    # Every upload the hub acknowledged is on every frame of its albums, each deleted one on
    # none; nothing was refused.
    assert figures["uploads_total"] > figures["albums"]  # the warm-up's, then the soak's
    assert figures["uploads"] >= 1 and figures["deleted"] >= 1
    assert figures["uploads_lost"] == figures["deliveries_missing"] == 0
    assert figures["deleted_still_held"] == 0
    assert figures["uploads_failed"] == figures["delete_failures"] == 0
    assert 0 <= figures["uploads_late"] <= figures["uploads_total"]
    # Reported, not judged: a loaded machine may time a download out, a sync may list a photo
    # deleted before the frame fetches it.
    assert figures["frame_errors"] >= 0 and figures["frame_errors_deleted"] >= 0
    # Every sample the frames sent was stored.
    assert figures["telemetry_sent"] > 0
    assert figures["telemetry_stored"] == figures["telemetry_sent"]
    assert figures["telemetry_lost"] == figures["telemetry_dropped"] == 0
    # Mailboxes stayed within their capacity; no actor crashed; the hub logged no error.
    assert 0 <= figures["max_mailbox_depth"] < figures["mailbox_capacity"]
    assert figures["mailbox_full_snapshots"] == 0
    assert figures["actor_restarts"] == 0 and figures["hub_log_errors"] == 0
    # Each window is reported, and the windows add up to the soak.
    windows = int(figures["windows"])
    assert windows == round(figures["minutes"] * 60 / figures["window_s"]) >= 2
    assert sum(figures[f"w{n}_uploads"] for n in range(1, windows + 1)) == figures["uploads"]
    for n in range(1, windows + 1):
        assert 0 <= figures[f"w{n}_late"] <= figures[f"w{n}_uploads"]
        assert 0 < figures[f"w{n}_p50_s"] <= figures[f"w{n}_p99_s"]
        assert 0 < figures[f"w{n}_rss_min_mb"] <= figures[f"w{n}_rss_mb"]
        assert figures[f"w{n}_rss_mb"] <= figures[f"w{n}_rss_max_mb"]
        assert figures[f"w{n}_mailbox_max"] <= figures["max_mailbox_depth"]
        assert figures[f"w{n}_samples_stored"] > 0
    stored = sum(figures[f"w{n}_samples_stored"] for n in range(1, windows + 1))
    assert stored <= figures["telemetry_stored"]
    # The ratios are the figures they say.
    assert figures["p99_first_window_s"] == figures["w1_p99_s"]
    assert figures["p99_last_window_s"] == figures[f"w{windows}_p99_s"]
    assert figures["p99_last_over_first"] == round(
        figures["p99_last_window_s"] / figures["p99_first_window_s"], 3
    )
    start, end = figures["hub_rss_start_mb"], figures["hub_rss_end_mb"]
    assert (start, end) == (figures["w1_rss_mb"], figures[f"w{windows}_rss_mb"])
    assert figures["rss_end_over_start"] == round(end / start, 4)
    assert figures["rss_growth_pct"] == round(100 * (end - start) / start, 2)
    middle = figures[f"w{windows // 2 + 1}_rss_mb"]
    assert figures["rss_growth_second_half_pct"] == round(100 * (end - middle) / middle, 2)
    assert psutil.Process().children(recursive=True) == []
