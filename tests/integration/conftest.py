from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tq_broker.app import create_app
from tq_broker.settings import BrokerSettings

from ..conftest import LOOPBACK


@pytest.fixture
def settings(database_url: str) -> BrokerSettings:
    return BrokerSettings(database_url=database_url, auth="off")


@pytest.fixture
def api(settings: BrokerSettings) -> Iterator[TestClient]:
    """The broker app with its lifespan running, on the test's own database."""
    with TestClient(
        create_app(settings), base_url=LOOPBACK, raise_server_exceptions=False
    ) as client:
        yield client
