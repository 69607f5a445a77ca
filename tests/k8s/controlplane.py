"""A real Kubernetes control plane for tests, without Docker.

Starts etcd and kube-apiserver the way controller-runtime's envtest does
(loopback, random ports, throwaway certificates, a temp data dir), and
optionally kube-controller-manager, kube-scheduler and the kwok controller with
fake Nodes, so that Deployments get ReplicaSets and their pods reach Running.

Binaries come from ``build_controlplane.sh`` (see :func:`ensure_binaries`).

Usage::

    with ControlPlane(ensure_binaries(), with_nodes=True) as cp:
        cp.kubectl("get", "nodes")
        # cp.kubeconfig is a kubeconfig file for an admin (system:masters) user
"""

from __future__ import annotations

import atexit
import base64
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build_controlplane.sh"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"


class ControlPlaneError(RuntimeError):
    """A component failed to build, start or become ready."""


class BinariesUnavailable(ControlPlaneError):
    """The binaries are not built and cannot be built here (no ``go``)."""


# --------------------------------------------------------------------------
# binaries


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(bin_dir: Path) -> list:
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if not (bin_dir / "kwok-stages.yaml").is_file():
        missing.append("kwok-stages.yaml")
    return missing


def ensure_binaries(timeout: float = 3 * 3600) -> Path:
    """Return the bin dir holding all control-plane binaries, building if needed.

    ``TQ_K8S_BIN`` may point at a directory of prebuilt binaries. Otherwise
    ``build_controlplane.sh`` is run: it exits at once when its per-user cache
    is already complete, and needs ``go`` only when something must be built.
    Raises :class:`BinariesUnavailable` when ``go`` is missing and the cache is
    incomplete, :class:`ControlPlaneError` when the build fails.
    """
    override = os.environ.get("TQ_K8S_BIN")
    if override:
        bin_dir = Path(override)
        missing = _missing(bin_dir)
        if missing:
            raise ControlPlaneError(f"TQ_K8S_BIN={override} lacks {', '.join(missing)}")
        return bin_dir

    log_dir = Path(tempfile.gettempdir())
    log_path = log_dir / f"taskqueue-k8s-build-{os.getuid()}.log"
    if shutil.which("go") is None:
        # The script still answers quickly if everything is already built.
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=60
        )
        if proc.returncode == 0:
            return Path(proc.stdout.strip().splitlines()[-1])
        raise BinariesUnavailable(
            "the Kubernetes test control plane is not built and 'go' is not installed "
            f"(needed by {BUILD_SCRIPT}): install Go >= 1.26 or set TQ_K8S_BIN"
        )

    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["bash", str(BUILD_SCRIPT)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,  # so a timeout can end the go processes too
        )
        try:
            out, _ = proc.communicate(timeout=5)  # already built: answers at once
        except subprocess.TimeoutExpired:
            print(
                f"\n[taskqueue k8s] building the Kubernetes control plane with {BUILD_SCRIPT.name}"
                f" (first build ~25 min on 2 cores; log: {log_path})",
                file=sys.__stderr__,
                flush=True,
            )
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.communicate()
                raise ControlPlaneError(
                    f"{BUILD_SCRIPT} did not finish in {timeout:.0f}s; "
                    f"log: {log_path}\n" + _tail(log_path, 40)
                ) from None
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} failed (exit {proc.returncode}); last lines of {log_path}:\n"
            + _tail(log_path, 40)
        )
    bin_dir = Path(out.strip().splitlines()[-1])
    missing = _missing(bin_dir)
    if missing:
        raise ControlPlaneError(f"build finished but {bin_dir} lacks {', '.join(missing)}")
    return bin_dir


def binaries_or_skip() -> Path:
    """Decide skip-vs-fail for tests that need the control plane.

    No ``go`` (and nothing prebuilt) and ``CI`` unset: skip, loudly.
    ``CI`` set: the tests must run, so any problem is a failure.
    A failed build is always a failure.
    """
    import pytest

    try:
        return ensure_binaries()
    except BinariesUnavailable as exc:
        if _running_in_ci():
            pytest.fail(f"CI is set, so Kubernetes tests must run: {exc}", pytrace=False)
        banner = "!" * 78
        msg = f"SKIPPING Kubernetes control-plane tests: {exc}"
        print(f"\n{banner}\n{msg}\n{banner}", file=sys.__stderr__, flush=True)
        pytest.skip(msg)
    except ControlPlaneError as exc:
        pytest.fail(str(exc), pytrace=False)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------
