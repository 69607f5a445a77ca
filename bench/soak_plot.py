"""The soak's summary numbers and its plot (one panel per metric over time, hold shaded).

.venv/bin/python bench/soak_plot.py bench/results/soak-hold.json   # redraw from a JSON
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Sample = dict[str, Any]
Getter = Callable[[Sample], float]


def _median(values: list[float]) -> float:
    clean = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return float(statistics.median(clean)) if clean else float("nan")


def _table(name: str, key: str, scale: float = 1.0) -> Getter:
    return lambda s: float(s["tables"].get(name, {}).get(key, float("nan"))) / scale


METRICS: dict[str, Getter] = {
    "claim_p50_ms": lambda s: float(s["claim_p50_ms"]),
    "claim_p99_ms": lambda s: float(s["claim_p99_ms"]),
    "sql_claim_p50_ms": lambda s: float(s.get("sql_claim_p50_ms", float("nan"))),
    "sql_claim_p99_ms": lambda s: float(s.get("sql_claim_p99_ms", float("nan"))),
    "e2e_p50_ms": lambda s: float(s["e2e_p50_ms"]),
    "e2e_p99_ms": lambda s: float(s["e2e_p99_ms"]),
    "rss_broker_mib": lambda s: float(s["rss_mib"]["broker"]),
    "rss_worker0_mib": lambda s: float(s["rss_mib"].get("worker0", float("nan"))),
    "rss_worker1_mib": lambda s: float(s["rss_mib"].get("worker1", float("nan"))),
    "rss_postgres_sum_mib": lambda s: float(s["rss_mib"]["postgres_sum"]),
    "tq_tasks_dead": _table("tq_tasks", "n_dead_tup"),
    "tq_tasks_live": _table("tq_tasks", "n_live_tup"),
    "tq_tasks_total_mib": _table("tq_tasks", "total_bytes", 2**20),
    "tq_workers_dead": _table("tq_workers", "n_dead_tup"),
    "tq_workers_total_kib": _table("tq_workers", "total_bytes", 2**10),
    "tq_rate_buckets_dead": _table("tq_rate_buckets", "n_dead_tup"),
    "tq_rate_buckets_total_kib": _table("tq_rate_buckets", "total_bytes", 2**10),
    "submitted_per_s": lambda s: float(s["submitted_per_s"]),
    "loadavg_1m": lambda s: float(s["loadavg"][0]) if s["loadavg"] else float("nan"),
    "cpu_psi_pct": lambda s: float(s["cpu_psi"]) if s["cpu_psi"] is not None else float("nan"),
}


def _window(samples: list[Sample], lo: float, hi: float, t0: float) -> list[Sample]:
    return [s for s in samples if lo <= s["t"] - t0 < hi]


def _medians(samples: list[Sample]) -> dict[str, float]:
    return {k: round(_median([get(s) for s in samples]), 2) for k, get in METRICS.items()}


def summarize(result: dict[str, Any], window_seconds: float) -> dict[str, Any]:
    """Medians of the first and last window of the steady phase (after a warm-up of retention +
    60 s, while the table grows to its steady size), their ratio, and the hold's effect."""
    samples: list[Sample] = result["samples"]
    marks: dict[str, float] = result["marks"]
    t0 = marks["start"]
    steady = [s for s in samples if s["phase"] == "steady"]
    warmup = float(result["config"]["retention_seconds"]) + 60.0
    steady_end = marks["steady_end"] - t0
    first = _medians(_window(steady, warmup, warmup + window_seconds, t0))
    last = _medians(_window(steady, steady_end - window_seconds, steady_end, t0))
    out: dict[str, Any] = {
        "steady_first_window": first,
        "steady_last_window": last,
        "steady_last_over_first": {
            k: (round(last[k] / first[k], 2) if first[k] else None) for k in METRICS
        },
        "broker_idle_in_tx_max": max(
            (c["broker_idle_in_tx"] for c in result["session_checks"]), default=0
        ),
        "broker_idle_in_tx_longest_s": round(
            max((c["broker_idle_in_tx_longest_s"] for c in result["session_checks"]), default=0),
            4,
        ),
        "broker_idle_in_tx_queries": sorted(
            {c["idle_in_tx_queries"] for c in result["session_checks"] if "idle_in_tx_queries" in c}
        )[:10],
        "broker_oldest_xact_s_max": round(
            max((c["broker_oldest_xact_s"] for c in result["session_checks"]), default=0), 3
        ),
        "session_checks": len(result["session_checks"]),
        "loadavg_1m_median": round(_median([METRICS["loadavg_1m"](s) for s in samples]), 2),
        "loadavg_1m_max": max((METRICS["loadavg_1m"](s) for s in samples), default=float("nan")),
        "cpu_psi_median": round(_median([METRICS["cpu_psi_pct"](s) for s in samples]), 1),
        "cpu_pct_median": {
            k: round(_median([s["cpu_pct"][k] for s in samples]), 1)
            for k in ("broker", "workers", "postgres")
        },
        "submit_errors": sum(s["submit_errors"] for s in samples),
        "submits_behind": sum(s["submits_behind"] for s in samples),
        "probe_misses": sum(s["probe_misses"] for s in samples),
    }
    hold = [s for s in samples if s["phase"] == "hold"]
    if hold:
        recovery = [s for s in samples if s["phase"] == "recovery"]
        hold_end = marks["hold_end"] - t0
        out["hold"] = {
            "before_last_window": last,
            "hold_median": _medians(hold),
            "hold_last_minute": _medians(_window(hold, hold_end - 60, hold_end, t0)),
            "recovery_last_2_minutes": _medians(
                _window(recovery, marks["recovery_end"] - t0 - 120, math.inf, t0)
            ),
            "peak_tq_tasks_dead": max(METRICS["tq_tasks_dead"](s) for s in hold + recovery),
            "peak_tq_tasks_total_mib": round(
                max(METRICS["tq_tasks_total_mib"](s) for s in hold + recovery), 2
            ),
            "max_claim_p99_ms": round(max(METRICS["claim_p99_ms"](s) for s in hold), 2),
            "oldest_xact_s_max": round(max(s["oldest_xact_s"] for s in hold), 1),
            "autovacuum_not_removable_max": max(
                (
                    r.get("not_removable", 0)
                    for r in result.get("autovacuum_runs", [])
                    if r["table"] == "tq_tasks"
                ),
                default=None,
            ),
        }
    return out


