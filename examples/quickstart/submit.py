"""Submit the quickstart's tasks and wait for each: `python submit.py` (TQ_URL, TQ_API_KEY).

Exits 0 when every task ended as expected, 1 otherwise.
"""

from __future__ import annotations

import os
import sys

from tq_client import TaskQueueClient
from tq_client.payloads import decode_json

WAIT_SECONDS = 60.0


def main() -> int:
    url = os.environ.get("TQ_URL", "http://127.0.0.1:8080")
    ok = True
    with TaskQueueClient(url, api_key=os.environ.get("TQ_API_KEY")) as client:
        # JSON in, JSON out; submit(..., wait=) submits and waits for the result.
        done = client.submit(
            "summarize", json={"text": "the cat saw the other cat"}, wait=WAIT_SECONDS
        )
        print(f"summarize: {done.status.value} {decode_json(done.result or b'')}")
        ok &= done.status == "completed"

        # Fails twice (Unavailable), retried with the type's backoff, succeeds on attempt 3.
        submitted = client.submit("fetch_page", json={"url": "https://example.com", "fails": 2})
        done = client.wait(submitted.task_id, timeout=WAIT_SECONDS)
        print(f"fetch_page: {done.status.value} {decode_json(done.result or b'')}")
        for attempt in client.attempts(submitted.task_id):
            error = (attempt.error or "").split("\n", 1)[0]  # the rest is the traceback
            print(f"  attempt {attempt.attempt}: {attempt.outcome} {error}".rstrip())
        ok &= done.status == "completed"

        # A PermanentFailure dead-letters at once, with the error and its traceback kept.
        done = client.submit(
            "charge", json={"order_id": 7, "amount": 20, "card": "declined"}, wait=WAIT_SECONDS
        )
        print(f"charge: {done.status.value} after {done.retry_count} retries")
        print(f"  {(done.error or '').splitlines()[0]}")
        ok &= done.status == "dead_letter" and done.retry_count == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
