"""Plots of the scaling curves: one PNG per curve, from bench_curves.py's JSON summary.

    .venv/bin/python bench/curves_plot.py bench/results/curves.json

Drain curves get three panels (drain rate; claim p50/p99 at rest and under load; peak RSS),
the payload curve three (submits/s and MiB/s; latency; peak RSS). matplotlib is the `bench`
extra (`pip install -e '.[bench]'`), as for soak_plot.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

XLABEL = {
    "backlog": "pending tasks when the drain starts",
    "workers": "worker processes",
    "types": "task types in the table (workers take one)",
    "replicas": "broker replicas on one PostgreSQL",
}


def _series(points: list[dict[str, Any]], get: Any) -> list[float]:
    out = []
    for p in points:
        try:
            v = get(p)
        except (KeyError, TypeError):
            v = None
        out.append(float("nan") if v is None else float(v))
    return out


def _drain_figure(curve: str, points: list[dict[str, Any]], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p["x"] for p in points]
    log_x = max(xs) / max(min(xs), 1) >= 50
    with_sql = any("claim_sql_at_rest" in p for p in points)
    fig, axes = plt.subplots(1, 4 if with_sql else 3, figsize=(20 if with_sql else 15, 4.2))
    ax = axes[0]
    ax.plot(xs, _series(points, lambda p: p["drain_tasks_per_s"]), "o-", label="drain")
    for p, rate in zip(points, _series(points, lambda p: p["drain_tasks_per_s"]), strict=True):
        # How many tasks the rate is over: a few hundred measure start-up more than steady state.
        ax.annotate(
            f"{p['drained']:,}",
            (p["x"], rate),
            fontsize=6,
            textcoords="offset points",
            xytext=(3, 3),
        )
    ax.set_ylabel("tasks/s (label: tasks timed)")
    ax.set_ylim(bottom=0)
    ax.set_title("drain rate")
    ax = axes[1]
    for key, style in (("claim_at_rest", "--"), ("claim_under_load", "-")):
        for q, marker in (("p50_ms", "o"), ("p99_ms", "s")):
            ax.plot(
                xs,
                _series(points, lambda p, key=key, q=q: p[key][q]),
                marker + style,
                label=f"{q[:3]} {key.removeprefix('claim_').replace('_', ' ')}",
            )
    if with_sql:
        ax.plot(
            xs,
            _series(points, lambda p: p["claim_sql_at_rest"]["p50_ms"]),
            "^:",
            label="p50 SQL statement at rest",
        )
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.set_title("claim latency (probe: HTTP; and the SQL alone)")
    ax = axes[2]
    for group, label in (
        ("broker", "brokers (sum)"),
        ("workers", "workers (sum)"),
        ("postgres", "postgres (sum)"),
    ):
        ax.plot(xs, _series(points, lambda p, g=group: p["peak_rss_mib"][g]), "o-", label=label)
    ax.plot(
        xs,
        _series(points, lambda p: p["peak_rss_largest_process_mib"]["workers"]),
        "s--",
        label="largest worker process",
    )
    ax.set_ylabel("MiB (peak; shared buffers counted in each pg process)")
    ax.set_title("peak RSS")
    if with_sql:
        ax = axes[3]
        ax.plot(
            xs,
            _series(points, lambda p: p["claim_sql_at_rest"]["shared_buffers"]),
            "o-",
            label="buffers (hit + read)",
        )
        ax.set_yscale("log")
        ax.set_ylabel("8 KiB pages")
        ax.set_title("pages per claim statement (EXPLAIN)")
    for ax in axes:
        ax.set_xlabel(XLABEL.get(curve, curve))
        if log_x:
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _payload_figure(points: list[dict[str, Any]], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [max(p["payload_bytes"], 1) for p in points]  # 0 B drawn at 1 B on the log axis
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.plot(xs, _series(points, lambda p: p["submits_per_s"]), "o-", label="submits/s")
    ax.set_ylabel("submits/s")
    twin = ax.twinx()
    twin.plot(
        xs,
        _series(points, lambda p: p["payload_mib_per_s"]),
        "s--",
        color="C1",
        label="payload MiB/s",
    )
    twin.set_ylabel("payload MiB/s")
    twin.legend(fontsize=7, loc="center right")
    ax.set_title("single submits")
    ax = axes[1]
    ax.plot(xs, _series(points, lambda p: p["p50_ms"]), "o-", label="p50")
    ax.plot(xs, _series(points, lambda p: p["p99_ms"]), "s-", label="p99")
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("submit latency")
    ax = axes[2]
    for group in ("broker", "postgres"):
        ax.plot(xs, _series(points, lambda p, g=group: p["peak_rss_mib"][g]), "o-", label=group)
    ax.set_ylabel("MiB (peak)")
    ax.set_title("peak RSS")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("payload bytes (0 drawn at 1)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot(summary_path: Path) -> list[Path]:
    summary = json.loads(summary_path.read_text())
    env = summary["environment"]
    written = []
    by_curve: dict[str, list[dict[str, Any]]] = {}
    for p in summary["points"]:
        by_curve.setdefault(p["curve"], []).append(p)
    for curve, points in by_curve.items():
        points.sort(key=lambda p: p["x"])
        loads = sorted(str(p["loadavg_before"]) for p in points)
        title = (
            f"{summary['name']}: {curve} — commit {env['git']['commit']}, {env['cpus']} CPUs "
            f"(shared), load avg before each point {loads[0]} … {loads[-1]}"
        )
        out = summary_path.with_name(f"{summary_path.stem}-{curve}.png")
        if curve == "payload":
            _payload_figure(points, title, out)
        else:
            _drain_figure(curve, points, title, out)
        written.append(out)
    return written


if __name__ == "__main__":
    for path in plot(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/curves.json")):
        print(f"wrote {path}")
