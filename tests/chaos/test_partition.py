"""Both ways of cutting a worker off really cut it off, and healing really reconnects it.

A client is run through the link's command (inside the namespace, for the namespace link) and
asks an echo server on the host for one line: answered before the cut, not answered (within
its timeout) while cut, answered again after the heal.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from .partition import Link, NamespaceLink, ProxyLink, netns_available

ASK = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((host, port), timeout=1.5) as s:
        s.sendall(b"ping\\n")
        print(s.recv(64).decode().strip() or "closed")
except OSError as e:
    print(type(e).__name__)
"""


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("0.0.0.0", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                line = conn.recv(64)
                if line:
                    conn.sendall(b"echo " + line)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    server.close()


def ask(link: Link) -> str:
    url = link.broker_url().removeprefix("http://")
    host, port = url.rsplit(":", 1)
    argv = link.command([sys.executable, "-c", ASK, host, port])
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()


def links() -> list[object]:
    namespace = pytest.param(
        NamespaceLink,
        marks=pytest.mark.skipif(
            not netns_available(), reason="network namespaces need root and `ip`"
        ),
    )
    return [ProxyLink, namespace]


@pytest.mark.parametrize("make", links(), ids=["proxy", "namespace"])
def test_a_cut_link_carries_nothing_until_healed(make: type[Link], echo_port: int) -> None:
    link = make(echo_port)  # type: ignore[call-arg]
    try:
        assert ask(link) == "echo ping"
        link.cut()
        assert ask(link) == "TimeoutError"  # no answer and no refusal: dropped
        link.heal()
        assert ask(link) == "echo ping"
    finally:
        link.close()
