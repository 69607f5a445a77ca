"""A handler's progress between heartbeats: `ctx.progress(fraction, message)` writes the latest
value here (from the loop or a sync handler's thread); the heartbeat takes what is unsent.

The one thing not to break: a call never makes a request. Only the last value before a
heartbeat is sent (last value wins), and a value is marked sent only once the broker took it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from tq_client.protocol import PROGRESS_MESSAGE_MAX


@dataclass(frozen=True)
class Reported:
    fraction: float
    message: str | None
    seq: int  # 1 for the first report of the attempt


class ProgressSlot:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: Reported | None = None
        self._sent = 0

    def report(self, fraction: float, message: str | None = None) -> None:
        """Validate here, where the handler can see the error, not at the broker."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError("progress fraction must be a number between 0 and 1")
        if not (math.isfinite(fraction) and 0 <= fraction <= 1):
            raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
        if message is not None and not isinstance(message, str):
            raise TypeError("progress message must be a str or None")
        if message is not None and len(message) > PROGRESS_MESSAGE_MAX:
            raise ValueError(f"progress message is over {PROGRESS_MESSAGE_MAX} characters")
        if message is not None:
            # A value the broker would refuse would fail every heartbeat, and with them the
            # worker's leases: refuse it here instead (lone surrogates are not UTF-8).
            try:
                message.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("progress message must be valid Unicode text") from None
        with self._lock:
            seq = 1 if self._latest is None else self._latest.seq + 1
            self._latest = Reported(float(fraction), message, seq)

    @property
    def latest(self) -> Reported | None:
        return self._latest

    def unsent(self) -> Reported | None:
        with self._lock:
            latest = self._latest
            return latest if latest is not None and latest.seq > self._sent else None

    def mark_sent(self, reported: Reported) -> None:
        with self._lock:
            self._sent = max(self._sent, reported.seq)
