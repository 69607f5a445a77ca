"""`tq-operator`: run the WorkerPool operator (kopf) until SIGTERM/SIGINT.

Talks to the cluster with the pod's service account, or else $KUBECONFIG / ~/.kube/config.
Runs standalone (no kopf peering): deploy one replica with `strategy: Recreate`.
The one thing not to break: `--namespace` may be repeated; without it, all namespaces.
"""

from __future__ import annotations

import argparse
import logging
import sys

import kopf


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
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    kopf.configure(verbose=args.verbose, quiet=args.quiet)
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    import tq_operator.handlers  # noqa: F401  (registers the handlers with kopf)

    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
