"""One node's agent: Model CRs in, models.d files (through the daemon's control socket) and
cluster status out.

Every renew interval (and at once when a Model changes) `sync()` walks the Models the informer
holds. A Model is this node's while its nodeSelector matches the Node's labels and this node holds
one of its replicas' Leases; a free or expired Lease is taken only when the daemon's dry run says
the Model can be placed here, at most one replica per Model per pass (a node that already serves
one waits a Lease duration before taking another, so replicas spread over nodes). The daemon gets
a file with `replicas` set to the Leases held; the Lease of the lowest replica decides which node
writes the Model's status. The API server going away stops none of this node's serving: passes
fail and are retried, and the informer resumes its watch when it comes back.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import yaml
from lightkube import ALL_NS, ApiError, AsyncClient
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Node, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import Ingress
from lightkube.types import PatchType

from gthreadd.kube import model_status
from gthreadd.kube.daemon_client import DaemonClient, DaemonError
from gthreadd.kube.leases import LeaseObserver, LeaseTiming, lease_spec
from gthreadd.kube.resources import (FIELD_MANAGER, FILE_PREFIX, MANAGED_BY, MODEL_NAME_LABEL,
                                     MODEL_NAMESPACE_LABEL, REPLICA_LABEL, STATE_ANNOTATION, Gpu, Model,
                                     event_name, lease_name, model_file, model_labels, slice_name)
from gthreadd.spec.manifests import parse_text
from scheduler.inventory import device_object_name
from scheduler.units import UnitState
from gthreadd.spec.resource import API_VERSION, ModelState

log = logging.getLogger("gthreadd.kube")

FAILURES = (ApiError, httpx.HTTPError, DaemonError, OSError)
MAX_BACKOFF_S = 30.0
STATUS_MIN_INTERVAL_S = 1.0
NODE_LABELS_TTL_S = 60.0


@dataclass(frozen=True)
class AgentConfig:
    node: str
    """This node's name (the downward API's spec.nodeName); also the Lease holder identity."""
    lease_namespace: str
    node_address: str
    """The address Services reach this node's daemon at (the pod's IP)."""
    port: int
    """The daemon's TCP port."""
    timing: LeaseTiming = LeaseTiming()
    ingress_class: str = ""
    """When set, an Ingress of this class per Model routes /<name>/v1 to its Service (seed 002)."""


def manifest(cr: dict, replicas: int | None = None) -> str:
    """The daemon's Model file for a CR. With `replicas`, as this node serves it: that many
    replicas, and no nodeSelector or tolerations (the cluster's to judge, and already judged)."""
    meta, spec = cr["metadata"], dict(cr.get("spec") or {})
    if replicas is not None:
        spec = {k: v for k, v in spec.items() if k not in ("nodeSelector", "tolerations")}
        spec["replicas"] = replicas
    doc = {"apiVersion": API_VERSION, "kind": "Model",
           "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default")}, "spec": spec}
    return yaml.safe_dump(doc, sort_keys=False)


def _owner(cr: dict) -> dict:
    meta = cr["metadata"]
    return {"apiVersion": API_VERSION, "kind": "Model", "name": meta["name"], "uid": meta.get("uid", ""),
            "controller": False, "blockOwnerDeletion": False}


def _ingress(cr: dict, ingress_class: str) -> dict:
    namespace, name = cr["metadata"]["namespace"], cr["metadata"]["name"]
    backend = {"service": {"name": name, "port": {"number": model_status.SERVICE_PORT}}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": namespace, "labels": model_labels(namespace, name),
                         "ownerReferences": [_owner(cr)]},
            "spec": {"ingressClassName": ingress_class, "rules": [{"http": {"paths": [
                {"path": f"/{name}/v1", "pathType": "Prefix", "backend": backend}]}}]}}


def _replica_states(local: dict, count: int) -> list[str]:
    """One state per replica this node holds, from the daemon's counts: a replica waiting out a
    restart's backoff is restarting, not failed (what alerts fire on)."""
    status = local.get("status") or {}
    serving, sleeping = status.get("servingReplicas", 0), status.get("sleepingReplicas", 0)
    restarting = sum(r.get("state") == UnitState.restarting for r in status.get("replicaStatus", []))
    rest = ModelState.failed if status.get("phase") == "Failed" else ModelState.starting if status else ModelState.pending
    return ([ModelState.serving] * serving + [ModelState.sleeping] * sleeping + [ModelState.restarting] * restarting
            + [rest] * count)[:count]


