"""Run `tq-broker` under cProfile: `python _profiled_broker.py OUT.prof [tq-broker args]`.

uvicorn re-raises SIGTERM after its graceful shutdown, which would kill the process before
cProfile writes anything; our own SIGTERM handler (restored by uvicorn) turns it into a
SystemExit instead, so the embedded PostgreSQL still stops cleanly and the profile is saved.
"""

from __future__ import annotations

import cProfile
import signal
import sys


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit)
    from tq_broker.cli import main as broker_main

    profile = cProfile.Profile()
    profile.enable()
    try:
        return broker_main(argv)
    except SystemExit:
        return 0
    finally:
        profile.disable()
        profile.dump_stats(out)


if __name__ == "__main__":
    sys.exit(main())