# certificates


def _crypto():
    try:
        import cryptography  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ControlPlaneError(
            "tests/k8s needs the 'cryptography' package to mint throwaway certificates "
            "(pip install cryptography)"
        ) from exc
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    return x509, hashes, serialization, ec, rsa, ExtendedKeyUsageOID, NameOID


def _pem_key(key) -> bytes:
    _, _, serialization, *_ = _crypto()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _pem_cert(cert) -> bytes:
    _, _, serialization, *_ = _crypto()
    return cert.public_bytes(serialization.Encoding.PEM)


class _CA:
    def __init__(self, common_name: str):
        x509, hashes, _, ec, _, _, NameOID = _crypto()
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        server: bool = False,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
    ):
        x509, hashes, _, ec, _, EKU, NameOID = _crypto()
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([EKU.SERVER_AUTH if server else EKU.CLIENT_AUTH]),
                critical=False,
            )
        )
        if dns or ips:
            sans = [x509.DNSName(d) for d in dns]
            sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


# --------------------------------------------------------------------------
# helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: have Linux SIGKILL the child if the test process dies abruptly."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(data.splitlines()[-lines:])


def _kubeconfig_yaml(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str) -> str:
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: taskqueue-test\n"
        "  cluster:\n"
        f"    server: {server}\n"
        f"    certificate-authority-data: {b64(ca_pem)}\n"
        "users:\n"
        f"- name: {user}\n"
        "  user:\n"
        f"    client-certificate-data: {b64(cert_pem)}\n"
        f"    client-key-data: {b64(key_pem)}\n"
        "contexts:\n"
        "- name: taskqueue-test\n"
        "  context:\n"
        "    cluster: taskqueue-test\n"
        f"    user: {user}\n"
        "    namespace: default\n"
        "current-context: taskqueue-test\n"
    )


_FAKE_NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    beta.kubernetes.io/arch: amd64
    beta.kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: {name}
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
status:
  allocatable:
    cpu: "32"
    memory: 256Gi
    pods: "110"
  capacity:
    cpu: "32"
    memory: 256Gi
    pods: "110"
  nodeInfo:
    architecture: amd64
    kubeProxyVersion: fake
    kubeletVersion: fake
    operatingSystem: linux
  phase: Running
