"""`tq-operator`: run the WorkerPool operator (kopf) until SIGTERM/SIGINT.

Talks to the cluster with the pod's service account, or else $KUBECONFIG / ~/.kube/config.
Runs standalone (no kopf peering). For more than one replica, `--leader-election-lease NAME`
makes each replica run the operator only while it holds that Kubernetes Lease.
The one thing not to break: `--namespace` may be repeated; without it, all namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import threading
from typing import Any

import kopf

from tq_kube.lease import (
    KubernetesLeaseConfig,
    KubernetesLeaseElector,
    current_namespace,
    default_identity,
)

log = logging.getLogger("tq_operator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tq-operator", description=__doc__.split("\n")[0])
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; glob patterns allowed); default: all namespaces",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--leader-election-lease",
        metavar="[NAMESPACE/]NAME",
        default=None,
        help="run only while holding this Lease (for more than one replica); "
        "default namespace: the pod's own",
    )
    parser.add_argument(
        "--leader-election-lease-seconds",
        type=float,
        default=15.0,
        help="how long a silent leader keeps the Lease (default 15)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve the WorkerPools' Prometheus gauges on this port (default 0: off)",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    kopf.configure(verbose=args.verbose, quiet=args.quiet)
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    # Importing registers the handlers with kopf: WorkerPools, then TaskSchedules.
    from tq_operator import handlers, schedule_handlers  # noqa: F401

    if args.metrics_port:
        from tq_operator.metrics import POOLS

        POOLS.serve(args.metrics_port)

    options: dict[str, Any] = {
        "standalone": True,
        "clusterwide": not args.namespace,
        "namespaces": args.namespace,
        "liveness_endpoint": args.liveness,
    }
    if args.leader_election_lease is None:
        kopf.run(**options)
        return 0
    return asyncio.run(
        run_while_leading(args.leader_election_lease, args.leader_election_lease_seconds, options)
    )


async def run_while_leading(lease: str, lease_seconds: float, options: dict[str, Any]) -> int:
    """Hold the Lease first, run the operator only while holding it, and exit when it is lost.

    kopf's peering is not leader election; this is what makes two replicas safe. On loss the
    process exits (status 1) so that Kubernetes restarts it as a candidate again. The election
    runs on its own thread and event loop: kopf's start-up can block this loop for seconds,
    and renewals must not wait for it.
    """
    namespace, _, name = lease.rpartition("/")
    elector = KubernetesLeaseElector(
        KubernetesLeaseConfig(
            name=name,
            namespace=namespace or current_namespace(),
            identity=default_identity(),
            lease_seconds=lease_seconds,
            retry_seconds=lease_seconds / 3,
        )
    )
    finished = threading.Event()

    def elect() -> None:
        async def until_finished() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(elector.run(stop))
            while not finished.is_set():  # noqa: ASYNC110 - set from the other thread
                await asyncio.sleep(0.1)
            stop.set()
            await task

        asyncio.run(until_finished())

    election = threading.Thread(target=elect, name="lease-election", daemon=True)
    election.start()
    try:
        while not elector.is_leader:  # noqa: ASYNC110 - the elector exposes a property
            await asyncio.sleep(0.2)
        log.info("leading: starting the operator")
        operator = asyncio.create_task(kopf.operator(**options))
        while elector.is_leader and not operator.done():  # noqa: ASYNC110 - as above
            await asyncio.sleep(0.2)
        lost = not elector.is_leader
        operator.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await operator
        if lost:
            log.error("leadership lost: stopping so that another replica takes over")
            return 1
        return 0
    finally:
        finished.set()
        await asyncio.to_thread(election.join, 15)


if __name__ == "__main__":
    sys.exit(main())
