"""The chaos run: faults on a schedule against a loaded cluster, then heal, drain and check the
whole history (see checker.py for the guarantees). The summary is printed at the end of the
test session; a failing run's history, audit trail and logs are kept under artifacts/chaos-*.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from tq_broker.embedded import EmbeddedPostgres

from ..support.audit import Transition, install, read_transitions
from ..support.checker import StoredTask, check, read_tasks
from ..support.history import History, read_runs
from ..support.processes import REPO_ROOT
from .conftest import SUMMARIES
from .harness import LEASE_TTL_SECONDS, ChaosCluster, Clients
from .nemesis import Nemesis, Profile, long_profile, short_profile
from .partition import netns_available

pytestmark = pytest.mark.chaos

DRAIN_TIMEOUT_SECONDS = 120
SUBMITS_PER_SECOND = 30


def chosen_profile() -> Profile:
    seed = int(os.environ.get("TQ_CHAOS_SEED", str(int(time.time()) % 100_000)))
    if os.environ.get("TQ_CHAOS_PROFILE", "short") == "long":
        minutes = float(os.environ.get("TQ_CHAOS_MINUTES", "15"))
        return long_profile(seed, LEASE_TTL_SECONDS, minutes)
    return short_profile(seed, LEASE_TTL_SECONDS)


def keep_artifacts(workdir: Path, name: str) -> Path:
    target = REPO_ROOT / "artifacts" / f"chaos-{name}-{time.strftime('%Y%m%dT%H%M%S')}"
    shutil.copytree(workdir, target)
    return target


@pytest.mark.timeout(0)  # bounded by the profile's length and DRAIN_TIMEOUT_SECONDS instead
def test_chaos_history_keeps_every_guarantee(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    profile = chosen_profile()
    use_namespace = netns_available()
    cluster = ChaosCluster(own_postgres, tmp_path, use_namespace)
    history = History()
    clients = Clients(cluster, history, SUBMITS_PER_SECOND)
    nemesis = Nemesis(cluster, profile)
    drain_seconds: int | None = None
    failures: list[str] = []  # the run itself going wrong: reported with the history, not instead
    print(f"chaos profile {profile.name}, seed {profile.seed}")  # shown if the test fails
    tasks: list[StoredTask] = []
    transitions: dict[str, list[Transition]] = {}
    try:
        cluster.start()  # the first broker migrates; the witness goes in before any task
        install(cluster.conninfo)
        clients.start()
        time.sleep(3)
        nemesis.run()
        clients.stop()
        cluster.heal_all()
        drain_seconds = cluster.wait_drained(DRAIN_TIMEOUT_SECONDS)
    except Exception as error:  # a drain that never ends is the likeliest sign of a lost task
        failures.append(f"the run stopped: {error!r}")
    finally:
        clients.stop()
        try:
            tasks = read_tasks(cluster.conninfo)
            transitions = read_transitions(cluster.conninfo)
        except Exception as error:
            failures.append(f"could not read the database: {error!r}")
        finally:
            cluster.stop()
            if own_postgres.log_path.exists():
                shutil.copy(own_postgres.log_path, tmp_path / "postgresql.log")
    report = check(
        history.snapshot(), tasks, transitions, read_runs(cluster.execution_log),
        profile.bound_seconds, dict(cluster.graceful_stops),
    )  # fmt: skip
    summary = {
        "profile": profile.name,
        "seed": profile.seed,
        "partition": cluster.link.kind,
        "faults": [r["start"] for r in nemesis.record if "start" in r],
        "graceful stops checked": len(cluster.graceful_stops),
        "client calls": history.counts(),
        **report.summary,
        "drained after heal s": drain_seconds,
        "violations": len(report.violations),
    }
    SUMMARIES.append(summary)
    history.dump(tmp_path / "history.jsonl")
    (tmp_path / "nemesis.json").write_text(json.dumps(nemesis.record, indent=1))
    (tmp_path / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    with (tmp_path / "transitions.jsonl").open("w") as out:
        for trail in transitions.values():
            for t in trail:
                row = {
                    **asdict(t),
                    "result": t.result.decode(errors="replace") if t.result else None,
                }
                out.write(json.dumps(row) + "\n")
    problems = failures + nemesis.errors + clients.errors + report.violations
    (tmp_path / "violations.txt").write_text("".join(f"{p}\n" for p in problems))
    if problems or profile.name == "long":
        kept = keep_artifacts(tmp_path, profile.name)
        summary["artifacts"] = str(kept)
    assert not problems, (
        f"{len(problems)} violations (seed {profile.seed}; "
        f"history kept in {summary.get('artifacts')}):\n" + "\n".join(problems[:20])
    )
    # The run must have exercised what it claims to: load, faults, unknowns, retries, cancels.
    assert report.summary["submits acknowledged"] >= 500
    assert len(summary["faults"]) >= len(profile.steps)
    assert report.summary["statuses"].get("completed", 0) > 0
    assert report.summary["cancels acknowledged"] > 0
    assert report.summary["claims handed back"] > 0  # the drain released prefetched tasks