PANELS: list[tuple[str, list[tuple[str, Getter]], bool]] = [
    (
        "claim latency (ms)",
        [
            ("HTTP probe p50", METRICS["claim_p50_ms"]),
            ("HTTP probe p99", METRICS["claim_p99_ms"]),
            ("SQL statement p50", METRICS["sql_claim_p50_ms"]),
            ("SQL statement p99", METRICS["sql_claim_p99_ms"]),
        ],
        True,
    ),
    (
        "submit -> handler start (ms)",
        [("p50", METRICS["e2e_p50_ms"]), ("p99", METRICS["e2e_p99_ms"])],
        True,
    ),
    (
        "RSS (MiB)",
        [
            ("broker", METRICS["rss_broker_mib"]),
            ("worker 0", METRICS["rss_worker0_mib"]),
            ("worker 1", METRICS["rss_worker1_mib"]),
        ],
        False,
    ),
    (
        "tq_tasks tuples",
        [("dead", METRICS["tq_tasks_dead"]), ("live", METRICS["tq_tasks_live"])],
        False,
    ),
    (
        "tq_tasks size (MiB)",
        [
            ("total", METRICS["tq_tasks_total_mib"]),
            ("heap", _table("tq_tasks", "heap_bytes", 2**20)),
            ("indexes", _table("tq_tasks", "index_bytes", 2**20)),
        ],
        False,
    ),
    (
        "small hot tables: dead tuples",
        [
            ("tq_workers", METRICS["tq_workers_dead"]),
            ("tq_rate_buckets", METRICS["tq_rate_buckets_dead"]),
        ],
        False,
    ),
    (
        "small hot tables: size (KiB)",
        [
            ("tq_workers", METRICS["tq_workers_total_kib"]),
            ("tq_rate_buckets", METRICS["tq_rate_buckets_total_kib"]),
        ],
        False,
    ),
    (
        "autovacuum runs (cumulative)",
        [(t, _table(t, "autovacuum_count")) for t in ("tq_tasks", "tq_workers", "tq_rate_buckets")],
        False,
    ),
    (
        "oldest open transaction in the database (s)",
        [("any client session", lambda s: float(s["oldest_xact_s"]))],
        False,
    ),
    (
        "broker (tq-*) sessions idle in transaction",
        [
            ("most at once (1 s checks)", lambda s: float(s["broker_idle_in_tx_max"])),
            ("longest idle in tx (ms)", lambda s: 1000 * s["broker_idle_in_tx_longest_s"]),
        ],
        False,
    ),
    (
        "load",
        [
            ("loadavg 1m", METRICS["loadavg_1m"]),
            ("broker cores", lambda s: s["cpu_pct"]["broker"] / 100),
            ("workers cores", lambda s: s["cpu_pct"]["workers"] / 100),
            ("postgres cores", lambda s: s["cpu_pct"]["postgres"] / 100),
        ],
        False,
    ),
    (
        "submits/s",
        [("submitted", METRICS["submitted_per_s"])],
        False,
    ),
]


def plot(result: dict[str, Any], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples: list[Sample] = result["samples"]
    marks: dict[str, float] = result["marks"]
    t0 = marks["start"]
    minutes = [(s["t"] - t0) / 60 for s in samples]
    cols = 3
    rows = math.ceil(len(PANELS) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(18, 3.2 * rows), sharex=True)
    for ax, (label, series, log) in zip(axes.flat, PANELS, strict=False):
        for name, get in series:
            ax.plot(minutes, [get(s) for s in samples], label=name, linewidth=1)
        if "hold_start" in marks:
            ax.axvspan(
                (marks["hold_start"] - t0) / 60,
                (marks["hold_end"] - t0) / 60,
                color="tab:red",
                alpha=0.12,
                label="transaction held",
            )
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes.flat[len(PANELS) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("minutes")
    cfg = result["config"]
    fig.suptitle(
        f"taskqueue soak: {cfg['rate']:g} submits/s, {cfg['workers']} workers, retention "
        f"{cfg['retention_seconds']:g} s, cleaner every {cfg['cleanup_interval_seconds']:g} s"
        + (f" — {title}" if title else ""),
        fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# Per-second and per-10-second series: megabytes per run, regenerated by bench_soak.py and
# kept out of git (.gitignore); `<name>.summary.json` (the rest) is what git keeps.
SAMPLE_KEYS = ("samples", "session_checks", "autovacuum_runs")


def without_samples(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in SAMPLE_KEYS}


def main() -> int:
    path = Path(sys.argv[1])
    result = json.loads(path.read_text())
    title = sys.argv[2] if len(sys.argv) > 2 else result["config"].get("title", "")
    window = float(result["config"].get("window_minutes", 5.0)) * 60
    result["summary"] = summarize(result, window)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    kept = path.with_name(f"{path.stem}.summary.json")
    kept.write_text(json.dumps(without_samples(result), indent=2, default=str) + "\n")
    print(plot(result, path.with_suffix(".png"), title))
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
