"""taskqueue worker runtime and task SDK.

    from tq_worker import Worker, TaskContext, PermanentFailure

    worker = Worker()

    @worker.task("resize", json=True, max_retries=5)
    async def resize(job: dict, ctx: TaskContext) -> dict: ...

Run it with `tq-worker --app mymodule:worker`. The guide is docs/tasks.md.
"""

from tq_worker.app import PermanentFailure, Worker
from tq_worker.context import TaskContext
from tq_worker.retries import RetryBackoff

__all__ = ["PermanentFailure", "RetryBackoff", "TaskContext", "Worker"]
