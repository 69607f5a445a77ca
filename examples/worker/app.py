"""An example worker app: `tq-worker --app app:worker` (see the Dockerfile beside it)."""

from __future__ import annotations

from tq_worker import PermanentFailure, Worker

worker = Worker()


@worker.task("send_email")
async def send_email(payload: bytes) -> bytes:
    address = payload.decode("utf-8", "replace")
    if "@" not in address:
        raise PermanentFailure(f"not an email address: {address!r}")
    # A real handler would talk to an SMTP server here.
    return f"sent to {address}".encode()


@worker.task("resize_image")
def resize_image(payload: bytes) -> bytes:
    # Sync handlers run in a thread; CPU-heavy work belongs here.
    return len(payload).to_bytes(8, "big")
