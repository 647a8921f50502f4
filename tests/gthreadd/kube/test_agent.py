"""The shim's agents against the API server emulator (tests/kube_apiserver.py), each beside an
in-process daemon with FakeEngine (the test double for vLLM engines): Leases, models.d files,
status, GPUs, Services, Events and failures in seconds. tests/e2e/test_kubernetes.py runs the same
with real engines and real processes."""

import asyncio
import logging
from dataclasses import dataclass

import pytest
import yaml
from lightkube import AsyncClient

from gthreadd.daemon import Daemon
from gthreadd.kube.agent import AgentConfig, NodeAgent
from gthreadd.kube.daemon_client import DaemonClient
from gthreadd.kube.leases import LeaseTiming
from gthreadd.kube.main import kube_config
from tests.gthreadd.kube.crd_schema import validator
from tests.inprocess_daemon import manifest, serving, start_daemon
from tests.kube_apiserver import ApiServerEmulator

TIMING = LeaseTiming(duration_s=1.0, renew_s=0.1)
GROUP = "greenthread.ai/v1alpha1"


@dataclass
class KubeNode:
    name: str
    daemon: Daemon
    agent: NodeAgent
    client: DaemonClient
    kube: AsyncClient

    async def stop(self) -> None:
        await self.agent.stop()
        await self.client.close()
        await self.kube.close()
        await self.daemon.shutdown()


async def start_node(api: ApiServerEmulator, tmp_path, name: str, labels: dict | None = None,
                     timing: LeaseTiming = TIMING) -> KubeNode:
    api.put("v1", "nodes", {"apiVersion": "v1", "kind": "Node",
                            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}}})
    (tmp_path / name).mkdir()
    daemon = await start_daemon(tmp_path / name)
    client = DaemonClient(str(daemon.settings.socket_path))
    kube = AsyncClient(config=kube_config(api.url))
    agent = NodeAgent(AgentConfig(name, "greenthread-system", "10.0.0." + name[-1], daemon.settings.port, timing,
                                  ingress_class="nginx"), kube, client)
    await client.start()
    await agent.start()
    return KubeNode(name, daemon, agent, client, kube)


@pytest.fixture
async def api():
    server = ApiServerEmulator()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def nodes(api, tmp_path):
    started = [await start_node(api, tmp_path, "n1", {"pool": "a"}), await start_node(api, tmp_path, "n2")]
    yield started
    for node in started:
        await node.stop()


def model_cr(nodes, name: str = "chat", namespace: str = "default", **spec) -> dict:
    ckpt = nodes[0].daemon.settings.state_dir.parent / "ckpt"
    return {"apiVersion": GROUP, "kind": "Model", "metadata": {"name": name, "namespace": namespace},
            "spec": {"modelName": str(ckpt), "gpuMemoryUtilization": "0.3", **spec}}


async def eventually(check, what: str, timeout: float = 10.0):
    """Poll `check` until it returns something truthy."""
    for _ in range(int(timeout / 0.05)):
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def holders(api, name: str = "chat", namespace: str = "default") -> dict[str, str]:
    return {lease["metadata"]["name"]: lease["spec"]["holderIdentity"]
            for lease in api.list("leases", "greenthread-system")
            if lease["metadata"]["labels"]["greenthread.ai/model"] == name
            and lease["metadata"]["labels"]["greenthread.ai/model-namespace"] == namespace}


def serving_nodes(nodes, name: str = "chat") -> list[str]:
    return [n.name for n in nodes if name in n.daemon.fleet.models and n.daemon.fleet.models[name].engines]


