"""The embedded PostgreSQL is the broker's alone: other local users cannot reach its socket,
and nobody connects without the generated password (it used to trust any local connection,
so `nobody` could run `COPY ... TO PROGRAM` as the server's user)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tq_broker.embedded import EmbeddedPostgres

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


@pytest.fixture
def server() -> Iterator[EmbeddedPostgres]:
    base = Path(tempfile.mkdtemp(prefix="tq-access-"))
    os.chmod(base, 0o755)
    pg = EmbeddedPostgres(base, durable=False).start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def without_passfile(conninfo: str) -> str:
    return " ".join(part for part in conninfo.split() if not part.startswith("passfile="))


@needs_root
def test_another_local_user_cannot_connect(server: EmbeddedPostgres) -> None:
    attempt = subprocess.run(
        ["psql", without_passfile(server.conninfo("postgres")), "-w", "-c", "COPY (SELECT 1) "
         "TO PROGRAM 'id'"],
        user="nobody",
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert attempt.returncode != 0, attempt.stdout
    assert "uid=" not in attempt.stdout


def test_a_connection_without_the_password_is_refused(server: EmbeddedPostgres) -> None:
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(without_passfile(server.conninfo("postgres")) + " password=guess")
    with psycopg.connect(server.conninfo("postgres")) as conn:  # the passfile's password works
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_secrets_and_socket_are_private(server: EmbeddedPostgres) -> None:
    assert stat.S_IMODE(server.passfile.stat().st_mode) == 0o600
    socket_dir = Path(server.conninfo().split()[0].removeprefix("host="))
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    assert "password" not in server.url() and "passfile=" in server.url()


def test_a_data_directory_that_trusted_everyone_is_converted(server: EmbeddedPostgres) -> None:
    server.stop()
    (server.pgdata / "pg_hba.conf").write_text("local all all trust\n")
    server.passfile.unlink()
    server.start()
    assert "trust" not in (server.pgdata / "pg_hba.conf").read_text().split("\n", 1)[1]
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(without_passfile(server.conninfo("postgres")) + " password=guess")
    with psycopg.connect(server.conninfo("postgres")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