"""


# --------------------------------------------------------------------------
# the control plane


class ControlPlane:
    """etcd + kube-apiserver (+ controller-manager, scheduler, kwok and fake Nodes).

    Attributes after :meth:`start`: ``kubeconfig`` (admin, ``system:masters``),
    ``server`` (https URL), ``workdir`` (logs in ``workdir/logs``), ``ca_file``,
    ``admin_cert_file``, ``admin_key_file``, ``node_names``.
    """

    def __init__(
        self,
        bin_dir,
        *,
        with_nodes: bool = False,
        nodes: int = 1,
        workdir: os.PathLike | None = None,
        startup_timeout: float = 120.0,
    ):
        self.bin_dir = Path(bin_dir)
        self.with_nodes = with_nodes
        self.node_names = [f"kwok-node-{i}" for i in range(nodes)] if with_nodes else []
        self.startup_timeout = startup_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="taskqueue-k8s-"))
        self.logs = self.workdir / "logs"
        self.pki = self.workdir / "pki"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.server = ""
        self._procs: list = []  # (name, Popen, logfile)
        self._started = False

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        if self._started:
            return self
        self._started = True
        atexit.register(self.stop)
        missing = _missing(self.bin_dir)
        needed = {"etcd", "kube-apiserver", "kubectl"}
        if self.with_nodes:
            needed |= {"kube-controller-manager", "kube-scheduler", "kwok"}
        if needed & set(missing):
            raise ControlPlaneError(f"{self.bin_dir} lacks {sorted(needed & set(missing))}")
        for d in (self.logs, self.pki):
            d.mkdir(parents=True, exist_ok=True)
        try:
            self._write_pki()
            self._start_etcd()
            self._start_apiserver()
            if self.with_nodes:
                self._start_controller_manager()
                self._start_scheduler()
                self._start_kwok()
                self._create_nodes()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process, newest first (kwok ... apiserver, etcd last):
        SIGTERM, then SIGKILL after 15 s. Logs stay in ``workdir/logs``; the
        etcd data dir (64 MB of preallocated WAL) is removed."""
        procs, self._procs = self._procs, []
        for _, proc, _ in reversed(procs):
            if proc.poll() is None:
                try:
                    proc.terminate()
                    proc.wait(timeout=15)
                except ProcessLookupError:
                    pass
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        if procs and self._own_workdir:
            shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
        atexit.unregister(self.stop)

    def cleanup(self) -> None:
        """Stop and delete the work dir (logs included) if we created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- public helpers ----------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run kubectl against this control plane; returns the CompletedProcess."""
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env()
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def kubectl_json(self, *args: str, **kw):
        return json.loads(self.kubectl(*args, "-o", "json", **kw).stdout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        """Run helm against this control plane with its state kept in the work dir."""
        cmd = [str(self.bin_dir / "helm"), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def env(self) -> dict:
        """Environment for subprocesses that should talk to this cluster."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        helm_home = self.workdir / "helm"
        env["HELM_CACHE_HOME"] = str(helm_home / "cache")
        env["HELM_CONFIG_HOME"] = str(helm_home / "config")
        env["HELM_DATA_HOME"] = str(helm_home / "data")
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def log_tail(self, name: str, lines: int = 30) -> str:
        return _tail(self.logs / f"{name}.log", lines)

    def wait_for(self, what: str, predicate, timeout: float = 60, interval: float = 0.5):
        """Poll ``predicate()`` until it returns a truthy value; return it."""
        deadline = time.monotonic() + timeout
        last_exc = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                value = predicate()
                if value:
                    return value
            except Exception as exc:
                last_exc = exc
            time.sleep(interval)
        raise ControlPlaneError(
            f"timed out after {timeout:.0f}s waiting for {what}"
            + (f" (last error: {last_exc})" if last_exc else "")
            + self._all_tails()
        )

    # -- internals ---------------------------------------------------------

    def _write_pki(self) -> None:
        _, _, serialization, _, rsa, _, _ = _crypto()
        ca = _CA("taskqueue-test-ca")
        self._ca = ca
        self.ca_file = self.pki / "ca.crt"
        self.ca_file.write_bytes(_pem_cert(ca.cert))
        (self.pki / "ca.key").write_bytes(_pem_key(ca.key))
        key, cert = ca.issue(
            "kube-apiserver",
            server=True,
            dns=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ips=["127.0.0.1", "10.0.0.1"],
        )
        (self.pki / "apiserver.crt").write_bytes(_pem_cert(cert))
        (self.pki / "apiserver.key").write_bytes(_pem_key(key))
        # Service-account token signing key pair.
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.pki / "sa.key").write_bytes(_pem_key(sa_key))
        (self.pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        # Client certificates.
        self._client_certs = {}
        for ident, cn, orgs in (
            ("admin", "taskqueue-admin", ["system:masters"]),
            ("controller-manager", "system:kube-controller-manager", []),
            ("scheduler", "system:kube-scheduler", []),
            ("kwok", "kwok-controller", ["system:masters"]),
        ):
            key, cert = ca.issue(cn, organizations=orgs)
            self._client_certs[ident] = (_pem_cert(cert), _pem_key(key))
        self.admin_cert_file = self.pki / "admin.crt"
        self.admin_key_file = self.pki / "admin.key"
        self.admin_cert_file.write_bytes(self._client_certs["admin"][0])
        self.admin_key_file.write_bytes(self._client_certs["admin"][1])
        for p in self.pki.glob("*.key"):
            p.chmod(0o600)

    def _write_kubeconfig(self, ident: str) -> Path:
        cert, key = self._client_certs[ident]
        path = self.kubeconfig if ident == "admin" else self.workdir / f"{ident}.kubeconfig"
        path.write_text(_kubeconfig_yaml(self.server, _pem_cert(self._ca.cert), cert, key, ident))
        path.chmod(0o600)
        return path

    def _spawn(self, name: str, args: Sequence[str]) -> subprocess.Popen:
        log_path = self.logs / f"{name}.log"
        with open(log_path, "ab") as log:
            log.write(f"$ {' '.join(args)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(args),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        self._procs.append((name, proc, log_path))
        return proc

    def _check_alive(self) -> None:
        for name, proc, log_path in self._procs:
            if proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {proc.returncode}; last lines of {log_path}:\n"
                    + _tail(log_path, 40)
                )

    def _all_tails(self) -> str:
        return "".join(
            f"\n--- {name} ({log_path}) ---\n{_tail(log_path, 25)}"
            for name, _, log_path in self._procs
        )

    def _ssl_context(self, verify: bool = True) -> ssl.SSLContext:
        if verify:
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(str(self.admin_cert_file), str(self.admin_key_file))
        return ctx

    def _http_ok(self, url: str, ctx: ssl.SSLContext | None = None) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def _start_etcd(self) -> None:
        client, peer = _free_port(), _free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ],
        )
        self.wait_for(
            "etcd /health",
            lambda: self._http_ok(f"{self.etcd_url}/health"),
            timeout=self.startup_timeout,
        )

    def _start_apiserver(self) -> None:
        port = _free_port()
        self.server = f"https://127.0.0.1:{port}"
        args = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={self.pki / 'apiserver.crt'}",
            f"--tls-private-key-file={self.pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            f"--secure-port={port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={self.pki / 'sa.pub'}",
            f"--service-account-signing-key-file={self.pki / 'sa.key'}",
            # The kubernetes Service cannot point at a loopback address.
            "--endpoint-reconciler-type=none",
            "--v=1",
        ]
        if not self.with_nodes:
            # As envtest: without the controller-manager no "default"
            # ServiceAccount appears, and this plugin would reject every pod.
            args.append("--disable-admission-plugins=ServiceAccount")
        self._spawn("kube-apiserver", args)
        self._write_kubeconfig("admin")
        ctx = self._ssl_context()
        self.wait_for(
            "kube-apiserver /readyz",
            lambda: self._http_ok(f"{self.server}/readyz", ctx),
            timeout=self.startup_timeout,
        )

    def _start_controller_manager(self) -> None:
        kc = self._write_kubeconfig("controller-manager")
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                f"--cluster-signing-cert-file={self.ca_file}",
                f"--cluster-signing-key-file={self.pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--bind-address=127.0.0.1",
                f"--secure-port={_free_port()}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--v=1",
            ],
        )

        def default_sa():
            return (
                self.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            )

        self.wait_for(
            "kube-controller-manager (ServiceAccount default/default)",
            default_sa,
            timeout=self.startup_timeout,
        )

    def _start_scheduler(self) -> None:
        kc = self._write_kubeconfig("scheduler")
        port = _free_port()
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "--v=1",
            ],
        )
        ctx = self._ssl_context(verify=False)
        self.wait_for(
            "kube-scheduler /healthz",
            lambda: self._http_ok(f"https://127.0.0.1:{port}/healthz", ctx),
            timeout=self.startup_timeout,
        )

    def _start_kwok(self) -> None:
        kc = self._write_kubeconfig("kwok")
        stages = self.bin_dir / "kwok-stages.yaml"
        if not stages.is_file():
            raise ControlPlaneError(f"{stages} is missing (written by {BUILD_SCRIPT.name})")
        self._spawn(
            "kwok",
            [
                str(self.bin_dir / "kwok"),
                f"--config={stages}",
                f"--kubeconfig={kc}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--manage-nodes-with-label-selector=",
                "--cidr=10.244.0.1/16",
                "--node-ip=10.244.0.1",
                f"--server-address=127.0.0.1:{_free_port()}",
                "--node-lease-duration-seconds=40",
            ],
        )

    def _create_nodes(self) -> None:
        manifest = "---\n".join(_FAKE_NODE.format(name=n) for n in self.node_names)
        self.kubectl("apply", "-f", "-", input=manifest)

        def all_ready():
            nodes = self.kubectl_json("get", "nodes")["items"]
            ready = {
                n["metadata"]["name"]
                for n in nodes
                for c in n.get("status", {}).get("conditions", [])
                if c["type"] == "Ready" and c["status"] == "True"
            }
            return set(self.node_names) <= ready

        self.wait_for(
            f"fake nodes {self.node_names} Ready", all_ready, timeout=self.startup_timeout
        )
