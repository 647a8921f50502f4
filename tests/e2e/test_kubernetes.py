"""Two Kubernetes "nodes" (a real gthreadd with real vLLM CPU engines and a real gthread-kube
process each, n1 and n2) against one emulated API server (tests/kube_apiserver.py).

Seed 002's first Model is applied as written there, but for what a CPU host without the hub can
run: its checkpoint is the demo's (offline, by repo id), and it names no product or dtype.
"""

import json
import time

import pytest

from gthreadd.kube.crds import GPU_COLUMNS, MODEL_COLUMNS
from tests.e2e.daemon_process import HUB_ID, DaemonProcess
from tests.e2e.shim_process import ShimProcess
from tests.kube_apiserver import ApiServerThread

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

LEASE_S, RENEW_S = 6.0, 1.0
GROUP = "greenthread.ai/v1alpha1"
NAME = "llama-3-8b"
SEED_002_MODEL = {
    "apiVersion": GROUP, "kind": "Model", "metadata": {"name": NAME, "namespace": "default"},
    "spec": {"modelName": HUB_ID, "modelType": "chat", "loadFormat": "auto",
             "endpoints": ["chat_completions", "completions"], "parallelism": {"tensor": 1, "pipeline": 1},
             "replicas": 1, "fairness": {"popular": False}, "sleep": {}, "gpuMemoryUtilization": "0.20"},
}
SEED_000_HEADER = "NAMESPACE NAME PHASE REPLICAS SERVING SLEEPING NODE GPUS VRAM/GPU URL"
SEED_002_GPU_HEADER = "NAME NODE INDEX PRODUCT MODE HEALTH AVAILABLE"


class Node:
    def __init__(self, name: str, root, checkpoint, env: dict, server: str):
        self.name = name
        self.daemon = DaemonProcess(root, checkpoint, env)
        self.shim = ShimProcess(name, self.daemon, server, LEASE_S, RENEW_S)

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
def cluster(tmp_path_factory, checkpoint, hf_home):
    api = ApiServerThread()
    api.start()
    nodes = []
    try:
        for name in ("n1", "n2"):
            api.call(api.api.put, "v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": name, "labels": {"kubernetes.io/hostname": name}}})
            node = Node(name, tmp_path_factory.mktemp(name), checkpoint,
                        {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}, api.url)
            nodes.append(node)
            node.start()
        yield api, nodes
    finally:
        for node in nodes:
            node.kill()
        api.stop()


def wait(check, timeout: float, what: str, nodes=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    logs = "\n".join(f"--- {n.name} gthread-kube\n{n.shim.log_tail()}\n--- {n.name} gthreadd\n{n.daemon.log_tail(15)}"
                     for n in nodes)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


def holder(api) -> str:
    lease = api.call(api.api.get, "leases", f"model-default-{NAME}-0", "greenthread-system")
    return (lease or {}).get("spec", {}).get("holderIdentity", "")


def column(obj: dict, path: str) -> str:
    """A printer column's simple JSONPath (.a.b.c) as kubectl prints it."""
    value = obj
    for key in path.strip(".").split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def table(objects: list[dict], columns, namespaced: bool) -> list[str]:
    header = (["NAMESPACE"] if namespaced else []) + ["NAME"] + [c[0].upper() for c in columns]
    rows = [" ".join(header)]
    for obj in objects:
        meta = obj["metadata"]
        rows.append(" ".join(([meta["namespace"]] if namespaced else []) + [meta["name"]]
                             + [column(obj, c[2]) for c in columns]))
    return rows


@pytest.fixture(scope="module")
def served(cluster):
    """Seed 002's Model applied; the node that took its Lease, once it answers."""
    api, nodes = cluster
    if api.call(api.api.get, "models", NAME, "default") is None:
        api.call(api.api.put, GROUP, "models", json.loads(json.dumps(SEED_002_MODEL)))
    name = wait(lambda: holder(api), 60, "a node to take the Lease", nodes)
    node = next(n for n in nodes if n.name == name)
    wait(lambda: "Paris" in node.answer(), 600, "the holder to answer", nodes)
    return node


def test_one_node_takes_the_lease_serves_and_reports(cluster, served):
    api, nodes = cluster
    other = next(n for n in nodes if n is not served)
    assert other.daemon.get(f"/{NAME}/status")[0] == 404, "exactly one node serves a one-replica Model"

    def ready():
        obj = api.call(api.api.get, "models", NAME, "default")
        status = obj.get("status") or {}
        return obj if status.get("phase") == "Ready" and status.get("servingReplicas") == 1 else None
    obj = wait(ready, 60, "status Ready with one serving replica", nodes)
    rows = table([obj], MODEL_COLUMNS, namespaced=True)
    assert rows[0] == SEED_000_HEADER
    assert rows[1].split()[:7] == ["default", NAME, "Ready", "1", "1", "0", served.name]
    assert rows[1].endswith(f"http://{NAME}.default.svc/{NAME}/v1")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]

    gpus = wait(lambda: len(api.call(api.api.list, "gpus")) == 2 and api.call(api.api.list, "gpus"), 30,
                "a device object per node", nodes)
    rows = table(gpus, GPU_COLUMNS, namespaced=False)
    assert rows[0] == SEED_002_GPU_HEADER
    assert sorted(r.split()[:3] for r in rows[1:]) == [["cpu-n1-0", "n1", "0"], ["cpu-n2-0", "n2", "0"]]
    slices = api.call(api.api.list, "endpointslices", "default")
    assert [(s["metadata"]["name"], s["ports"][0]["port"]) for s in slices] == \
        [(f"{NAME}-{served.name}", served.daemon.port)]
    reasons = {e["reason"] for e in api.call(api.api.list, "events", "default")}
    assert reasons, "the daemon's events are on the Model"


def test_node_loss_moves_the_replica(cluster, served):
    api, nodes = cluster
    survivor = next(n for n in nodes if n is not served)
    lost = time.monotonic()
    served.kill()
    wait(lambda: holder(api) == survivor.name, 3 * LEASE_S + 30, "the survivor to take the Lease", nodes)
    taken = time.monotonic()
    wait(lambda: "Paris" in survivor.answer(), 600, "the survivor to answer", nodes)
    answered = time.monotonic()
    print(f"failover: Lease taken {taken - lost:.1f}s after the node died (lease {LEASE_S:.0f}s, "
          f"renew {RENEW_S:.0f}s); first answer {answered - lost:.1f}s after")
    wait(lambda: (api.call(api.api.get, "models", NAME, "default").get("status") or {}).get("node") == survivor.name,
         30, "status to name the survivor", nodes)


def test_deleting_the_model_frees_lease_file_and_engine(cluster, served):
    api, nodes = cluster
    alive = [n for n in nodes if n.daemon.proc.poll() is None]
    api.call(api.api.remove, "models", NAME, "default")
    wait(lambda: not holder(api), 30, "the Lease to go", nodes)
    for node in alive:
        wait(lambda: node.daemon.get(f"/{NAME}/status")[0] == 404, 120, "the daemon to drop the Model", nodes)
        assert not (node.daemon.models_dir / f"kube.default.{NAME}.yaml").exists()
        assert NAME not in {m["id"] for m in node.daemon.get("/v1/models")[1]["data"]}
    assert api.call(api.api.list, "endpointslices", "default") == []
