"""One table decides every interface's answer to an error: REST, WebSocket and gRPC agree."""

from __future__ import annotations

import grpc

from tq_broker.auth import RateLimited
from tq_broker.connector import UniqueViolation
from tq_broker.error_codes import ERROR_CODES, UNEXPECTED, codes_of
from tq_broker.errors import BrokerError, Conflict
from tq_broker.ratelimit import Decision


def test_every_grpc_code_in_the_table_exists() -> None:
    for http, name in ERROR_CODES.values():
        assert 400 <= http < 600
        assert grpc.StatusCode[name] is not None


def test_a_subclass_answers_as_its_listed_parent_and_the_unlisted_as_500() -> None:
    assert (
        codes_of(UniqueViolation("dup")) == codes_of(Conflict("x")) == (409, "FAILED_PRECONDITION")
    )
    assert codes_of(RateLimited(Decision(False, 1.0, 0, 1))) == (429, "RESOURCE_EXHAUSTED")
    assert codes_of(BrokerError("unlisted")) == UNEXPECTED
    assert codes_of(ValueError("not ours")) == UNEXPECTED
