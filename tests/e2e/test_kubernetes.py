"""Two Kubernetes "nodes" (a real gthreadd with real vLLM CPU engines and a real gthread-kube
process each, n1 and n2) against a real kube-apiserver 1.20 and kube-controller-manager
(tests/kube_env.py). deploy/ is installed as a user installs it (`kubectl apply -k`), each shim acts
with a token the API server issued to the gthreadd ServiceAccount (deploy/rbac.yaml's permissions
and no more), and the user's side is kubectl as the cluster admin.

Seed 002's first Model is applied as written there, but for what a CPU host without the hub can
run: its checkpoint is the demo's (offline, by repo id), and it names no product or dtype.

What 1.20 cannot serve stays on the emulator: discovery.k8s.io/v1 EndpointSlices (1.21+) are
checked in tests/gthreadd/kube/test_agent.py; here the shim says it goes without them.
"""

import json
import time
from pathlib import Path

import pytest

from tests.e2e.daemon_process import HUB_ID, DaemonProcess
from tests.e2e.shim_process import ShimProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
LEASE_S, RENEW_S = 6.0, 1.0
NAME = "llama-3-8b"
LEASE = f"model-default-{NAME}-0"
SEED_002_MODEL = {
    "apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "metadata": {"name": NAME, "namespace": "default"},
    "spec": {"modelName": HUB_ID, "modelType": "chat", "loadFormat": "auto",
             "endpoints": ["chat_completions", "completions"], "parallelism": {"tensor": 1, "pipeline": 1},
             "replicas": 1, "fairness": {"popular": False}, "sleep": {}, "gpuMemoryUtilization": "0.20"},
}
SEED_000_HEADER = "NAMESPACE NAME PHASE REPLICAS SERVING SLEEPING NODE GPUS VRAM/GPU URL"
SEED_002_GPU_HEADER = "NAME NODE INDEX PRODUCT MODE HEALTH AVAILABLE"


class Node:
    def __init__(self, name: str, root, checkpoint, env: dict, kubeconfig: Path):
        self.name = name
        self.daemon = DaemonProcess(root, checkpoint, env)
        self.shim = ShimProcess(name, self.daemon, kubeconfig, LEASE_S, RENEW_S)

    def start(self) -> None:
        self.daemon.start()
        self.shim.start()

    def kill(self) -> None:
        self.shim.kill()
        self.daemon.kill()

    def answer(self) -> str:
        body = json.dumps({"model": NAME, "max_tokens": 32, "temperature": 0,
                           "messages": [{"role": "user", "content": "What is the capital of France?"}]}).encode()
        status, reply = self.daemon.request("POST", f"/{NAME}/v1/chat/completions", body)
        return reply["choices"][0]["message"]["content"] if status == 200 else f"HTTP {status}: {reply}"


