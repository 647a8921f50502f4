import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """The demo checkpoint `make` built (GTHREAD_TEST_STATE), or one built here, offline."""
    from conversion.demo import build_demo

    state = os.environ.get("GTHREAD_TEST_STATE")
    return build_demo(Path(state) if state else tmp_path_factory.mktemp("demo-state")).resolve()


@pytest.fixture(scope="session")
def vllm_args_cache_home(tmp_path_factory) -> Path:
    """An XDG_CACHE_HOME holding the installed vLLM's argument table (engine/arg_table.py), read
    once per session by `python -m engine.arg_table`, so that no vLLM is imported here."""
    home = tmp_path_factory.mktemp("xdg-cache")
    subprocess.run([sys.executable, "-m", "engine.arg_table"], env=os.environ | {"XDG_CACHE_HOME": str(home)},
                   check=True, capture_output=True, timeout=300)
    return home


@pytest.fixture
def vllm_args_cache(vllm_args_cache_home, monkeypatch) -> Path:
    """The commands this test runs find vLLM's argument table there, not in the developer's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(vllm_args_cache_home))
    return vllm_args_cache_home


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    """A real etcd, kube-apiserver (RBAC on) and kube-controller-manager (tests/kube_env.py), built
    from Debian's packages on first use on this machine (about 15 minutes), then reused. One per
    module (about 6 s to start), so no module's objects show in another's tables."""
    from tests.kube_env import ControlPlane, environment

    root = tmp_path_factory.mktemp("kube")
    plane = ControlPlane(environment(root), root / "run")
    plane.start()
    yield plane
    plane.stop()
