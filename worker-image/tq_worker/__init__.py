"""taskqueue worker runtime and task SDK.

    from tq_worker import Worker, PermanentFailure

    worker = Worker()

    @worker.task("send_email")
    async def send_email(payload: bytes) -> bytes: ...

Run it with `tq-worker --app mymodule:worker`.
"""

from tq_worker.app import PermanentFailure, Worker

__all__ = ["PermanentFailure", "Worker"]