async def test_one_node_takes_the_lease_serves_and_reports(api, nodes):
    api.put(GROUP, "models", model_cr(nodes))
    lease = await eventually(lambda: holders(api), "a node to take the Lease")
    assert list(lease) == ["model-default-chat-0"]
    node = next(n for n in nodes if n.name == lease["model-default-chat-0"])
    await eventually(lambda: serving_nodes(nodes) == [node.name], "the holder alone to serve")
    file = node.daemon.settings.models_dir / "kube.default.chat.yaml"
    written = yaml.safe_load(file.read_text())
    assert written["spec"]["replicas"] == 1 and written["metadata"]["namespace"] == "default"

    def ready_status():
        status = api.get("models", "chat", "default").get("status") or {}
        return status if status.get("phase") == "Ready" and status.get("servingReplicas") == 1 else None
    status = await eventually(ready_status, "status Ready with one serving replica")
    assert status["node"] == node.name and status["url"] == "http://chat.default.svc/chat/v1"
    assert status["observedGeneration"] == 1
    assert {"type": "ConfigValid", "status": "True"}.items() <= status["conditions"][0].items()
    assert status["memory"]["servingHuman"]

    ingress = api.get("ingresses", "chat", "default")
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert ingress["spec"]["ingressClassName"] == "nginx" and path["path"] == "/chat/v1"
    assert path["backend"]["service"] == {"name": "chat", "port": {"number": 80}}
    service = api.get("services", "chat", "default")
    assert "selector" not in service["spec"] and service["spec"]["ports"][0]["port"] == 80
    slices = api.list("endpointslices", "default")
    assert [s["metadata"]["name"] for s in slices] == [f"chat-{node.name}"]
    assert slices[0]["endpoints"][0]["addresses"] == ["10.0.0." + node.name[-1]]
    assert slices[0]["ports"][0]["port"] == node.daemon.settings.port
    await eventually(lambda: any(e["involvedObject"]["name"] == "chat" for e in api.list("events", "default")),
                     "the daemon's events on the Model")
    import kubernetes_validate  # the API server's own schemas: what the emulator does not check

    for plural in ("services", "endpointslices", "ingresses", "leases", "events"):
        for obj in api.list(plural):
            kubernetes_validate.validate(obj, "1.33", strict=True)
    assert not [e.message for e in validator("models.yaml").iter_errors(api.get("models", "chat", "default"))]
    gpus = await eventually(lambda: len(api.list("gpus")) == 2 and api.list("gpus"), "a GPU object per node")
    assert sorted(g["metadata"]["name"] for g in gpus) == ["gpu-n1-0", "gpu-n2-0"]
    held = next(g for g in gpus if g["spec"]["node"] == node.name)
    await eventually(lambda: (api.get("gpus", held["metadata"]["name"]).get("status") or {}).get("mode") == "inference",
                     "MODE inference on the holder's GPU")
    for gpu in api.list("gpus"):
        assert not [e.message for e in validator("gpus.yaml").iter_errors(gpu)]


async def test_a_dead_nodes_lease_expires_and_another_node_takes_over(api, nodes):
    api.put(GROUP, "models", model_cr(nodes))
    first = (await eventually(lambda: holders(api), "a holder"))["model-default-chat-0"]
    dead = next(n for n in nodes if n.name == first)
    await eventually(lambda: serving_nodes(nodes) == [first], "the first holder to serve")
    await dead.agent.stop()
    survivor = next(n for n in nodes if n is not dead)
    await eventually(lambda: holders(api).get("model-default-chat-0") == survivor.name, "the takeover", timeout=15)
    await eventually(lambda: survivor.name in serving_nodes(nodes), "the survivor to serve")
    lease = api.get("leases", "model-default-chat-0", "greenthread-system")
    assert lease["spec"]["leaseTransitions"] == 1
    await eventually(lambda: [s["metadata"]["name"] for s in api.list("endpointslices", "default")]
                     == [f"chat-{survivor.name}"], "the dead node's EndpointSlice to go")
    await eventually(lambda: (api.get("models", "chat", "default").get("status") or {}).get("node") == survivor.name,
                     "status to name the survivor")


async def test_deleting_the_model_frees_lease_file_and_endpoints(api, nodes):
    api.put(GROUP, "models", model_cr(nodes))
    await eventually(lambda: serving_nodes(nodes), "a node to serve")
    await eventually(lambda: api.list("endpointslices", "default"), "the EndpointSlice")
    api.remove("models", "chat", "default")
    await eventually(lambda: not holders(api), "the Lease to go")
    await eventually(lambda: not any("chat" in n.daemon.fleet.models for n in nodes), "the daemon to drop it")
    assert not any((n.daemon.settings.models_dir / "kube.default.chat.yaml").exists() for n in nodes)
    assert api.list("endpointslices", "default") == []


async def test_an_invalid_model_gets_config_valid_false_naming_the_field(api, nodes):
    api.put(GROUP, "models", model_cr(nodes, name="bad", fairness={"minRuntime": "soon"}))
    api.put(GROUP, "models", model_cr(nodes, name="good"))

    def invalid():
        conditions = (api.get("models", "bad", "default").get("status") or {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "ConfigValid" and c["status"] == "False"), None)
    condition = await eventually(invalid, "ConfigValid=False on the bad Model")
    assert "spec.fairness.minRuntime" in condition["message"] and condition["reason"] == "InvalidSpec"
    assert api.get("models", "bad", "default")["status"]["phase"] == "Failed"
    await eventually(lambda: serving_nodes(nodes, "good"), "the good Model to serve all the same")
    assert not holders(api, "bad")


async def test_node_selector_picks_the_node(api, nodes):
    api.put(GROUP, "models", model_cr(nodes, nodeSelector={"pool": "a"}))
    assert (await eventually(lambda: holders(api), "a holder")) == {"model-default-chat-0": "n1"}
    await eventually(lambda: serving_nodes(nodes) == ["n1"], "n1 to serve")
    written = yaml.safe_load((nodes[0].daemon.settings.models_dir / "kube.default.chat.yaml").read_text())
    assert "nodeSelector" not in written["spec"], "the cluster judged it; the daemon must not judge it again"


