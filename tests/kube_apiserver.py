"""A Kubernetes API server emulator for tests: the REST semantics the shim relies on, in memory.

For the shim's fast unit tests (tests/gthreadd/kube/test_agent.py: two agents in seconds, an
outage and a compaction at will) and for what a 1.20 server cannot serve (discovery.k8s.io/v1
EndpointSlices); a real kube-apiserver (tests/kube_env.py) runs the end-to-end tests, RBAC,
admission and garbage collection. The PyPI emulator that exists (kmock 0.8) stores objects as
merged dicts: no resourceVersion, no 409 on a stale write, no PUT, no status subresource, no 410
for a too-old watch. Leases are optimistic concurrency on resourceVersion, so this emulator
implements exactly that much of the real thing:

- create (409 AlreadyExists), get, list (labelSelector), replace and merge patch, both refused with
  409 Conflict when the body's metadata.resourceVersion is stale; delete;
- metadata the server owns: uid, resourceVersion (one counter for all objects), generation (bumped
  when anything but metadata and status changes), creationTimestamp;
- the status subresource: writes to the object keep its status, writes to /status change only status;
- watches from a resourceVersion, with 410 Gone (an ERROR event) once that version is compacted;
- `stop()` and `start()` on the same port, to stand for an API server that goes away.

It does not validate objects against schemas, run admission, garbage-collect by ownerReferences,
or implement strategic merge (treated as a JSON merge patch) and server-side apply.
"""

import asyncio
import copy
import itertools
import json
import uuid
from datetime import datetime, timezone

from aiohttp import web

MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


