"""Where a broker is and which key to use, as every entry point reads them from the environment.

`TQ_URL` names the broker for tq-admin, tq-worker and the clients alike; `TQ_BROKER_URL`, the
worker's older name, is still read when `TQ_URL` is unset (the WorkerPool operator sets it in
the pods it renders). `TQ_API_KEY` is the key. The one thing not to break: a flag beats
`TQ_URL`, which beats `TQ_BROKER_URL`, which beats the default — the same order everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

URL_ENV = "TQ_URL"
URL_ENV_ALIAS = "TQ_BROKER_URL"
API_KEY_ENV = "TQ_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"


def broker_url(env: Mapping[str, str], default: str = DEFAULT_URL) -> str:
    """TQ_URL, else TQ_BROKER_URL, else `default` (empty values count as unset)."""
    return env.get(URL_ENV) or env.get(URL_ENV_ALIAS) or default


def api_key(env: Mapping[str, str]) -> str | None:
    return env.get(API_KEY_ENV) or None
