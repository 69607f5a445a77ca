"""The quickstart's worker: `tq-worker --app tasks:worker` (run from this folder).

Three handlers, one per idea of docs/tasks.md: JSON in and out (`summarize`), the context and
retries with a backoff (`fetch_page`), and a failure that must not be retried (`charge`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tq_worker import PermanentFailure, TaskContext, Worker

worker = Worker()


@worker.task("summarize", json=True, timeout_seconds=30)
def summarize(doc: dict[str, Any]) -> dict[str, Any]:
    """{"text": "..."} -> word count and the three most common words."""
    words = str(doc.get("text", "")).lower().split()
    return {"words": len(words), "top": [w for w, _ in Counter(words).most_common(3)]}


class Unavailable(Exception):
    """The remote side is down for now: worth another attempt."""


@worker.task(
    "fetch_page",
    json=True,
    max_retries=4,
    retry_on=(Unavailable,),
    backoff=(0.2, 2.0),  # 0.2 s, 0.4 s, 0.8 s … at most 2 s between attempts
)
async def fetch_page(job: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Pretends the site is down for the first `fails` attempts (a stand-in for a flaky API)."""
    if ctx.attempt <= int(job.get("fails", 0)):
        raise Unavailable(f"{job['url']} answered 503 (attempt {ctx.attempt})")
    return {"url": job["url"], "attempt": ctx.attempt, "status": 200}


@worker.task("charge", json=True, max_retries=3)
def charge(order: dict[str, Any]) -> dict[str, Any]:
    """A declined card stays declined: fail without using the retries."""
    if order.get("card") == "declined":
        raise PermanentFailure(f"card declined for order {order['order_id']}")
    return {"order_id": order["order_id"], "charged": order["amount"]}
