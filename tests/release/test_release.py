"""The release as users get it: `python -m build` makes a wheel and an sdist that install in a fresh
venv and start. The version is gthreadd.__version__ alone, and everything that names one agrees."""

import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

from gthreadd import __version__

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("gthreadd", "gthread", "gthread-kube")


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


def fresh_venv(path: Path) -> Path:
    venv.create(path, with_pip=True)
    return path / "bin"


def install(bin_dir: Path, *args: str) -> None:
    result = subprocess.run([str(bin_dir / "pip"), "install", "-q", *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


def versions(bin_dir: Path) -> list[str]:
    return [subprocess.run([str(bin_dir / c), "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
            for c in COMMANDS]


def test_the_wheel_and_the_sdist_install_in_a_fresh_venv_and_start(dist, tmp_path):
    (wheel,) = dist.glob(f"gthreadd-{__version__}-py3-none-any.whl")
    (sdist,) = dist.glob(f"gthreadd-{__version__}.tar.gz")
    bin_dir = fresh_venv(tmp_path / "venv")
    install(bin_dir, f"{wheel}[kube]")
    assert versions(bin_dir) == [f"{c} {__version__}" for c in COMMANDS]
    install(bin_dir, "--force-reinstall", "--no-deps", str(sdist))
    assert versions(bin_dir) == [f"{c} {__version__}" for c in COMMANDS]


def test_the_wheel_carries_the_dashboard_and_the_vllm_plugins(dist):
    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("gthreadd/ui/static/") for n in names)
    for package in ("engine", "memory", "scheduler", "conversion"):
        assert f"{package}/__init__.py" in names
    entry_points = zipfile.ZipFile(wheel).read(f"gthreadd-{__version__}.dist-info/entry_points.txt").decode()
    assert "[vllm.general_plugins]" in entry_points and "gthread_loader" in entry_points


def test_the_sdist_holds_what_a_build_from_it_needs(dist):
    (sdist,) = dist.glob("*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "gthreadd/__init__.py"} <= names


def test_every_place_that_names_the_version_agrees():
    daemonset = list(yaml.safe_load_all((ROOT / "deploy" / "daemonset.yaml").read_text()))
    pod = daemonset[0]["spec"]["template"]["spec"]
    images = {c["image"] for c in pod["containers"] + pod["initContainers"]}
    assert images == {f"ghcr.io/greenthread-ai/gthreadd:{__version__}"}
    assert (ROOT / "CHANGELOG.md").read_text().split("\n## ")[1].startswith(f"{__version__} ")
