"""The replica's listener against real PostgreSQL: it hands notifications to their channel's
handler, except those its own announcer session sent (acted on before they were sent)."""

from __future__ import annotations

import psycopg

from tq_broker.connector import ConnectorConfig
from tq_broker.listener import Listener
from tq_broker.notifier import TASK_READY_CHANNEL


async def test_notifications_from_the_replicas_own_sender_are_dropped(database_url: str) -> None:
    received: list[str] = []
    with (
        psycopg.connect(database_url, autocommit=True) as own,
        psycopg.connect(database_url, autocommit=True) as other,
    ):
        own_pid = own.info.backend_pid
        listener = Listener(
            ConnectorConfig(database_url),
            {TASK_READY_CHANNEL: received.append},
            own_sender=lambda: own_pid,
        )
        try:
            await listener.run_once()  # connects and LISTENs
            assert listener.listening.is_set()
            own.execute("SELECT pg_notify('tq_task_ready', 'mine 1')")
            other.execute("SELECT pg_notify('tq_task_ready', 'theirs 1')")
            own.execute("SELECT pg_notify('tq_task_ready', 'mine 2')")
            for _ in range(4):
                await listener.run_once()
                if received:
                    break
        finally:
            await listener.close()
    assert received == ["theirs 1"]


async def test_without_an_own_sender_every_notification_is_handled(database_url: str) -> None:
    received: list[str] = []
    listener = Listener(ConnectorConfig(database_url), {TASK_READY_CHANNEL: received.append})
    try:
        await listener.run_once()
        with psycopg.connect(database_url, autocommit=True) as sender:
            sender.execute("SELECT pg_notify('tq_task_ready', 'a 1')")
            sender.execute("SELECT pg_notify('tq_task_ready', 'b 1')")
        for _ in range(4):
            await listener.run_once()
            if len(received) == 2:
                break
    finally:
        await listener.close()
    assert received == ["a 1", "b 1"]
