"""taskqueue client: the wire models every component shares, a REST client and `tq-admin`.

Nothing here imports another taskqueue package; everyone else may import this one.
"""

from tq_client.client import AsyncTaskQueueClient, TaskQueueClient, TaskQueueError
from tq_client.models import (
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskDetail,
    TaskStatus,
    TaskSummary,
)

__all__ = [
    "AsyncTaskQueueClient",
    "SubmitTaskRequest",
    "SubmitTaskResponse",
    "TaskDetail",
    "TaskQueueClient",
    "TaskQueueError",
    "TaskStatus",
    "TaskSummary",
]
