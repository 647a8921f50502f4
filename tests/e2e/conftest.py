import os
from pathlib import Path

import pytest

from conversion.demo import build_demo
from tests.e2e.daemon_process import DaemonProcess


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """The demo checkpoint `make` built (GTHREAD_TEST_STATE), or one built here, offline."""
    state = os.environ.get("GTHREAD_TEST_STATE")
    return build_demo(Path(state) if state else tmp_path_factory.mktemp("demo-state")).resolve()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, checkpoint):
    d = DaemonProcess(tmp_path_factory.mktemp("gthreadd"), checkpoint)
    d.write_model("smollm2.yaml", "smollm2")
    d.start()
    yield d
    d.kill()
