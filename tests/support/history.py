"""The clients' side of the story, recorded the way Jepsen records it.

Every call a client makes is an `invoke` followed by exactly one completion:
- `ok`: the broker acknowledged it (a 201/200 submit, a 204 cancel);
- `fail`: it certainly did not happen (a 4xx answer, or the connection was refused before
  the request was sent);
- `info`: the outcome is unknown (a timeout, a dropped connection, a 5xx: the broker may
  have committed before it failed to answer).
The checker reads the whole history against the database afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

OpType = Literal["invoke", "ok", "fail", "info"]
OpFunction = Literal["submit", "cancel"]


@dataclass(frozen=True)
class Op:
    process: str  # which client
    type: OpType
    f: OpFunction
    key: str  # the idempotency key of the task the call is about
    at: float  # unix time on this machine (the database clock is the same clock here)
    task_id: str | None = None
    detail: str = ""


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(
        self,
        process: str,
        type: OpType,
        f: OpFunction,
        key: str,
        task_id: str | None = None,
        detail: str = "",
    ) -> Op:
        op = Op(process, type, f, key, time.time(), task_id, detail)
        with self._lock:
            self.ops.append(op)
        return op

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)

    def counts(self) -> dict[str, int]:
        """`submit ok: 812`, `cancel info: 3`, … for the summary."""
        counted = Counter(f"{op.f} {op.type}" for op in self.snapshot() if op.type != "invoke")
        return dict(sorted(counted.items()))

    def dump(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as out:
            for op in self.snapshot():
                out.write(json.dumps(asdict(op)) + "\n")


@dataclass(frozen=True)
class Run:
    """One handler run, from the execution log."""

    key: str
    run_id: str
    pid: int
    started_at: float
    outcome: Literal["end", "fail", "none"]  # none: the process died or was cut off mid-run


def read_runs(path: Path) -> list[Run]:
    if not path.exists():
        return []
    started: dict[str, tuple[str, int, float]] = {}
    outcomes: dict[str, Literal["end", "fail"]] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue  # a line cut short by kill -9
        event, key, run_id, pid, at = parts
        if event == "start":
            started[run_id] = (key, int(pid), float(at))
        elif event in ("end", "fail"):
            outcomes[run_id] = "end" if event == "end" else "fail"
    return [
        Run(key, run_id, pid, at, outcomes.get(run_id, "none"))
        for run_id, (key, pid, at) in started.items()
    ]
