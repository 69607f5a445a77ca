"""A private PostgreSQL server in a data directory: the broker's default when no URL is given.

It runs the server binaries found on the machine (`pg_config --bindir`, PATH, the Debian
layout) or those of the `pgserver` wheel, listens only on a Unix socket in the data directory,
and keeps its data there across restarts. The tests use this same class.

Nobody else on the machine may use it: the socket directory is 0700 (only the server's user,
and root, can reach the socket), and every connection needs a password (scram-sha-256)
generated at initdb and kept in `data_dir/passfile` (libpq's format, mode 0600, owned by the
broker's user), which the connection strings name instead of the password itself. A data
directory from before (trust authentication) is converted on its next start.

The one thing not to break: the server never outlives its owner. It is started with a parent-
death signal, so a broker killed with SIGKILL takes its PostgreSQL down (cleanly) with it.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import psycopg.sql

log = logging.getLogger(__name__)

DATABASE_NAME = "taskqueue"
SUPERUSER = "tq"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
_SOCKET_PATH_MAX = 90  # sun_path is 108 bytes; leave room for ".s.PGSQL.5432"
_PR_SET_PDEATHSIG = 1


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be found, initialised or started."""


def find_server_bindir() -> Path:
    """The directory holding `initdb` and `postgres`, preferring the machine's own install."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
        except (subprocess.SubprocessError, OSError):
            pass
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    candidates.extend(Path(p) for p in debian)
    candidates.extend(_pgserver_bindirs())
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise EmbeddedPostgresError(
        "no PostgreSQL server binaries found (looked at pg_config --bindir, PATH, "
        "/usr/lib/postgresql/*/bin and the pgserver wheel); install PostgreSQL or "
        "`pip install 'taskqueue[embedded]'`, or pass --database-url"
    )


def _pgserver_bindirs() -> list[Path]:
    try:
        import pgserver  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return []
    return [Path(pgserver.__file__).parent / "pginstall" / "bin"]


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root; as root we run it as an unprivileged user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "tq-postgres"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "tq-postgres"],
        check=True,
        capture_output=True,
    )
    return "tq-postgres"


def _die_with_parent() -> None:
    # Runs in the child after the uid change (which would clear the setting). The "parent" is
    # the thread that started the server: start it from a thread that lives as long as the
    # process (the chaos tests restart it from the main thread for this reason).
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


# Unix socket only (listen_addresses is empty), and a password for everyone.
_HBA = "# written by taskqueue: no trust, ever\nlocal all all scram-sha-256\n"


def _is_trust(line: str) -> bool:
    fields = line.split("#", 1)[0].split()
    return bool(fields) and fields[-1] == "trust"


def _reachable_by_others(path: Path) -> bool:
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            return False
    return True


@dataclass
class EmbeddedPostgres:
    """PostgreSQL in `data_dir/postgres`, reachable at `conninfo` once started."""

    data_dir: Path
    durable: bool = True  # fsync; tests turn it off for speed (a process kill loses nothing)
    max_connections: int = 200
    bindir: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _socket_dir: Path | None = field(default=None, init=False, repr=False)
    _user: str | None = field(default=None, init=False, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def passfile(self) -> Path:
        return self.data_dir / "passfile"

    def conninfo(self, dbname: str = DATABASE_NAME) -> str:
        if self._socket_dir is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not started")
        return (
            f"host={self._socket_dir} port=5432 user={SUPERUSER} dbname={dbname} "
            f"passfile={self.passfile}"
        )

    def url(self, dbname: str = DATABASE_NAME) -> str:
        """A postgresql:// URL for --database-url (the socket directory as the host); it names
        the password file, never the password."""
        if self._socket_dir is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not started")
        return (
            f"postgresql://{SUPERUSER}@/{dbname}?host={self._socket_dir}&port=5432"
            f"&passfile={self.passfile}"
        )

    def start(self) -> EmbeddedPostgres:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        bindir = self.bindir or find_server_bindir()
        self._user = _server_user()
        self._socket_dir = self._choose_socket_dir()
        if self._user is not None:
            self._hand_over_to_server_user()
        self._wait_for_stale_server()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bindir)
        self._launch(bindir)
        self._wait_ready()
        self._require_password()
        self._ensure_database(DATABASE_NAME)
        return self

    def _choose_socket_dir(self) -> Path:
        run_dir = self.data_dir / "run"
        if len(str(run_dir)) <= _SOCKET_PATH_MAX:
            run_dir.mkdir(mode=0o700, exist_ok=True)
            os.chmod(run_dir, 0o700)
            return run_dir
        return Path(tempfile.mkdtemp(prefix="tq-pg-"))  # 0700 already

    def _new_password(self) -> str:
        """A fresh password, written to the passfile (0600) before anything uses it."""
        password = secrets.token_urlsafe(32)
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(f"*:*:*:{SUPERUSER}:{password}\n")
        os.chmod(self.passfile, 0o600)
        return password

    def _password(self) -> str | None:
        try:
            return self.passfile.read_text(encoding="ascii").strip().rsplit(":", 1)[1]
        except (OSError, IndexError):
            return None

    def _require_password(self) -> None:
        """Convert a data directory initialised with trust authentication (before passwords)."""
        hba = self.pgdata / "pg_hba.conf"
        lines = hba.read_text(encoding="utf-8").splitlines()
        if not any(_is_trust(line) for line in lines):
            return
        password = self._password() or self._new_password()
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    psycopg.sql.Identifier(SUPERUSER), psycopg.sql.Literal(password)
                )
            )
            hba.write_text(_HBA, encoding="utf-8")
            conn.execute("SELECT pg_reload_conf()")
        log.info("embedded PostgreSQL now requires its password (was: trust)")

    def _hand_over_to_server_user(self) -> None:
        assert self._user is not None and self._socket_dir is not None
        if not _reachable_by_others(self.data_dir.parent):
            raise EmbeddedPostgresError(
                f"running as root, PostgreSQL runs as user {self._user!r}, which cannot reach "
                f"{self.data_dir}; choose a --data-dir under a world-traversable directory "
                "such as /var/lib or /tmp"
            )
        entry = pwd.getpwnam(self._user)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        for path in (self.data_dir, self.pgdata, self._socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(self.data_dir, 0o755)  # noqa: S103 - the server user must traverse it
        if not self.log_path.exists():
            self.log_path.touch(mode=0o600)
        os.chown(self.log_path, entry.pw_uid, entry.pw_gid)
        os.chmod(self.log_path, 0o600)

    def _server_identity(self) -> tuple[int | None, int | None, list[int] | None]:
        """(user, group, extra_groups) for subprocess: the server's user, without our groups
        (root's supplementary groups would let PostgreSQL read what only root's group may)."""
        if self._user is None:
            return None, None, None
        entry = pwd.getpwnam(self._user)
        return entry.pw_uid, entry.pw_gid, []

    def _run(self, args: list[str]) -> None:
        user, group, extra_groups = self._server_identity()
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=120,
            user=user,
            group=group,
            extra_groups=extra_groups,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"{args[0]} failed: {result.stderr.strip()[-2000:]}")

    def _initdb(self, bindir: Path) -> None:
        log.info("initialising PostgreSQL data directory %s", self.pgdata)
        password = self._new_password()
        # initdb runs as the server's user and reads the password from a file of its own.
        fd, pwfile = tempfile.mkstemp(prefix="tq-initdb-")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(password + "\n")
            if self._user is not None:
                entry = pwd.getpwnam(self._user)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            args = [str(bindir / "initdb"), "-D", str(self.pgdata), "-U", SUPERUSER]
            args += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
            args += ["--encoding=UTF8", "--locale=C"]
            if not self.durable:
                args.append("--no-sync")
            self._run(args)
        finally:
            os.unlink(pwfile)
        (self.pgdata / "pg_hba.conf").write_text(_HBA, encoding="utf-8")

    def _wait_for_stale_server(self) -> None:
        """A server left by a killed owner is shutting down (parent-death signal): wait for it."""
        pid_file = self.pgdata / "postmaster.pid"
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while pid_file.exists():
            try:
                pid = int(pid_file.read_text().splitlines()[0])
                os.kill(pid, 0)
            except (ValueError, IndexError, ProcessLookupError, FileNotFoundError):
                return  # stale file of a dead server; postgres itself cleans it up
            except PermissionError:
                pass
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"{self.pgdata} is in use by a running PostgreSQL (pid {pid}); "
                    "is another broker using this data directory?"
                )
            time.sleep(0.1)

    def _launch(self, bindir: Path) -> None:
        assert self._socket_dir is not None
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": str(self._socket_dir),
            "max_connections": str(self.max_connections),
            "shared_buffers": "128MB",
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
            # docs/operations.md: the dead-tuple saw-tooth on tq_tasks is ~naptime x 3 x rate.
            "autovacuum_naptime": "15s",
        }
        args = [str(bindir / "postgres"), "-D", str(self.pgdata)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        user, group, extra_groups = self._server_identity()
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                args,
                user=user,
                group=group,
                extra_groups=extra_groups,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self._process.poll() is not None:
                raise EmbeddedPostgresError(
                    f"PostgreSQL exited with {self._process.returncode}:\n{self._log_tail()}"
                )
            try:
                with psycopg.connect(self.conninfo("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"PostgreSQL did not accept connections:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.05)

    def _ensure_database(self, name: str) -> None:
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            exists = conn.execute(query, (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"'.encode())

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # fast shutdown: roll back sessions, checkpoint
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
