"""The broker's own exceptions. The store raises these; the HTTP layer maps them to status codes.

Nothing above the connector sees a psycopg exception.
"""


class BrokerError(Exception):
    """Base of every error the broker reports to a client."""


class InvalidRequest(BrokerError):
    """The request is malformed (400)."""


class NotFound(BrokerError):
    """The task, worker or key does not exist (404)."""


class Conflict(BrokerError):
    """The operation is not allowed in the current state (409)."""


class PayloadTooLarge(BrokerError):
    """The request body or a payload is over its configured limit (413)."""


class StoreUnavailable(BrokerError):
    """PostgreSQL cannot be reached within the configured timeouts (503)."""
