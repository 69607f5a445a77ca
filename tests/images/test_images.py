"""The images, built from their Dockerfiles and run from their own files.

What a Deployment relies on: the entry points exist and run; the broker from the image serves
/health on a real PostgreSQL; a worker from the example image completes a task; every process
runs as uid 10001 on a read-only root filesystem; no compiler ships in a run-time image.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.images import rootfs
from tests.support.processes import free_port
from tq_broker.embedded import DATABASE_NAME, SUPERUSER, EmbeddedPostgres

IMAGE_USER = "10001"
START_TIMEOUT_SECONDS = 90.0  # a cold start imports everything from source (no .pyc on a RO fs)


def run_in(
    image: str, argv: list[str], user: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        rootfs.contained(image, argv, user=user),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("image_name", "argv", "expected"),
    [
        ("broker", ["tq-broker", "--help"], "usage: tq-broker"),
        ("broker", ["tq-operator", "--help"], "usage: tq-operator"),
        ("worker", ["tq-worker", "--help"], "usage: tq-worker"),
    ],
)
def test_entry_points_run_as_the_image_user_on_a_read_only_root(
    built_images: dict[str, str], image_name: str, argv: list[str], expected: str
) -> None:
    done = run_in(built_images[image_name], argv)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


@pytest.mark.parametrize("image_name", ["broker", "worker", "example-worker"])
def test_image_runs_as_10001_and_its_root_is_read_only(
    built_images: dict[str, str], image_name: str
) -> None:
    image = built_images[image_name]
    assert rootfs.ImageConfig.of(image).user == IMAGE_USER
    whoami = run_in(image, ["python", "-c", "import os; print(os.getuid(), os.getgid())"])
    assert whoami.stdout.split() == [IMAGE_USER, IMAGE_USER], whoami.stderr
    # Even root cannot write: the mount is read-only, as in a pod with readOnlyRootFilesystem.
    write = run_in(image, ["sh", "-c", "touch /opt/taskqueue/x"], user="0")
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    scratch = run_in(image, ["sh", "-c", "touch /tmp/x && echo ok"])
    assert scratch.stdout.strip() == "ok", scratch.stderr


@pytest.mark.parametrize("image_name", ["broker", "worker"])
def test_no_compiler_or_pip_in_the_image(built_images: dict[str, str], image_name: str) -> None:
    root = rootfs.mount(built_images[image_name])
    assert rootfs.compilers_in(root) == []
    assert not (root / "opt/taskqueue/bin/pip").exists()
    assert (root / "opt/taskqueue/bin/tq-worker").is_file()  # the right tree was searched


def test_compiler_detector_finds_compilers(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    for name in ("gcc-12", "x86_64-linux-gnu-gcc-12", "cc", "python3", "c++filt"):
        (tmp_path / "usr/bin" / name).touch()
    (tmp_path / "usr/lib/gcc/x86_64-linux-gnu/12").mkdir(parents=True)
    (tmp_path / "usr/lib/gcc/x86_64-linux-gnu/12/cc1").touch()
    assert rootfs.compilers_in(tmp_path) == [
        "usr/bin/cc",
        "usr/bin/gcc-12",
        "usr/bin/x86_64-linux-gnu-gcc-12",
        "usr/lib/gcc/x86_64-linux-gnu/12/cc1",
    ]


@pytest.fixture
def reachable_postgres(own_postgres: EmbeddedPostgres) -> tuple[EmbeddedPostgres, str]:
    """The test's PostgreSQL, its socket directory opened to the image's user, and a URL for it
    (the password in the URL: the image cannot read the test's passfile)."""
    socket_dir = Path(own_postgres.conninfo().split("host=", 1)[1].split()[0])
    os.chmod(socket_dir, 0o755)
    password = quote(own_postgres.passfile.read_text().strip().rsplit(":", 1)[1], safe="")
    url = f"postgresql://{SUPERUSER}:{password}@/{DATABASE_NAME}?host={socket_dir}&port=5432"
    return own_postgres, url


class ImageProcess:
    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def wait_for(check: Callable[[], bool], what: str, process: ImageProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            raise AssertionError(
                f"{what}: process exited {process.process.returncode}\n{process.log()}"
            )
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what}: not after {timeout}s\n{process.log()}")


def test_broker_and_example_worker_from_the_images_complete_a_task(
    built_images: dict[str, str],
    reachable_postgres: tuple[EmbeddedPostgres, str],
    tmp_path: Path,
) -> None:
    postgres, database_url = reachable_postgres
    port = free_port()
    socket_dir = Path(database_url.split("host=", 1)[1].split("&", 1)[0])
    broker = ImageProcess(
        rootfs.contained(
            built_images["broker"],
            [
                "tq-broker",
                "--port",
                str(port),
                "--database-url",
                database_url,
            ],
            # Auth off is refused off loopback; the image's TQ_HOST is 0.0.0.0 for pods.
            env={
                "TQ_AUTH": "off",
                "TQ_HOST": "127.0.0.1",
                "TQ_METRICS_PORT": "0",
                "TQ_GRPC_PORT": "0",
            },
            binds=(socket_dir,),
        ),
        tmp_path / "broker.log",
    )
    url = f"http://127.0.0.1:{port}"
    worker: ImageProcess | None = None
    try:
        wait_for(
            lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200,
            "broker from the image healthy",
            broker,
            START_TIMEOUT_SECONDS,
        )
        health = httpx.get(f"{url}/health", timeout=5).json()
        assert health["status"] == "healthy"
        assert health["is_leader"] is True  # its advisory lock, on the test's PostgreSQL

        worker = ImageProcess(
            rootfs.contained(
                built_images["example-worker"],
                env={"TQ_BROKER_URL": url, "TQ_URL": url},
            ),
            tmp_path / "worker.log",
        )
        submitted = httpx.post(
            f"{url}/api/v1/tasks",
            json={
                "task_type": "send_email",
                "payload": base64.b64encode(b"ops@example.com").decode(),
            },
            timeout=10,
        )
        assert submitted.status_code == 201, submitted.text
        task_id = submitted.json()["task_id"]

        def completed() -> bool:
            task = httpx.get(f"{url}/api/v1/tasks/{task_id}", timeout=5).json()
            assert task["status"] not in ("dead_letter", "cancelled"), task
            return bool(task["status"] == "completed")

        wait_for(completed, "task completed by the image's worker", worker, START_TIMEOUT_SECONDS)
        task = httpx.get(f"{url}/api/v1/tasks/{task_id}", timeout=5).json()
        assert base64.b64decode(task["result"]) == b"sent to ops@example.com"
        workers = httpx.get(f"{url}/api/v1/workers", timeout=5).json()
        assert len(workers) == 1
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
    assert postgres is not None
