"""The capacity-model and scaling-curve scripts run end to end at a tiny size and write their
summaries. Not benchmarks: nothing here looks at a number's size, only that each was measured
from the real broker, PostgreSQL and workers (and that every task the scripts queued finished).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--no-snapshot"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=BENCH.parent,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_cost_script_measures_every_phase(tmp_path: Path) -> None:
    _run(
        "bench_cost.py",
        *("--tasks", "300", "--single-seconds", "1", "--workers", "1", "--concurrency", "8"),
        *("--results-dir", str(tmp_path), "--name", "cost-smoke"),
    )
    summary = json.loads((tmp_path / "cost-smoke.json").read_text())
    phases = summary["phases"]
    assert set(phases) == {"single", "batch", "drain", "cleanup"}
    assert phases["batch"]["tasks"] == 300
    # The drain took every task both submit phases queued, and each one completed.
    assert phases["drain"]["tasks"] == phases["single"]["tasks"] + 300
    assert summary["statuses_after_drain"] == {"completed": phases["drain"]["tasks"]}
    # ... and the retention sweep deleted every one of them.
    assert phases["cleanup"]["tasks"] == phases["drain"]["tasks"]
    assert summary["final_statuses"] == {}
    for name, phase in phases.items():
        per = phase["per_task"]
        assert per["wal_bytes"] > 0, name  # every phase writes rows
        assert per["commits"] > 0, name
    # CPU times come in 10 ms ticks: a 300-task batch can cost PostgreSQL less than one, so
    # only the phases that last seconds at this size are held to having used CPU.
    drain = phases["drain"]["per_task"]
    assert drain["broker_cpu_us"] > 0 and drain["postgres_cpu_us"] > 0
    assert drain["workers_cpu_us"] > 0
    assert phases["single"]["per_task"]["broker_cpu_us"] > 0
    # Inserting grows the table.
    assert phases["batch"]["per_task"]["heap_bytes_growth"] > 0


def test_curves_script_writes_summary_and_raw_samples(tmp_path: Path) -> None:
    _run(
        "bench_curves.py",
        *("--curves", "types,replicas,payload", "--type-counts", "2", "--type-backlog", "400"),
        *("--replica-counts", "2", "--base-backlog", "100"),
        *("--rest-probes", "5", "--workers", "1", "--concurrency", "8"),
        *("--payload-sizes", "0,4096", "--payload-seconds", "1", "--payload-clients", "2"),
        *("--results-dir", str(tmp_path), "--name", "curves-smoke", "--no-plot"),
    )
    summary = json.loads((tmp_path / "curves-smoke.json").read_text())
    drain, replicas, *payload = summary["points"]
    assert drain["curve"] == "types" and drain["task_types"] == 2
    # Half the backlog is of the drained type; the rest probe took 5 of those 200 first.
    assert drain["drained"] == 195 and not drain["timed_out"]
    assert drain["drain_tasks_per_s"] > 0
    assert drain["claim_at_rest"]["n"] == 5
    # The claim statement under EXPLAIN ANALYZE, rolled back: it read pages, claimed nothing.
    assert drain["claim_sql_at_rest"]["n"] == 5 and drain["claim_sql_at_rest"]["shared_buffers"] > 0
    assert drain["probe_errors"] == []
    assert drain["peak_rss_mib"]["workers"] > 0
    # Two brokers on one PostgreSQL, the worker on the first: the 95 left after the probe.
    assert replicas["replicas"] == 2 and replicas["drained"] == 95
    assert replicas["peak_rss_mib"]["broker"] > drain["peak_rss_largest_process_mib"]["broker"]
    assert [p["payload_bytes"] for p in payload] == [0, 4096]
    assert all(p["errors"] == 0 and p["submits_per_s"] > 0 for p in payload)
    raw = json.loads((tmp_path / "raw" / "curves-smoke" / "types-2.json").read_text())
    assert len(raw["claim_at_rest_ms"]) == 5
    assert (tmp_path / "curves-smoke.md").read_text().count("| types | 2 |") == 1


def test_curves_plot_draws_one_png_per_curve(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from curves_plot import plot
    finally:
        sys.path.remove(str(BENCH))
    point = {
        "x": 1,
        "drained": 100,
        "drain_tasks_per_s": 10.0,
        "claim_at_rest": {"p50_ms": 1.0, "p99_ms": 2.0},
        "claim_under_load": {"p50_ms": 1.5, "p99_ms": 3.0},
        "claim_sql_at_rest": {"p50_ms": 0.2, "shared_buffers": 12},
        "peak_rss_mib": {"broker": 70.0, "workers": 50.0, "postgres": 200.0},
        "peak_rss_largest_process_mib": {"workers": 50.0},
        "loadavg_before": "1.0",
    }
    summary = {
        "name": "plot-smoke",
        "environment": {"git": {"commit": "abc"}, "cpus": 2},
        "points": [
            {**point, "curve": "workers"},
            {**point, "curve": "workers", "x": 4, "drain_tasks_per_s": None},
            {
                "curve": "payload",
                "x": 0,
                "payload_bytes": 0,
                "submits_per_s": 100.0,
                "payload_mib_per_s": 0.0,
                "p50_ms": 1.0,
                "p99_ms": 2.0,
                "peak_rss_mib": {"broker": 70.0, "postgres": 200.0},
                "loadavg_before": "1.0",
            },
        ],
    }
    path = tmp_path / "plot-smoke.json"
    path.write_text(json.dumps(summary))
    written = plot(path)
    assert sorted(p.name for p in written) == ["plot-smoke-payload.png", "plot-smoke-workers.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)


def test_commit_ceiling_script_measures_both_modes(tmp_path: Path) -> None:
    _run(
        "bench_commit_ceiling.py",
        *("--sessions", "1,2", "--seconds", "0.5"),
        *("--results-dir", str(tmp_path), "--name", "ceiling-smoke"),
    )
    summary = json.loads((tmp_path / "ceiling-smoke.json").read_text())
    points = [(p["mode"], p["sessions"]) for p in summary["points"]]
    assert points == [
        ("notify_in_commit", 1),
        ("announced_after", 1),
        ("notify_in_commit", 2),
        ("announced_after", 2),
    ]
    assert all(p["commits"] > 0 and p["errors"] == [] for p in summary["points"])
    announcing = {p["mode"]: p["announcements_per_s"] > 0 for p in summary["points"]}
    assert announcing == {"notify_in_commit": False, "announced_after": True}
    assert summary["postgres_settings"]["fsync"] == "on"
