"""The claim statement's time against a growing backlog: PostgreSQL's share of a claim.

    .venv/bin/python bench/diag_claim_backlog.py [--backlogs 10000,100000,1000000] \
        [--queries path/to/queries.sql] [--prelude "SQL run first"]

A fresh broker (its embedded PostgreSQL, fsync on); two registered workers, one for the busy
type `bulk` (the backlog: random priorities) and one for `rare` (100 tasks at the lowest
priority, added at each step). After each step `VACUUM ANALYZE`, then 30 claims of 64 per
worker, each in a transaction that is rolled back (so every claim sees the same backlog),
timed from a plain connection. `--queries` times another version of `task_claim` (e.g. main's,
with `--prelude` creating its index), for a before/after on the same machine.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

import psycopg
from _common import REPO, Broker, loadavg

INSERT = (
    "INSERT INTO tq_tasks (task_id, task_type, payload, priority, timeout_seconds, max_retries) "
    "SELECT gen_random_uuid(), %s, ''::bytea, {priority}, 300, 3 FROM generate_series(1, %s)"
)


def claim_statement(path: Path) -> str:
    match = re.search(r"-- task_claim --\n(.*?)\n\n-- ", path.read_text(), re.S)
    assert match, f"no task_claim in {path}"
    return "\n".join(ln for ln in match.group(1).splitlines() if not ln.startswith("--"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlogs", default="10000,100000,1000000")
    ap.add_argument("--queries", type=Path, default=REPO / "broker/tq_broker/sql/queries.sql")
    ap.add_argument("--prelude", default=None)
    ap.add_argument("--claims", type=int, default=30)
    opts = ap.parse_args()
    claim = claim_statement(opts.queries)
    params = {"max_tasks": 64, "lease_ttl_seconds": 30, "any_key": True, "key_id": None}
    if "attempts_kept" in claim:
        params["attempts_kept"] = 10
    print(f"load {loadavg()}")
    with Broker(env={"TQ_METRICS_PORT": "0", "TQ_GRPC_PORT": "0"}) as broker:
        assert broker.tmp is not None
        url = f"{broker.database_url()}&passfile={broker.tmp / 'data' / 'passfile'}"
        with psycopg.connect(url, autocommit=True) as conn:
            if opts.prelude:
                conn.execute(opts.prelude)
            conn.execute(
                "INSERT INTO tq_workers (worker_id, task_types, concurrency) "
                "VALUES ('busy', ARRAY['bulk'], 64), ('rare', ARRAY['rare'], 64)"
            )
            have = 0
            for backlog in (int(b) for b in opts.backlogs.split(",")):
                conn.execute(
                    INSERT.format(priority="(random() * 255)::int"), ("bulk", backlog - have)
                )
                conn.execute(INSERT.format(priority="0"), ("rare", 100))
                have = backlog
                conn.execute("VACUUM ANALYZE tq_tasks")
                for worker in ("busy", "rare"):
                    ms = []
                    for _ in range(opts.claims):
                        conn.execute("BEGIN")
                        t0 = time.perf_counter()
                        conn.execute(claim, {**params, "worker_id": worker}).fetchall()
                        ms.append((time.perf_counter() - t0) * 1000)
                        conn.execute("ROLLBACK")
                    ms.sort()
                    print(
                        f"backlog {backlog:>9,} {worker:4s}: claim of 64 p50 "
                        f"{statistics.median(ms):8.2f} ms  p90 {ms[int(len(ms) * 0.9)]:8.2f} ms"
                        f"  (load {loadavg()})",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
