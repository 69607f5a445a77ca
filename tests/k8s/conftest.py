"""Fixtures for tests against a real Kubernetes control plane (no Docker).

* ``control_plane``: etcd + kube-apiserver only (starts in a few seconds).
* ``control_plane_with_nodes``: a separate control plane that also runs
  kube-controller-manager, kube-scheduler and kwok with fake Nodes, so
  Deployments get ReplicaSets and their pods reach Running.

Both are session-scoped and yield a :class:`controlplane.ControlPlane`
(``.kubeconfig``, ``.kubectl(*args)``, ``.helm(*args)``, ``.env()``).

The binaries are built once per user and Kubernetes version by
``build_controlplane.sh`` (~20-30 min the first time). That build runs before
the first test (not inside one, so per-test timeouts do not cut it short), and
only when tests from this folder were selected. Without ``go`` the tests are
skipped loudly, unless ``CI`` is set, in which case they fail.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from . import controlplane as cp

_HERE = Path(__file__).resolve().parent
_BINARIES_KEY = pytest.StashKey[object]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "k8s: needs a real Kubernetes control plane built with Go")


def _is_k8s_item(item: pytest.Item) -> bool:
    try:
        return Path(str(item.path)).resolve().is_relative_to(_HERE)
    except (OSError, ValueError):
        return False


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection looks at markers
def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for item in items:
        if _is_k8s_item(item):
            item.add_marker(pytest.mark.k8s)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build (or find) the binaries before any test runs, outside per-test timeouts."""
    config = session.config
    if config.option.collectonly or not any(_is_k8s_item(i) for i in session.items):
        return
    try:
        config.stash[_BINARIES_KEY] = cp.ensure_binaries()
    except cp.ControlPlaneError as exc:  # includes BinariesUnavailable
        config.stash[_BINARIES_KEY] = exc


def _bin_dir(config: pytest.Config) -> Path:
    outcome = config.stash.get(_BINARIES_KEY, None)
    if outcome is None:
        return cp.binaries_or_skip()
    if isinstance(outcome, cp.BinariesUnavailable):
        if cp._running_in_ci():
            pytest.fail(f"CI is set, so Kubernetes tests must run: {outcome}", pytrace=False)
        msg = f"SKIPPING Kubernetes control-plane tests: {outcome}"
        print(f"\n{'!' * 78}\n{msg}\n{'!' * 78}", file=sys.__stderr__, flush=True)
        pytest.skip(msg)
    if isinstance(outcome, Exception):
        pytest.fail(str(outcome), pytrace=False)
    return outcome


@pytest.fixture(scope="session")
def k8s_bin_dir(pytestconfig: pytest.Config) -> Path:
    return _bin_dir(pytestconfig)


@pytest.fixture(scope="session")
def control_plane(k8s_bin_dir: Path):
    plane = cp.ControlPlane(k8s_bin_dir)
    try:
        plane.start()
    except cp.ControlPlaneError as exc:
        plane.stop()
        pytest.fail(f"control plane failed to start: {exc}", pytrace=False)
    yield plane
    plane.stop()
    sys.__stderr__.write(f"\n[taskqueue k8s] control plane logs kept in {plane.logs}\n")


@pytest.fixture(scope="session")
def control_plane_with_nodes(k8s_bin_dir: Path):
    plane = cp.ControlPlane(k8s_bin_dir, with_nodes=True, nodes=2)
    try:
        plane.start()
    except cp.ControlPlaneError as exc:
        plane.stop()
        pytest.fail(f"control plane (with nodes) failed to start: {exc}", pytrace=False)
    yield plane
    plane.stop()
    sys.__stderr__.write(f"\n[taskqueue k8s] control plane logs kept in {plane.logs}\n")
