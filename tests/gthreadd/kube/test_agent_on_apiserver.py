"""The shim's agents against a real kube-apiserver (tests/kube_env.py) with exactly the permissions
of deploy/rbac.yaml: each agent acts with a token the API server issued to the gthreadd
ServiceAccount, so a verb missing from the ClusterRole fails here as it would on a cluster.
Beside each agent an in-process daemon with FakeEngine (the test double for vLLM engines);
tests/e2e/test_kubernetes.py runs real engines."""

import asyncio
import json
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig

from gthreadd.kube.agent import AgentConfig, NodeAgent
from gthreadd.kube.daemon_client import DaemonClient
from gthreadd.kube.leases import LeaseTiming
from tests.gthreadd.kube.test_agent import KubeNode, eventually
from tests.inprocess_daemon import start_daemon

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
TIMING = LeaseTiming(duration_s=2.0, renew_s=0.2)


@pytest.fixture(scope="module")
def cluster(control_plane):
    control_plane.install(DEPLOY)
    return control_plane


def get(cluster, *args: str) -> dict:
    result = cluster.kubectl("get", *args, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else {}


@pytest.fixture
async def node(cluster, tmp_path):
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}}))
    token = cluster.token_for("greenthread-system", "gthreadd")
    kube = AsyncClient(config=KubeConfig.from_file(cluster.kubeconfig(token, tmp_path / "shim.kubeconfig")))
    (tmp_path / "n1").mkdir()
    daemon = await start_daemon(tmp_path / "n1")
    client = DaemonClient(str(daemon.settings.socket_path))
    agent = NodeAgent(AgentConfig("n1", "greenthread-system", "10.0.0.1", daemon.settings.port, TIMING), kube, client)
    await client.start()
    await agent.start()
    started = KubeNode("n1", daemon, agent, client, kube)
    yield started
    await started.stop()


async def test_with_deploys_rbac_the_shim_takes_the_lease_serves_and_reports(cluster, node):
    ckpt = node.daemon.settings.state_dir.parent / "ckpt"
    model = {"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "metadata": {"name": "chat", "namespace": "default"},
             "spec": {"modelName": str(ckpt), "gpuMemoryUtilization": "0.3"}}
    created = cluster.kubectl("apply", "-f", "-", input=json.dumps(model))
    assert created.returncode == 0, created.stderr

    def ready():
        status = get(cluster, "model", "chat", "-n", "default").get("status") or {}
        return status if status.get("phase") == "Ready" and status.get("servingReplicas") == 1 else None
    status = await eventually(ready, "status Ready, written by the shim on the status subresource", timeout=30)
    assert status["node"] == "n1" and status["observedGeneration"] == 1
    lease = get(cluster, "lease", "model-default-chat-0", "-n", "greenthread-system")
    assert lease["spec"]["holderIdentity"] == "n1"
    assert get(cluster, "service", "chat", "-n", "default")["spec"]["ports"][0]["port"] == 80
    await eventually(lambda: get(cluster, "gpu", "gpu-n1-0").get("status", {}).get("mode") == "inference",
                     "the node's GPU object, MODE inference", timeout=30)
    events = await eventually(lambda: [e for e in get(cluster, "events", "-n", "default").get("items", [])
                                       if e["involvedObject"]["name"] == "chat"], "the daemon's events on the Model")
    assert events