@pytest.fixture(scope="module")
def cluster(control_plane, tmp_path_factory, checkpoint, hf_home):
    control_plane.install(DEPLOY)
    shim_config = control_plane.kubeconfig(control_plane.token_for("greenthread-system", "gthreadd"),
                                           tmp_path_factory.mktemp("shim") / "kubeconfig")
    nodes = []
    try:
        for name in ("n1", "n2"):
            node_object = {"apiVersion": "v1", "kind": "Node",
                           "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}
            created = control_plane.kubectl("apply", "-f", "-", input=json.dumps(node_object))
            assert created.returncode == 0, created.stderr
            node = Node(name, tmp_path_factory.mktemp(name), checkpoint,
                        {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}, shim_config)
            nodes.append(node)
            node.start()
        yield control_plane, nodes
    finally:
        for node in nodes:
            node.kill()


def kubectl(plane, *args: str, input: str | None = None) -> str:
    result = plane.kubectl(*args, input=input)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def get(plane, *args: str) -> dict:
    """`kubectl get ... -o json`; {} when it is not there (or the API server is not)."""
    result = plane.kubectl("get", *args, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else {}


def wait(check, timeout: float, what: str, nodes=(), plane=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    logs = "\n".join(f"--- {n.name} gthread-kube\n{n.shim.log_tail()}\n--- {n.name} gthreadd\n{n.daemon.log_tail(15)}"
                     for n in nodes)
    server = f"\n--- kube-apiserver\n{plane.log_tail('kube-apiserver')}" if plane is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}{server}")


def lease(plane) -> dict:
    return get(plane, "lease", LEASE, "-n", "greenthread-system").get("spec", {})


def model(plane) -> dict:
    return get(plane, "model", NAME, "-n", "default")


@pytest.fixture(scope="module")
def served(cluster):
    """Seed 002's Model applied with kubectl; the node that took its Lease, once it answers."""
    plane, nodes = cluster
    if not model(plane):
        kubectl(plane, "apply", "-f", "-", input=json.dumps(SEED_002_MODEL))
    name = wait(lambda: lease(plane).get("holderIdentity"), 60, "a node to take the Lease", nodes, plane)
    node = next(n for n in nodes if n.name == name)
    wait(lambda: "Paris" in node.answer(), 600, "the holder to answer", nodes, plane)
    return node


def test_one_node_takes_the_lease_serves_and_reports(cluster, served):
    """Status on the status subresource, and the tables the real server prints from the CRDs'
    printer columns: every column filled (a status field the schema lacks would be pruned and
    printed as <none>)."""
    plane, nodes = cluster
    other = next(n for n in nodes if n is not served)
    assert other.daemon.get(f"/{NAME}/status")[0] == 404, "exactly one node serves a one-replica Model"

    def ready():
        obj = model(plane)
        status = obj.get("status") or {}
        return obj if status.get("phase") == "Ready" and status.get("servingReplicas") == 1 else None
    obj = wait(ready, 60, "status Ready with one serving replica", nodes, plane)
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]

    header, row = kubectl(plane, "get", "models", "-A").splitlines()
    assert header.split() == SEED_000_HEADER.split()
    assert row.split()[:7] == ["default", NAME, "Ready", "1", "1", "0", served.name], row
    assert row.split()[-1] == f"http://{NAME}.default.svc/{NAME}/v1"
    assert "<none>" not in row, row

    def two_gpus():
        lines = kubectl(plane, "get", "gpus").splitlines()
        return lines if len(lines) == 3 and "<none>" not in "".join(lines) else None
    header, *rows = wait(two_gpus, 30, "a device object per node, every column filled", nodes, plane)
    assert header.split() == SEED_002_GPU_HEADER.split()
    assert sorted(r.split()[:4] for r in rows) == [["cpu-n1-0", "n1", "0", "cpu"], ["cpu-n2-0", "n2", "0", "cpu"]]
    modes = {r.split()[1]: r.split()[4] for r in rows}
    assert modes[served.name] == "inference" and all(r.split()[5] == "Healthy" for r in rows), rows

    described = kubectl(plane, "describe", "model", NAME, "-n", "default")
    events = [e for e in get(plane, "events", "-n", "default").get("items", []) if e["involvedObject"]["name"] == NAME]
    assert events and events[0]["reason"] in described, "the daemon's events are on the Model, in kubectl describe"


def test_endpoint_slices_need_1_21_so_this_server_gets_the_service_without_them(cluster, served):
    """1.20 serves discovery.k8s.io/v1beta1 EndpointSlices only: the shim says so once and does the
    rest. Their contents are checked against the emulator (tests/gthreadd/kube/test_agent.py)."""
    plane, nodes = cluster
    service = wait(lambda: get(plane, "service", NAME, "-n", "default"), 30, "the Model's Service", nodes, plane)
    assert service["spec"]["ports"][0]["port"] == 80
    assert [o["kind"] for o in service["metadata"]["ownerReferences"]] == ["Model"]
    assert served.shim.log().count("does not serve discovery.k8s.io/v1 EndpointSlices") == 1


def test_an_api_server_restart_longer_than_a_lease_moves_nothing(cluster, served):
    """The API server goes away for longer than a Lease duration, etcd is compacted meanwhile: the
    engine keeps answering, the holder keeps its Lease, each shim's watch resumes (410 Gone from a
    compacted resourceVersion, then a list), and an edit made after the restart reaches the holder."""
    plane, nodes = cluster
    transitions = lease(plane).get("leaseTransitions", 0)
    plane.stop_apiserver()
    try:
        assert "Paris" in served.answer(), "serving never waits on the API server"
        plane.compact_etcd()
        time.sleep(LEASE_S + 2)  # an outage longer than a Lease
    finally:
        plane.start_apiserver()
    edited = json.loads(kubectl(plane, "patch", "model", NAME, "-n", "default", "--type=merge", "-o", "json",
                                "-p", json.dumps({"spec": {"sleep": {"idleTimeout": "9m"}}})))
    generation = edited["metadata"]["generation"]
    wait(lambda: (model(plane).get("status") or {}).get("observedGeneration") == generation, 120,
         "the edit to reach the holder (its status observes the new generation)", nodes, plane)
    assert "9m" in (served.daemon.models_dir / f"kube.default.{NAME}.yaml").read_text()
    for node in nodes:
        wait(lambda: "expired (410 Gone): listing again" in node.shim.log(), 60, f"{node.name}'s watch to resume",
             nodes, plane)
    spec = lease(plane)
    assert (spec["holderIdentity"], spec.get("leaseTransitions", 0)) == (served.name, transitions)
    assert "Paris" in served.answer()


def test_node_loss_moves_the_replica(cluster, served):
    plane, nodes = cluster
    survivor = next(n for n in nodes if n is not served)
    lost = time.monotonic()
    served.kill()
    wait(lambda: lease(plane).get("holderIdentity") == survivor.name, 3 * LEASE_S + 30,
         "the survivor to take the Lease", nodes, plane)
    taken = time.monotonic()
    wait(lambda: "Paris" in survivor.answer(), 600, "the survivor to answer", nodes, plane)
    answered = time.monotonic()
    print(f"failover: Lease taken {taken - lost:.1f}s after the node died (lease {LEASE_S:.0f}s, "
          f"renew {RENEW_S:.0f}s); first answer {answered - lost:.1f}s after")
    wait(lambda: (model(plane).get("status") or {}).get("node") == survivor.name, 30, "status to name the survivor",
         nodes, plane)


def test_deleting_the_model_frees_lease_file_and_engine_and_its_service_is_collected(cluster, served):
    """The shim deletes the Lease and the daemon's file; the Service is the garbage collector's
    (kube-controller-manager), by its ownerReference to the Model."""
    plane, nodes = cluster
    alive = [n for n in nodes if n.daemon.proc.poll() is None]
    wait(lambda: get(plane, "service", NAME, "-n", "default"), 30, "the Model's Service", nodes, plane)
    kubectl(plane, "delete", "model", NAME, "-n", "default")
    wait(lambda: not lease(plane), 30, "the Lease to go", nodes, plane)
    for node in alive:
        wait(lambda: node.daemon.get(f"/{NAME}/status")[0] == 404, 120, "the daemon to drop the Model", nodes, plane)
        assert not (node.daemon.models_dir / f"kube.default.{NAME}.yaml").exists()
        assert NAME not in {m["id"] for m in node.daemon.get("/v1/models")[1]["data"]}
    wait(lambda: not get(plane, "service", NAME, "-n", "default"), 60, "the garbage collector to delete the Service",
         nodes, plane)
