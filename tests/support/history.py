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
from typing import Any, Literal

import httpx

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

    def acknowledged(self) -> dict[str, str]:
        """task_id -> key of every submit the broker acknowledged."""
        return {
            op.task_id: op.key
            for op in self.snapshot()
            if op.f == "submit" and op.type == "ok" and op.task_id is not None
        }

    def unacknowledged_submits(self) -> int:
        """Submits that failed or whose outcome is unknown."""
        return sum(1 for op in self.snapshot() if op.f == "submit" and op.type in ("fail", "info"))

    def counts(self) -> dict[str, int]:
        """`submit ok: 812`, `cancel info: 3`, … for the summary."""
        counted = Counter(f"{op.f} {op.type}" for op in self.snapshot() if op.type != "invoke")
        return dict(sorted(counted.items()))

    def dump(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as out:
            for op in self.snapshot():
                out.write(json.dumps(asdict(op)) + "\n")


SubmitOutcome = Literal["ok", "fail", "fail-refused", "info", "error"]


def submit(
    history: History, client: httpx.Client, url: str, process: str, key: str, body: dict[str, Any]
) -> tuple[SubmitOutcome, str | None]:
    """POST `body` to `url` (…/api/v1/tasks) with `key` as its Idempotency-Key, recorded as an
    invoke and its completion. `fail-refused`: nothing was sent (that broker is down); `error`:
    the client itself broke (recorded as unknown, so the history stays whole)."""
    history.record(process, "invoke", "submit", key)
    try:
        response = client.post(url, json=body, headers={"Idempotency-Key": key})
    except httpx.ConnectError as error:  # nothing was sent
        history.record(process, "fail", "submit", key, detail=repr(error))
        return "fail-refused", None
    except httpx.HTTPError as error:
        history.record(process, "info", "submit", key, detail=repr(error))
        return "info", None
    except Exception as error:
        history.record(process, "info", "submit", key, detail=repr(error))
        return "error", None
    if response.status_code in (200, 201):
        task_id = str(response.json()["task_id"])
        history.record(process, "ok", "submit", key, task_id=task_id)
        return "ok", task_id
    detail = f"{response.status_code} {response.text[:200]}"
    if response.status_code >= 500:  # it may have committed before it failed to answer
        history.record(process, "info", "submit", key, detail=detail)
        return "info", None
    history.record(process, "fail", "submit", key, detail=detail)
    return "fail", None


def cancel(
    history: History, client: httpx.Client, url: str, process: str, key: str, task_id: str
) -> OpType | Literal["error"]:
    """DELETE the task at `url` (…/api/v1/tasks/<id>), recorded: ok is the 204."""
    history.record(process, "invoke", "cancel", key, task_id=task_id)
    try:
        response = client.delete(url)
    except httpx.ConnectError as error:
        history.record(process, "fail", "cancel", key, task_id, repr(error))
        return "fail"
    except httpx.HTTPError as error:
        history.record(process, "info", "cancel", key, task_id, repr(error))
        return "info"
    except Exception as error:
        history.record(process, "info", "cancel", key, task_id, repr(error))
        return "error"
    outcome: OpType = (
        "ok" if response.status_code == 204
        else "info" if response.status_code >= 500
        else "fail"
    )  # fmt: skip
    history.record(process, outcome, "cancel", key, task_id, str(response.status_code))
    return outcome


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