def _merge(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _selects(selector: str, labels: dict) -> bool:
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def _json(body: dict, status: int = 200) -> web.Response:
    """Content-Type exactly application/json, as the API server sends it (clients match it exactly)."""
    return web.Response(body=json.dumps(body).encode(), status=status, headers={"Content-Type": "application/json"})


def _error(code: int, reason: str, message: str) -> web.Response:
    return _json(_status(code, reason, message), status=code)


class ApiServerEmulator:
    """Objects keyed by (group/version, plural, namespace, name)."""

    def __init__(self, history: int = 1000):
        self.objects: dict[tuple[str, str, str, str], dict] = {}
        self._events: list[tuple[int, tuple[str, str], dict]] = []  # (rv, (gv, plural), event)
        self._history = history
        self._compacted = 0
        self._rv = itertools.count(1)
        self._last_rv = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._open = False
        self.port = 0
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:(api|apis)/.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self._open = True
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the port and every watch on it, keeping the objects (an API server restart)."""
        self._open = False
        async with self._changed:
            self._changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does: older watches get 410 Gone."""
        self._compacted = self._last_rv
        self._events.clear()

    # --- the store, for tests to read and seed ---

    def list(self, plural: str, namespace: str | None = None) -> list[dict]:
        return [copy.deepcopy(o) for (_, p, ns, _), o in sorted(self.objects.items())
                if p == plural and (namespace is None or ns == namespace)]

    def get(self, plural: str, name: str, namespace: str = "") -> dict | None:
        for (_, p, ns, n), obj in self.objects.items():
            if (p, ns, n) == (plural, namespace, name):
                return copy.deepcopy(obj)
        return None

    def put(self, group_version: str, plural: str, obj: dict) -> dict:
        """Create or replace an object directly, as an administrator would with kubectl."""
        meta = obj.setdefault("metadata", {})
        key = (group_version, plural, meta.get("namespace", ""), meta["name"])
        old = self.objects.get(key)
        return self._store(key, obj, old, "MODIFIED" if old else "ADDED")

    def remove(self, plural: str, name: str, namespace: str = "") -> None:
        for key in [k for k in self.objects if k[1:] == (plural, namespace, name)]:
            self._delete(key)

    # --- HTTP ---

    def _key(self, request: web.Request) -> tuple[tuple[str, str, str, str | None], str | None] | None:
        parts = request.match_info["path"].strip("/").split("/")
        if parts[0] == "api":
            gv, rest = parts[1], parts[2:]
        else:
            gv, rest = "/".join(parts[1:3]), parts[3:]
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest:
            return None
        plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, "/".join(rest[2:]) or None
        return (gv, plural, namespace, name), sub

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        parsed = self._key(request)
        if parsed is None:
            return _error(404, "NotFound", f"the server could not find {request.path}")
        (gv, plural, namespace, name), sub = parsed
        method = request.method
        if method == "GET" and request.query.get("watch") in ("true", "1"):
            return await self._watch(request, gv, plural, namespace, name)
        if name is None:
            if method == "GET":
                return self._list(request, gv, plural, namespace)
            if method == "POST":
                return await self._create(request, gv, plural, namespace)
            return _error(405, "MethodNotAllowed", f"{method} on a collection")
        key = (gv, plural, namespace, name)
        old = self.objects.get(key)
        if method == "GET":
            return _json(old) if old else self._not_found(plural, name)
        if method == "DELETE":
            if old is None:
                return self._not_found(plural, name)
            self._delete(key)
            return _json(old)
        if method not in ("PUT", "PATCH"):
            return _error(405, "MethodNotAllowed", method)
        if old is None:
            return self._not_found(plural, name)
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "BadRequest", "the body is not JSON")
        if method == "PATCH":
            if request.content_type not in MERGE_TYPES:
                return _error(415, "UnsupportedMediaType", f"patch type {request.content_type} is not emulated")
            new = _merge(old, body)
        else:
            new = body
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            return _error(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": the object has '
                                           "been modified; please apply your changes to the latest version and try again")
        if sub == "status":
            new = {**old, "status": new.get("status")}
        elif sub is None:
            new = {k: v for k, v in new.items() if k != "status"}
            if "status" in old:
                new["status"] = old["status"]
        else:
            return _error(404, "NotFound", f"subresource {sub} is not emulated")
        return _json(self._store(key, new, old, "MODIFIED"))

    def _not_found(self, plural: str, name: str) -> web.Response:
        return _error(404, "NotFound", f'{plural} "{name}" not found')

    async def _create(self, request: web.Request, gv: str, plural: str, namespace: str) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "BadRequest", "the body is not JSON")
        meta = body.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        key = (gv, plural, namespace, meta.get("name", ""))
        if not key[3]:
            return _error(422, "Invalid", "metadata.name: Required value")
        if key in self.objects:
            return _error(409, "AlreadyExists", f'{plural} "{key[3]}" already exists')
        meta.pop("resourceVersion", None)
        return _json(self._store(key, body, None, "ADDED"), status=201)

    def _list(self, request: web.Request, gv: str, plural: str, namespace: str) -> web.Response:
        selector = request.query.get("labelSelector", "")
        items = [copy.deepcopy(o) for (g, p, ns, _), o in sorted(self.objects.items())
                 if (g, p) == (gv, plural) and (not namespace or ns == namespace)
                 and _selects(selector, o["metadata"].get("labels") or {})]
        kind = items[0]["kind"] + "List" if items else "List"
        return _json({"apiVersion": gv, "kind": kind, "items": items,
                                  "metadata": {"resourceVersion": str(self._last_rv)}})

    async def _watch(self, request: web.Request, gv: str, plural: str, namespace: str,
                     name: str | None) -> web.StreamResponse:
        selector = request.query.get("labelSelector", "")
        since = int(request.query.get("resourceVersion") or 0)
        timeout = float(request.query.get("timeoutSeconds") or 3600)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)

        def wanted(event: dict) -> bool:
            meta = event["object"]["metadata"]
            return ((not namespace or meta.get("namespace", "") == namespace)
                    and (name is None or meta["name"] == name)
                    and _selects(selector, meta.get("labels") or {}))

        async def gone() -> None:
            status = _status(410, "Expired", f"too old resource version: {since} ({self._compacted})")
            await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")

        try:
            if since and since < self._compacted:
                await gone()
                return response
            if not since:
                for (g, p, _, _), obj in sorted(self.objects.items()):
                    if (g, p) == (gv, plural) and wanted({"object": obj}):
                        await response.write(json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n")
                since = self._last_rv
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while self._open and loop.time() < deadline:
                if since < self._compacted:
                    await gone()
                    break
                pending = [e for e in self._events if e[0] > since]
                for rv, resource, event in pending:
                    if resource == (gv, plural) and wanted(event):
                        await response.write(json.dumps(event).encode() + b"\n")
                    since = rv
                if pending:
                    continue
                async with self._changed:
                    if self._last_rv > since:
                        continue
                    try:
                        await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - loop.time()))
                    except TimeoutError:
                        break
        except ConnectionResetError:
            pass
        return response

    # --- writes ---

    def _store(self, key: tuple[str, str, str, str], obj: dict, old: dict | None, kind: str) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta["name"] = key[3]
        if key[2]:
            meta["namespace"] = key[2]
        old_meta = (old or {}).get("metadata", {})
        meta["uid"] = old_meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = old_meta.get("creationTimestamp") or \
            datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        generation = old_meta.get("generation", 0)
        if old is None or {k: v for k, v in obj.items() if k not in ("metadata", "status")} != \
                {k: v for k, v in old.items() if k not in ("metadata", "status")}:
            generation += 1
        meta["generation"] = generation
        rv = next(self._rv)
        self._last_rv = rv
        meta["resourceVersion"] = str(rv)
        self.objects[key] = obj
        self._publish(rv, key, {"type": kind, "object": copy.deepcopy(obj)})
        return copy.deepcopy(obj)

    def _delete(self, key: tuple[str, str, str, str]) -> None:
        obj = self.objects.pop(key)
        rv = next(self._rv)
        self._last_rv = rv
        self._publish(rv, key, {"type": "DELETED", "object": obj})

    def _publish(self, rv: int, key: tuple[str, str, str, str], event: dict) -> None:
        self._events.append((rv, key[:2], event))
        if len(self._events) > self._history:
            dropped = self._events.pop(0)
            self._compacted = dropped[0]

        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()
        asyncio.get_running_loop().create_task(notify())
