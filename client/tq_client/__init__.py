"""taskqueue client: the wire models every component shares, a REST client and `tq-admin`.

Nothing here imports another taskqueue package; everyone else may import this one.
"""

from tq_client.calls import task_request
from tq_client.client import AsyncTaskQueueClient, TaskQueueClient, TaskQueueError
from tq_client.models import (
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskAttempt,
    TaskDetail,
    TaskStatus,
    TaskSummary,
)
from tq_client.payloads import decode_json
from tq_client.waiting import WaitTimeout

__all__ = [
    "AsyncTaskQueueClient",
    "SubmitTaskRequest",
    "SubmitTaskResponse",
    "TaskAttempt",
    "TaskDetail",
    "TaskQueueClient",
    "TaskQueueError",
    "TaskStatus",
    "TaskSummary",
    "WaitTimeout",
    "decode_json",
    "task_request",
]
