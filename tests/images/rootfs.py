"""Build the project's images with scripts/build-images.sh and run their files without a runtime.

No container runtime can start containers on these machines, so a built image is run the way
its entry point would run in a pod, minus the runtime: `podman image mount` gives its root
filesystem; a private mount namespace bind-mounts it read-only (as the chart's
`readOnlyRootFilesystem: true` does), puts a tmpfs on /tmp (the chart's emptyDir), and `chroot
--userspec` runs the image's entry point with the image's environment as the image's user.
The host's network is shared, so a process in the image reaches a server the test started on
127.0.0.1, and the test reaches the process's ports.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-images.sh"
BASE_IMAGE = "docker.io/library/python:3.11-slim"
IMAGES = {
    "broker": "localhost/taskqueue:test",
    "worker": "localhost/taskqueue-worker:test",
    "example-worker": "localhost/taskqueue-example-worker:test",
}
# Names of compilers and their drivers: none may be in a run-time image.
COMPILER_NAMES = ("gcc", "cc", "c++", "g++", "clang", "cc1", "as", "ld", "make")


class ImagesUnavailable(Exception):
    """podman or mmdebstrap is missing: the images cannot be built here."""


def missing_tools() -> list[str]:
    return [
        tool for tool in ("podman", "mmdebstrap", "unshare", "chroot") if not shutil.which(tool)
    ]


def build_all(log_path: Path) -> None:
    """Build all three images from the Dockerfiles (podman path); raises with the log's tail."""
    if missing := missing_tools():
        raise ImagesUnavailable(f"missing {', '.join(missing)} (apt-get install podman mmdebstrap)")
    env = {
        **os.environ,
        "TQ_IMAGE_BUILDER": "podman",
        "IMAGE": IMAGES["broker"],
        "WORKER_IMAGE": IMAGES["worker"],
        "EXAMPLE_WORKER_IMAGE": IMAGES["example-worker"],
    }
    with open(log_path, "wb") as log:
        done = subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, stdout=log, stderr=log)
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace")[-6000:]
        raise RuntimeError(f"build-images.sh exited {done.returncode}:\n{tail}")


def inspect(image: str) -> dict[str, object]:
    out = subprocess.run(
        ["podman", "image", "inspect", image], check=True, capture_output=True, text=True
    ).stdout
    info: dict[str, object] = json.loads(out)[0]
    return info


def size_bytes(image: str) -> int:
    return int(str(inspect(image)["Size"]))


@dataclass
class ImageConfig:
    user: str
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    workdir: str

    @classmethod
    def of(cls, image: str) -> ImageConfig:
        config = inspect(image)["Config"]
        assert isinstance(config, dict)
        env = dict(item.split("=", 1) for item in config.get("Env") or [])
        return cls(
            user=str(config.get("User") or "root"),
            env=env,
            entrypoint=list(config.get("Entrypoint") or []),
            cmd=list(config.get("Cmd") or []),
            workdir=str(config.get("WorkingDir") or "/"),
        )


def mount(image: str) -> Path:
    """The image's root filesystem (podman keeps it mounted until `podman image unmount`)."""
    out = subprocess.run(
        ["podman", "image", "mount", image], check=True, capture_output=True, text=True
    ).stdout
    return Path(out.strip())


def contained(
    image: str,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
    binds: tuple[Path, ...] = (),
) -> list[str]:
    """The command line that runs `argv` (default: the image's entry point and command) from
    the image's root filesystem, read-only, as the image's user (or `user`), with the image's
    environment plus `env`. `binds` are host directories made visible at the same path."""
    config = ImageConfig.of(image)
    root = mount(image)
    target = Path(tempfile.mkdtemp(prefix="tq-image-root-"))
    argv = argv if argv is not None else [*config.entrypoint, *config.cmd]
    userspec = user or config.user
    if ":" not in userspec:
        userspec = f"{userspec}:{userspec}"
    run_env = {**config.env, "HOME": "/tmp", **(env or {})}
    steps = [
        f"mount --bind {shlex.quote(str(root))} {target}",
        f"mount -o remount,bind,ro {target}",
        f"mount -t tmpfs -o mode=1777 tmpfs {target}/tmp",
        f"mount -t proc proc {target}/proc",
        f"mount --rbind /dev {target}/dev",
    ]
    for bind in binds:
        inside = f"{target}{bind}"
        steps += [f"mkdir -p {shlex.quote(inside)}", f"mount --bind {bind} {shlex.quote(inside)}"]
    command = [
        "exec",
        "chroot",
        f"--userspec={userspec}",
        str(target),
        "/usr/bin/env",
        "-i",
        f"--chdir={config.workdir}",
        *(f"{key}={value}" for key, value in run_env.items()),
        *argv,
    ]
    script = " && ".join(steps) + " && " + shlex.join(command)
    return ["unshare", "--mount", "--propagation", "private", "bash", "-c", script]


def compilers_in(root: Path) -> list[str]:
    """Compiler executables anywhere on the image's usual executable paths, and cc1 anywhere."""
    found = []
    for directory in ("usr/bin", "usr/local/bin", "bin", "opt/taskqueue/bin"):
        base = root / directory
        if not base.is_dir():
            continue
        for entry in base.iterdir():
            name = entry.name
            stem = name.removeprefix("x86_64-linux-gnu-").rstrip("0123456789.").rstrip("-")
            if stem in COMPILER_NAMES:
                found.append(str(entry.relative_to(root)))
    gcc_lib = root / "usr/lib/gcc"
    if gcc_lib.is_dir():
        found += [str(p.relative_to(root)) for p in gcc_lib.rglob("cc1*")]
    return sorted(found)