class NodeAgent:
    def __init__(self, config: AgentConfig, kube: AsyncClient, daemon: DaemonClient, clock=time.monotonic):
        self.config = config
        self._kube = kube
        self._daemon = daemon
        self._clock = clock
        self._observer = LeaseObserver()
        self._models: dict[tuple[str, str], dict] = {}
        self._synced = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._applied: dict[str, str] = {}
        self._slices: dict[tuple[str, str], dict] = {}
        self._slices_served = True
        """False once the API server has said it serves no v1 EndpointSlices."""
        self._services: set[tuple[str, str]] = set()
        self._gpus: dict[str, dict] = {}
        self._events: dict[tuple[str, str], dict[str, int]] = {}
        self._status_written: dict[tuple[str, str], float] = {}
        self._node_labels: tuple[float, dict[str, str], str] | None = None
        self._failing = ""

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._watch_models(), name="kube-watch-models"),
                       asyncio.create_task(self._run(), name="kube-sync")]

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop watching and renewing. Leases are left to expire rather than released: a shim
        restarting beside a daemon that keeps serving takes its own Leases back at once."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
            if pending:
                log.warning("gthread-kube: %s did not stop within %.0fs", ", ".join(t.get_name() for t in pending),
                            timeout_s)
        self._tasks = []

    # --- the informer ---

    async def _watch_models(self) -> None:
        """List, then watch from the listing's resourceVersion. A broken connection (an API server
        restart) resumes the watch from the last version seen, as client-go's reflector does,
        rather than every node listing every Model again; the server answers 410 Gone when that
        version is gone from its history, and only then is the list read again."""
        backoff = 1.0
        version = None
        while True:
            try:
                if version is None:
                    version = await self._list_models()
                    backoff = 1.0
                async for kind, obj in self._kube.watch(Model, namespace=ALL_NS, resource_version=version):
                    cr = obj.to_dict()
                    version = cr["metadata"]["resourceVersion"]
                    key = (cr["metadata"]["namespace"], cr["metadata"]["name"])
                    if kind == "DELETED":
                        self._models.pop(key, None)
                    else:
                        self._models[key] = cr
                    self._wake.set()
                    backoff = 1.0
            except ApiError as exc:
                if exc.status.code == 410:
                    log.info("the Model watch from resourceVersion %s expired (410 Gone): listing again", version)
                    version = None
                    continue
                log.warning("watching Models failed: %s; retrying in %.0fs", exc, backoff)
            except (httpx.HTTPError, OSError) as exc:
                log.warning("the API server is unreachable (%s); retrying in %.0fs", exc or type(exc).__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _list_models(self) -> str:
        """Every Model, replacing what the informer held; the listing's resourceVersion."""
        listing = self._kube.list(Model, namespace=ALL_NS)
        models = {}
        async for obj in listing:
            cr = obj.to_dict()
            models[(cr["metadata"]["namespace"], cr["metadata"]["name"])] = cr
        self._models = models
        self._synced.set()
        self._wake.set()
        return listing.resourceVersion

    # --- the sync loop ---

    async def _run(self) -> None:
        """A pass every renew interval, failed or not: a pass is how a holder renews its Leases, and
        one back from an API server outage must renew before the other nodes' patience runs out
        (client-go's elector retries at its retry period, without backoff)."""
        await self._synced.wait()
        while True:
            self._wake.clear()
            try:
                await self.sync()
                if self._failing:
                    log.info("synced again after: %s", self._failing)
                self._failing = ""
            except Exception as exc:  # a pass that fails is retried; the shim never dies of one
                if str(exc) != self._failing:
                    log.warning("sync failed (%s); retrying every %gs", exc or type(exc).__name__, self.config.timing.renew_s,
                                exc_info=not isinstance(exc, FAILURES))
                self._failing = str(exc)
            try:
                async with asyncio.timeout(self.config.timing.renew_s):  # not wait_for, which on 3.11 loses a stop
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def sync(self) -> None:
        """One pass over every Model, then the GPUs."""
        now = self._clock()
        labels, node_uid = await self._node()
        leases = {}
        async for lease in self._kube.list(Lease, namespace=self.config.lease_namespace, labels=MANAGED_BY):
            leases[lease.metadata.name] = lease.to_dict()
        self._observer.looked(now, self.config.timing.duration_s)
        local = {m["metadata"]["name"]: m for m in await self._daemon.models()}
        for cr in list(self._models.values()):
            await self._sync_model(cr, leases, local, labels, now)
        wanted = {name for _, name in self._models}
        for name, obj in local.items():
            if name not in wanted and _file(obj).startswith(FILE_PREFIX):
                await self._stop_serving(obj)
        for name, lease in leases.items():
            meta = lease["metadata"]
            key = (meta["labels"].get(MODEL_NAMESPACE_LABEL, ""), meta["labels"].get(MODEL_NAME_LABEL, ""))
            if key not in self._models and lease["spec"].get("holderIdentity") == self.config.node:
                await self._release(name)
        await self._sync_gpus(node_uid)

    async def _node(self) -> tuple[dict[str, str], str]:
        now = self._clock()
        if self._node_labels is None or now - self._node_labels[0] > NODE_LABELS_TTL_S:
            node = await self._kube.get(Node, self.config.node)
            self._node_labels = (now, dict(node.metadata.labels or {}), node.metadata.uid or "")
        return self._node_labels[1], self._node_labels[2]

    async def _sync_model(self, cr: dict, leases: dict, local: dict, labels: dict, now: float) -> bool:
        """Take, renew or release this Model's Leases and serve what is held; True when serving."""
        meta, spec = cr["metadata"], cr.get("spec") or {}
        namespace, name = meta["namespace"], meta["name"]
        mine_names = [n for n, lease in leases.items() if _is_model(lease, namespace, name)
                      and lease["spec"].get("holderIdentity") == self.config.node]
        parsed = parse_text(manifest(cr), f"Model {namespace}/{name}")
        if parsed.errors:
            message = "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in parsed.errors)
            await self._write_status(cr, model_status.invalid_status(cr, message), force=True)
            return await self._give_up(cr, mine_names, local)
        selector = spec.get("nodeSelector") or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            return await self._give_up(cr, mine_names, local)

        replicas = parsed.models[0].spec.replicas
        holders, mine, free = {}, [], []
        for replica in range(replicas):
            lname = lease_name(namespace, name, replica)
            holder = self._observer.holder(lname, leases.get(lname), now)
            if holder:
                holders[lname] = holder
            if holder == self.config.node:
                mine.append(replica)
            elif not holder:
                free.append(replica)
        for lname in mine_names:
            if int(leases[lname]["metadata"]["labels"].get(REPLICA_LABEL, 0)) >= replicas:
                await self._release(lname)

        taken = None
        if free and (not mine or self._observer.free_for(lease_name(namespace, name, free[0]), now)
                     >= self.config.timing.duration_s):
            try:
                dry = await self._daemon.apply(model_file(namespace, name), manifest(cr, len(mine) + 1), dry_run=True)
            except DaemonError as exc:
                return await self._refused(cr, exc, [lease_name(namespace, name, r) for r in mine], local)
            reason = dry["unschedulable"].get(name)
            if reason:
                log.debug("Model %s/%s does not fit on %s: %s", namespace, name, self.config.node, reason)
            elif await self._take(cr, free[0], leases.get(lease_name(namespace, name, free[0]))):
                taken = free[0]
                mine.append(taken)
                holders[lease_name(namespace, name, taken)] = self.config.node
        if not mine:
            return await self._give_up(cr, mine_names, local)

        mine.sort()
        states = dict(zip(mine, _replica_states(local.get(name, {}), len(mine))))
        for replica in mine:
            if replica != taken:
                await self._renew(cr, replica, leases.get(lease_name(namespace, name, replica)), states[replica])
        try:
            await self._apply(cr, len(mine), name in local)
        except DaemonError as exc:
            return await self._refused(cr, exc, [lease_name(namespace, name, r) for r in mine], local)
        obj = local.get(name, {})
        await self._publish_endpoints(cr, ready=(obj.get("status") or {}).get("phase") == "Ready")
        lowest = min(holders, key=lambda n: int(n.rsplit("-", 1)[1]))
        if holders[lowest] == self.config.node:
            await self._prune_endpoints(cr, set(holders.values()))
            lease_states = {n: (leases.get(n) or {}).get("metadata", {}).get("annotations", {}).get(STATE_ANNOTATION, "")
                            for n in holders}
            lease_states.update({lease_name(namespace, name, r): s for r, s in states.items()})
            await self._write_status(cr, model_status.cluster_status(cr, obj, holders, lease_states))
        await self._send_events(cr)
        return True

    async def _refused(self, cr: dict, exc: DaemonError, lease_names: list[str], local: dict) -> bool:
        """This node's daemon refused the Model (422: e.g. a Model of that name in another file
        there). Nodes may disagree, so unlike an invalid spec this status is rate-limited."""
        if exc.status != 422:
            raise exc
        await self._write_status(cr, model_status.invalid_status(cr, f"{self.config.node}: {exc}"))
        return await self._give_up(cr, lease_names, local)

    async def _give_up(self, cr: dict, lease_names: list[str], local: dict) -> bool:
        for lname in lease_names:
            await self._release(lname)
        obj = local.get(cr["metadata"]["name"])
        if obj is not None and _file(obj) == model_file(cr["metadata"]["namespace"], cr["metadata"]["name"]):
            await self._stop_serving(obj)
        return False

    async def _stop_serving(self, obj: dict) -> None:
        meta = obj["metadata"]
        log.info("no longer serving Model %s/%s on %s", meta.get("namespace"), meta["name"], self.config.node)
        await self._daemon.delete(meta["name"])
        self._applied.pop(meta["name"], None)
        key = (meta.get("namespace", "default"), meta["name"])
        if self._slices.pop(key, None) is not None:
            await self._delete(EndpointSlice, slice_name(meta["name"], self.config.node), key[0])

    # --- Leases ---

    async def _take(self, cr: dict, replica: int, lease: dict | None) -> bool:
        """Create the Lease, or take it over at the resourceVersion observed; False when another
        node was faster (409)."""
        namespace, name = cr["metadata"]["namespace"], cr["metadata"]["name"]
        lname = lease_name(namespace, name, replica)
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {**(lease or {}).get("metadata", {}), "name": lname,
                             "namespace": self.config.lease_namespace,
                             "labels": {**model_labels(namespace, name), REPLICA_LABEL: str(replica)},
                             "annotations": {STATE_ANNOTATION: ModelState.pending}},
                "spec": lease_spec(self.config.node, self.config.timing, lease)}
        try:
            if lease is None:
                await self._kube.create(Lease.from_dict(body), field_manager=FIELD_MANAGER)
            else:
                await self._kube.replace(Lease.from_dict(body), field_manager=FIELD_MANAGER)
        except ApiError as exc:
            if exc.status.code in (409, 404):
                return False
            raise
        log.info("%s took Lease %s (Model %s/%s replica %d)", self.config.node, lname, namespace, name, replica)
        return True

    async def _renew(self, cr: dict, replica: int, lease: dict | None, state: str) -> None:
        if lease is None:
            return
        lease = {**lease, "metadata": {**lease["metadata"], "annotations": {
            **(lease["metadata"].get("annotations") or {}), STATE_ANNOTATION: str(state)}},
            "spec": lease_spec(self.config.node, self.config.timing, lease)}
        try:
            await self._kube.replace(Lease.from_dict(lease), field_manager=FIELD_MANAGER)
        except ApiError as exc:
            if exc.status.code not in (409, 404):
                raise
            log.info("renewing Lease %s: %s; reading it again", lease["metadata"]["name"], exc.status.message)

    async def _release(self, lname: str) -> None:
        log.info("%s released Lease %s", self.config.node, lname)
        self._observer.forget(lname)
        await self._delete(Lease, lname, self.config.lease_namespace)

    # --- what a served Model publishes ---

    async def _apply(self, cr: dict, replicas: int, held: bool) -> None:
        """Apply the Model's file when it changed, or when the daemon does not hold it (restarted
        with an empty models.d, or the file was removed by hand)."""
        name = cr["metadata"]["name"]
        text = manifest(cr, replicas)
        if self._applied.get(name) != text or not held:
            result = await self._daemon.apply(model_file(cr["metadata"]["namespace"], name), text)
            log.info("%s", "; ".join(result.get("results", [])))
            self._applied[name] = text

    async def _publish_endpoints(self, cr: dict, ready: bool) -> None:
        namespace, name = cr["metadata"]["namespace"], cr["metadata"]["name"]
        labels = model_labels(namespace, name)
        owner = [_owner(cr)]
        if (namespace, name) not in self._services:
            service = {"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owner},
                       "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": model_status.SERVICE_PORT,
                                           "targetPort": self.config.port}]}}
            await self._create(Service.from_dict(service))
            if self.config.ingress_class:
                await self._create(Ingress.from_dict(_ingress(cr, self.config.ingress_class)))
            self._services.add((namespace, name))
        address = self.config.node_address
        body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name(name, self.config.node), "namespace": namespace,
                             "labels": {**labels, "kubernetes.io/service-name": name,
                                        "endpointslice.kubernetes.io/managed-by": "gthread-kube.greenthread.ai"},
                             "ownerReferences": owner},
                "addressType": "IPv6" if ":" in address else "IPv4",
                "ports": [{"name": "http", "protocol": "TCP", "port": self.config.port}],
                "endpoints": [{"addresses": [address], "nodeName": self.config.node, "conditions": {"ready": ready}}]}
        if not self._slices_served or self._slices.get((namespace, name)) == body:
            return
        try:
            await self._kube.create(EndpointSlice.from_dict(body), field_manager=FIELD_MANAGER)
        except ApiError as exc:
            if _not_served(exc):
                return self._no_slices()
            if exc.status.code != 409:
                raise
            await self._kube.patch(EndpointSlice, body["metadata"]["name"], body, namespace=namespace,
                                   patch_type=PatchType.MERGE, field_manager=FIELD_MANAGER)
        self._slices[(namespace, name)] = body

    async def _prune_endpoints(self, cr: dict, serving: set[str]) -> None:
        """Delete the EndpointSlices of nodes that no longer hold a replica (a dead node cannot)."""
        namespace, name = cr["metadata"]["namespace"], cr["metadata"]["name"]
        if not self._slices_served:
            return
        try:
            found = [s async for s in self._kube.list(EndpointSlice, namespace=namespace,
                                                      labels=model_labels(namespace, name))]
        except ApiError as exc:
            if _not_served(exc):
                return self._no_slices()
            raise
        for stale in found:
            nodes = {e.nodeName for e in stale.endpoints or []}
            if not nodes & serving:
                log.info("deleting EndpointSlice %s/%s of %s, which serves Model %s no longer", namespace,
                         stale.metadata.name, ",".join(sorted(n for n in nodes if n)), name)
                await self._delete(EndpointSlice, stale.metadata.name, namespace)

    def _no_slices(self) -> None:
        """The API server serves no discovery.k8s.io/v1 EndpointSlices (Kubernetes before 1.21): say
        so once, and keep doing everything else (Leases, models.d, status, GPUs, events)."""
        self._slices_served = False
        log.warning("the API server does not serve discovery.k8s.io/v1 EndpointSlices (Kubernetes 1.21+ does): "
                    "Models' Services get no endpoints from this node")

    async def _write_status(self, cr: dict, status: dict, force: bool = False) -> None:
        """Patch the status subresource when it changed, at most once a second per Model."""
        key = (cr["metadata"]["namespace"], cr["metadata"]["name"])
        if not model_status.differs(cr.get("status"), status):
            return
        now = self._clock()
        if not force and now - self._status_written.get(key, -STATUS_MIN_INTERVAL_S) < STATUS_MIN_INTERVAL_S:
            return
        try:
            updated = await self._kube.patch(Model.Status, key[1], {"status": status}, namespace=key[0],
                                             patch_type=PatchType.MERGE, field_manager=FIELD_MANAGER)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            return
        self._status_written[key] = now
        if key in self._models:
            self._models[key] = {**self._models[key], "status": updated.to_dict().get("status")}

    async def _send_events(self, cr: dict) -> None:
        """The daemon's events for the Model as core/v1 Events on the CR (`kubectl describe model`)."""
        namespace, name = cr["metadata"]["namespace"], cr["metadata"]["name"]
        sent = self._events.setdefault((namespace, name), {})
        current = {}
        for event in await self._daemon.events(name):
            ename = event_name(name, self.config.node, event["reason"], event["firstTimestamp"])
            current[ename] = sent.get(ename)
            if sent.get(ename) == event["count"]:
                continue
            body = {"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": ename, "namespace": namespace, "labels": dict(MANAGED_BY)},
                    "involvedObject": {"apiVersion": API_VERSION, "kind": "Model", "name": name,
                                       "namespace": namespace, "uid": cr["metadata"].get("uid", "")},
                    "type": event["type"], "reason": event["reason"], "message": event["message"],
                    "count": event["count"], "firstTimestamp": event["firstTimestamp"],
                    "lastTimestamp": event["lastTimestamp"],
                    "source": {"component": FIELD_MANAGER, "host": self.config.node},
                    "reportingComponent": "greenthread.ai/" + FIELD_MANAGER, "reportingInstance": self.config.node}
            if ename in sent:
                await self._kube.patch(Event, ename, {"count": event["count"], "lastTimestamp": event["lastTimestamp"]},
                                       namespace=namespace, patch_type=PatchType.MERGE, field_manager=FIELD_MANAGER)
            else:
                await self._create(Event.from_dict(body))
            sent[ename] = current[ename] = event["count"]
        self._events[(namespace, name)] = current  # the daemon's log is bounded; so is this

    async def _sync_gpus(self, node_uid: str) -> None:
        """One GPU object per device of the daemon's inventory; status patched when it changes."""
        owner = [{"apiVersion": "v1", "kind": "Node", "name": self.config.node, "uid": node_uid}] if node_uid else []
        for device in await self._daemon.gpus():
            name = device_object_name(self.config.node, device["index"], device["product"])
            status = {k: device[k] for k in ("mode", "health", "available")}
            if name not in self._gpus:
                body = {"apiVersion": API_VERSION, "kind": "GPU",
                        "metadata": {"name": name, "labels": {**MANAGED_BY, "greenthread.ai/node": self.config.node},
                                     "ownerReferences": owner},
                        "spec": {"node": self.config.node, "index": device["index"], "uuid": device.get("uuid") or "",
                                 "product": device["product"], "totalBytes": device["totalBytes"]}}
                await self._create(Gpu.from_dict(body))
            if self._gpus.get(name) != status:
                await self._kube.patch(Gpu.Status, name, {"status": status}, patch_type=PatchType.MERGE,
                                       field_manager=FIELD_MANAGER)
                self._gpus[name] = status

    # --- small helpers ---

    async def _create(self, obj) -> None:
        try:
            await self._kube.create(obj, field_manager=FIELD_MANAGER)
        except ApiError as exc:
            if exc.status.code != 409:
                raise

    async def _delete(self, resource, name: str, namespace: str) -> None:
        try:
            await self._kube.delete(resource, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise


def _not_served(exc: ApiError) -> bool:
    """A 404 for a kind of object the API server does not serve (its API group or version is absent),
    not for a missing object or namespace: it names none."""
    details = exc.status.details
    return exc.status.code == 404 and (details is None or not details.name)


def _file(local: dict) -> str:
    """The models.d file name a daemon Model object came from (the shim's start with FILE_PREFIX)."""
    return Path((local.get("status") or {}).get("sourceFile", "")).name


def _is_model(lease: dict, namespace: str, name: str) -> bool:
    labels = lease["metadata"].get("labels") or {}
    return labels.get(MODEL_NAMESPACE_LABEL) == namespace and labels.get(MODEL_NAME_LABEL) == name
