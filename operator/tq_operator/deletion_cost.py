"""Which pods a scale-in should remove first: the ones whose workers are idle.

A Deployment's ReplicaSet deletes pods with the lowest `controller.kubernetes.io/pod-deletion-cost`
first (after unscheduled, pending and not-ready ones). Before scaling in, the operator sets that
annotation from the broker's worker list: cost = the tasks the pod's worker holds.

Workers name themselves `worker-<hostname>-<pid>-<random>`, and a pod's hostname is its name,
so a pod is matched to the workers whose id is its name plus two more dash-separated parts.
The one thing not to break: an unknown pod gets cost 0 and a pod's cost is the sum over its
workers, so a busy worker is never ranked below an idle one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tq_client.models import WorkerInfo

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
_WORKER_PREFIX = "worker-"
_COST_MAX = 2**31 - 1  # the annotation is an int32


def worker_hostname(worker_id: str) -> str | None:
    """The hostname part of `worker-<hostname>-<pid>-<random>`, or None if it is not one."""
    if not worker_id.startswith(_WORKER_PREFIX):
        return None
    parts = worker_id[len(_WORKER_PREFIX) :].rsplit("-", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2]:
        return None
    return parts[0]


def deletion_costs(pod_names: Iterable[str], workers: Iterable[WorkerInfo]) -> dict[str, int]:
    """Cost per pod: the tasks its workers currently hold (0 for a pod without a worker)."""
    busy: dict[str, int] = {}
    for worker in workers:
        host = worker_hostname(worker.worker_id)
        if host is not None:
            busy[host] = busy.get(host, 0) + max(worker.current_tasks, 0)
    # Hostnames are cut at 63 characters; Deployment pod names already fit.
    return {name: min(busy.get(name[:63], 0), _COST_MAX) for name in pod_names}


def annotation_changes(
    costs: Mapping[str, int], current: Mapping[str, str | None]
) -> dict[str, str]:
    """The annotation value to write per pod, leaving out pods already carrying it."""
    return {pod: str(cost) for pod, cost in costs.items() if current.get(pod) != str(cost)}