async def test_replicas_spread_over_nodes(api, nodes):
    api.put(GROUP, "models", model_cr(nodes, replicas=2))
    await eventually(lambda: sorted(holders(api).values()) == ["n1", "n2"], "one replica per node", timeout=15)
    await eventually(lambda: sorted(serving_nodes(nodes)) == ["n1", "n2"], "both nodes to serve")

    def counted():
        status = api.get("models", "chat", "default").get("status") or {}
        return status if status.get("servingReplicas") == 2 else None
    status = await eventually(counted, "two serving replicas in status")
    assert status["node"] == "n1,n2" and status["replicas"] == 2


async def test_api_server_outage_keeps_serving_and_resyncs(api, nodes, caplog):
    """The watches resume from a compacted resourceVersion: 410 Gone, then a relist finds a Model
    created during the outage."""
    caplog.set_level(logging.INFO, "gthreadd.kube")
    api.put(GROUP, "models", model_cr(nodes))
    await eventually(lambda: serving_nodes(nodes), "a node to serve")
    await api.stop()
    api.compact()
    api.put(GROUP, "models", model_cr(nodes, name="later"))
    await asyncio.sleep(3 * TIMING.renew_s)
    assert serving_nodes(nodes), "the daemon keeps serving while the API server is away"
    await api.start()
    await eventually(lambda: serving_nodes(nodes, "later"), "a Model created during the outage, after a relist",
                     timeout=40)
    await eventually(lambda: "expired (410 Gone): listing again" in caplog.text, "a watch resumed with 410")


async def test_after_an_outage_longer_than_a_lease_the_holder_keeps_its_lease(api, nodes):
    """The holder could not renew, and the other node could not see it try: coming back first, the
    other node gives the Lease one more duration, and the holder renews within it."""
    api.put(GROUP, "models", model_cr(nodes))
    holder = (await eventually(lambda: holders(api), "a holder"))["model-default-chat-0"]
    await eventually(lambda: serving_nodes(nodes) == [holder], "the holder to serve")
    late = next(n for n in nodes if n.name == holder)
    await late.agent.stop()  # the holder will be the last to see the server again
    await asyncio.sleep(3 * TIMING.renew_s)  # the other node sees its last renewal
    await api.stop()
    await asyncio.sleep(3 * TIMING.duration_s)
    await api.start()
    await asyncio.sleep(TIMING.duration_s / 2)
    await late.agent.start()
    await asyncio.sleep(3 * TIMING.duration_s)  # what a takeover would need
    assert holders(api)["model-default-chat-0"] == holder
    assert api.get("leases", "model-default-chat-0", "greenthread-system")["spec"]["leaseTransitions"] == 0
    assert serving_nodes(nodes) == [holder]


async def test_a_model_the_daemon_refuses_is_reported_and_its_lease_freed(api, nodes):
    for node in nodes:  # a Model of that name already defined by hand in each daemon's models.d
        (node.daemon.settings.models_dir / "local.yaml").write_text(manifest(node.daemon, "chat"))
        await serving(node.daemon, "chat")
    api.put(GROUP, "models", model_cr(nodes))

    def refused():
        conditions = (api.get("models", "chat", "default").get("status") or {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "ConfigValid" and c["status"] == "False"), None)
    condition = await eventually(refused, "ConfigValid=False")
    assert "local.yaml" in condition["message"]
    await eventually(lambda: not holders(api), "the Lease to be given up")
    assert all(n.daemon.fleet.models["chat"].source.endswith("local.yaml") for n in nodes)


def test_a_replica_waiting_out_a_restart_is_leased_as_restarting_not_failed():
    from gthreadd.kube.agent import _replica_states

    status = {"phase": "Ready", "servingReplicas": 1, "replicaStatus": [{"replica": 0, "state": "awake"},
                                                                       {"replica": 1, "state": "restarting"}]}
    assert _replica_states({"status": status}, 2) == ["serving", "restarting"]
    assert _replica_states({"status": {**status, "phase": "Failed", "servingReplicas": 0,
                                       "replicaStatus": [{"state": "failed"}]}}, 1) == ["failed"]


async def test_an_agent_stopped_as_a_watch_event_wakes_it_stops(api, tmp_path):
    """The sync loop waits for a wake or its renew interval. A stop in the same turn of the event
    loop as a wake was lost under Python 3.11's asyncio.wait_for, and the loop went on renewing the
    node's Leases, so no other node took them over (a CI failure of the test above). The renew
    interval is long here, so that the loop is in that wait when the stop comes."""
    node = await start_node(api, tmp_path, "n1", timing=LeaseTiming(duration_s=120.0, renew_s=60.0))
    try:
        passes = 0
        sync = node.agent.sync

        async def counted() -> None:
            nonlocal passes
            await sync()
            passes += 1

        node.agent.sync = counted  # before the first pass: start() only created the tasks
        await eventually(lambda: passes and not node.agent._wake.is_set(), "a pass of the sync loop, then its wait")
        loop = next(t for t in node.agent._tasks if t.get_name() == "kube-sync")
        node.agent._wake.set()
        await node.agent.stop(timeout_s=2)
        assert loop.done(), "the sync loop is still running"
    finally:
        await node.stop()
