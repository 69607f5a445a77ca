"""Cutting one worker off from the brokers, and reconnecting it.

Where the machine allows it (root, `ip`), the worker runs in its own network namespace joined
to the host by a veth pair, and the partition takes the host end of the link down: packets
are dropped, connections hang, exactly as when a node loses its network. Elsewhere a TCP
proxy in this process stands between the worker and its broker and, while cut, forwards
nothing: open connections stall and new ones are accepted but never answered.
"""

from __future__ import annotations

import itertools
import os
import selectors
import shutil
import socket
import subprocess
import threading
from typing import Protocol

_link_numbers = itertools.count(1)


class Link(Protocol):
    """How one worker reaches one broker."""

    kind: str

    def broker_url(self) -> str: ...

    def command(self, argv: list[str]) -> list[str]: ...

    def cut(self) -> None: ...

    def heal(self) -> None: ...

    def close(self) -> None: ...


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def netns_available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"tqprobe{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        return False
    _ip("netns", "del", name)
    return True


class NamespaceLink:
    """The worker in namespace `tqc<pid>-<n>`; the broker must listen on the host end."""

    kind = "network namespace, link down"

    def __init__(self, broker_port: int) -> None:
        n = next(_link_numbers)
        suffix = f"{os.getpid() % 100000}{n}"
        self.namespace = f"tqc{suffix}"
        self.host_end = f"tqh{suffix}"[:15]
        self.worker_end = f"tqw{suffix}"[:15]
        subnet = 200 + (os.getpid() + n) % 50
        self.host_address = f"10.231.{subnet}.1"
        self.worker_address = f"10.231.{subnet}.2"
        self.broker_port = broker_port
        _ip("netns", "add", self.namespace)
        try:
            _ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.worker_end)
            _ip("link", "set", self.worker_end, "netns", self.namespace)
            _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_end)
            _ip("link", "set", self.host_end, "up")
            inside = ("netns", "exec", self.namespace, "ip")
            _ip(*inside, "addr", "add", f"{self.worker_address}/30", "dev", self.worker_end)
            _ip(*inside, "link", "set", self.worker_end, "up")
            _ip(*inside, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def broker_url(self) -> str:
        return f"http://{self.host_address}:{self.broker_port}"

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]  # ip execs: the pid is the worker's

    def cut(self) -> None:
        _ip("link", "set", self.host_end, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_end, "up")

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_end], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=10)


class ProxyLink:
    """A blackholing TCP proxy on loopback in front of the broker."""

    kind = "TCP proxy, blackhole"

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True, name="chaos-proxy")
        self._thread.start()

    def broker_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, argv: list[str]) -> list[str]:
        return argv

    def cut(self) -> None:
        self._cut.set()

    def heal(self) -> None:
        self._cut.clear()
        with self._lock:  # connections that stalled through the cut are gone, as after a timeout
            stalled, self._open = self._open, []
        for sock in stalled:
            sock.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.heal()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.broker_port), timeout=5)
            except OSError:
                client.close()  # the broker is down: refused, as it would be without a proxy
                continue
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            try:
                while not self._closed.is_set():
                    for key, _ in selector.select(timeout=0.2):
                        if self._cut.is_set():
                            continue  # blackhole: read nothing, forward nothing
                        ready = key.fileobj
                        assert isinstance(ready, socket.socket)
                        data = ready.recv(65536)
                        if not data:
                            return
                        peers[ready].sendall(data)
                    if self._cut.is_set():
                        self._closed.wait(0.05)
            except OSError:
                return
            finally:
                client.close()
                upstream.close()
                with self._lock:
                    self._open = [s for s in self._open if s not in (client, upstream)]


def make_link(broker_port: int, use_namespace: bool) -> Link:
    return NamespaceLink(broker_port) if use_namespace else ProxyLink(broker_port)
