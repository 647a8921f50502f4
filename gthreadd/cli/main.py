"""`gthread`: look at, check and administer a gthreadd host, with kubectl's conventions.

Reads (`get`, `describe`) go to the control socket when it is there, else to the TCP port
(`--server`, or $GTHREAD_SERVER; $GTHREAD_API_KEY when the daemon wants a key). Administration
(`apply`, `delete`, `sleep`, `wake`) goes to the control socket only (`--socket`, or
$GTHREAD_SOCKET, default /run/gthread/gthreadd.sock): its file mode decides who may. Errors go to
stderr with a non-zero exit.
"""

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import yaml

from gthreadd import __version__
from gthreadd.cli.client import ApiClient, ApiError
from gthreadd.cli.table import render
from gthreadd.spec.byte_size import human_bytes

API = "/apis/greenthread.ai/v1alpha1"
MODELS = f"{API}/models"
MODEL_COLUMNS = ["NAMESPACE", "NAME", "PHASE", "REPLICAS", "SERVING", "SLEEPING", "NODE", "GPUS", "VRAM/GPU", "URL"]
DEFAULT_SOCKET = "/run/gthread/gthreadd.sock"
DEFAULT_SERVER = "http://127.0.0.1:8000"


class CliError(Exception):
    pass


def reader(args: argparse.Namespace) -> ApiClient:
    """The control socket unless a server was named (or there is no socket to use)."""
    if args.server or not Path(args.socket).exists():
        return ApiClient(server=args.server or DEFAULT_SERVER, api_key=os.environ.get("GTHREAD_API_KEY", ""))
    return ApiClient(socket_path=args.socket)


def admin(args: argparse.Namespace) -> ApiClient:
    return ApiClient(socket_path=args.socket)


def _call(client: ApiClient, method: str, path: str, body: dict | None = None, timeout: float = 30) -> dict:
    try:
        return client.request(method, path, body, timeout)
    except ApiError as exc:
        raise _failed(exc) from None


def _failed(exc: ApiError) -> CliError:
    return CliError(f"{exc.status}: {exc}" if exc.status else str(exc))


def model_row(obj: dict, wide: bool) -> list:
    meta, status = obj["metadata"], obj.get("status", {})
    row = [
        meta["namespace"], meta["name"], status.get("phase", ""), status.get("replicas", 0),
        status.get("servingReplicas", 0), status.get("sleepingReplicas", 0), status.get("node", ""),
        status.get("gpus", ""), human_bytes(status.get("servingMemoryPerGPU")), status.get("url", ""),
    ]
    if wide:
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        row += [obj["spec"]["modelName"], ready.get("reason", ""), status.get("sourceFile", "")]
    return row


def get_models(args: argparse.Namespace) -> int:
    client = reader(args)

    def fetch() -> tuple[list[dict], list[str]]:
        if args.name:
            return [_call(client, "GET", f"{MODELS}/{args.name}")], []
        listing = _call(client, "GET", MODELS)
        return listing["items"], listing.get("errors", [])

    wide = args.output == "wide"
    headers = MODEL_COLUMNS + (["MODEL", "REASON", "FILE"] if wide else [])
    items, errors = fetch()
    for error in errors:
        print(f"warning: {error}", file=sys.stderr)
    if args.output in ("json", "yaml") and not args.watch:
        _print_document(items[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": items}, args.output)
        return 0
    if not items and not args.watch:
        print("No resources found", file=sys.stderr)
        return 0
    rows = [model_row(obj, wide) for obj in items]
    print(render(headers, rows), flush=True)
    if args.watch:
        _watch(client, lambda snap: [model_row(obj, wide) for obj in snap["models"]
                                     if not args.name or obj["metadata"]["name"] == args.name], headers, rows, key=1)
    return 0


def _print_document(document: dict, output: str) -> None:
    """`-o json` or `-o yaml`, as kubectl prints them."""
    if output == "json":
        print(json.dumps(document, indent=2))
    else:
        print(yaml.safe_dump(document, sort_keys=False), end="")


def _watch(client: ApiClient, rows_of, headers: list[str], rows: list[list], key: int) -> None:
    """kubectl's `-w`: after the table, a line for each row that changes, until interrupted. Rows
    are padded to the first table's columns so they line up under it. Follows the daemon's watch
    stream: a line appears when the change happens, and nothing is asked while nothing changes."""
    widths = [max(len(str(v)) for v in col) for col in zip(headers, *rows)]
    last = {row[key]: row for row in rows}
    try:
        for event, data in client.events(f"{API}/watch"):
            if event != "snapshot":
                continue
            for row in rows_of(json.loads(data)):
                if last.get(row[key]) != row:
                    last[row[key]] = row
                    cells = [("<none>" if v in (None, "") else str(v)).ljust(w) for v, w in zip(row, widths)]
                    print("   ".join(cells).rstrip(), flush=True)
    except ApiError as exc:
        raise _failed(exc) from None
    except KeyboardInterrupt:
        pass


GPU_COLUMNS = ["NAME", "NODE", "INDEX", "PRODUCT", "MODE", "HEALTH", "AVAILABLE"]


def get_gpus(args: argparse.Namespace) -> int:
    client = reader(args)
    wide = args.output == "wide"

    def rows(items: list[dict]) -> list[list]:
        return [[g["name"], g["node"], g["index"], g["product"], g["mode"], g["health"], g["available"]]
                + ([g["uuid"], g["totalBytes"], g.get("claimedBytes", 0), g.get("sleepingBytes", 0)] if wide else [])
                for g in items]

    listing = _call(client, "GET", f"{API}/gpus")
    if args.output in ("json", "yaml"):
        _print_document({"kind": "List", "items": listing["items"], "host": listing.get("host")}, args.output)
        return 0
    headers = GPU_COLUMNS + (["UUID", "TOTAL", "CLAIMED", "SLEEPING"] if wide else [])
    first = rows(listing["items"])
    print(render(headers, first), flush=True)
    if "host" in listing and not args.watch:
        print(host_line(listing["host"]), flush=True)
    if args.watch:
        _watch(client, lambda snap: rows(snap["gpus"]), headers, first, key=0)
    return 0


KEY_COLUMNS = ["NAME", "MODELS", "REQ/MIN", "TOKENS/MIN", "MAX-CONCURRENT", "IN-FLIGHT", "REQUESTS(1M)", "TOKENS(1M)",
               "ADMIN"]


def get_keys(args: argparse.Namespace) -> int:
    """The daemon's API keys by name: what each may use, its limits, and its last minute."""
    listing = _call(reader(args), "GET", f"{API}/keys")
    if args.output in ("json", "yaml"):
        _print_document(listing, args.output)
        return 0
    if not listing["items"]:
        print("No API keys: the port takes requests without one.")
        return 0

    def limit(value) -> object:
        return "<none>" if value is None else value

    print(render(KEY_COLUMNS, [[k["name"], ",".join(k["models"]), limit(k["limits"]["requestsPerMinute"]),
                                limit(k["limits"]["tokensPerMinute"]), limit(k["limits"]["maxConcurrent"]),
                                k["inFlight"], k["lastMinute"]["requests"], k["lastMinute"]["tokens"],
                                str(k["admin"]).lower()] for k in listing["items"]]))
    return 0


def host_line(host: dict) -> str:
    """The host memory budget under the devices: what engines, the host tier and the daemon hold."""
    limit = human_bytes(host["limitBytes"]) if host["limitBytes"] else "no limit"
    engines = host["usedBytes"] - host["otherBytes"]
    cap = f"at most {host['maxSleepingEngines']}" if host["maxSleepingEngines"] else "no limit"
    return (f"\nHost memory: {human_bytes(host['usedBytes'])} of {limit} (engines {human_bytes(engines)}, daemon "
            f"and host tier {human_bytes(host['otherBytes'])}); engines asleep: {host['sleepingEngines']} ({cap})")


def logs(args: argparse.Namespace) -> int:
    """A model's log lines: the daemon's own about it and its engine processes' (vLLM's)."""
    client = reader(args)
    query = f"tailLines={args.tail}" + ("&follow=true" if args.follow else "")
    try:
        for event, line in client.events(f"{MODELS}/{args.name}/logs?{query}"):
            if event == "line":
                print(json.loads(line), flush=True)
    except ApiError as exc:
        raise _failed(exc) from None
    except KeyboardInterrupt:
        pass
    return 0


def describe(args: argparse.Namespace) -> int:
    client = reader(args)
    obj = _call(client, "GET", f"{MODELS}/{args.name}")
    events = _call(client, "GET", f"{MODELS}/{args.name}/events")["items"]
    print(describe_text(obj, events, datetime.now(timezone.utc)))
    return 0


def _kv_cache_line(held: Optional[int]) -> Optional[str]:
    """status.kvCacheBytes: absent when spec.kvCache is off; 0 when no engine was granted any."""
    if held is None:
        return None
    if not held:
        return "enabled, not in use (see Events)"
    return f"{human_bytes(held)} of host memory for offloaded KV blocks"


def describe_text(obj: dict, events: list[dict], now: datetime) -> str:
    """kubectl describe's layout: aligned fields, the spec as YAML, then conditions and events."""
    meta, status = obj["metadata"], obj.get("status", {})
    lines = [f"{k + ':':<14}{v}" for k, v in (
        ("Name", meta["name"]), ("Namespace", meta.get("namespace", "")), ("API Version", obj["apiVersion"]),
        ("Kind", obj["kind"]), ("Source File", status.get("sourceFile", "")))]
    lines.append("Spec:")
    lines += ["  " + line for line in yaml.safe_dump(obj["spec"], sort_keys=False).splitlines()]
    lines.append("Status:")
    conversion = status.get("conversion")
    tiers = status.get("distribution", {}).get("stagingTier", {})
    for key, value in (
        ("Phase", status.get("phase")), ("URL", status.get("url")),
        ("Replicas", f"{status.get('replicas', 0)} desired, {status.get('readyReplicas', 0)} ready, "
                     f"{status.get('servingReplicas', 0)} serving, {status.get('sleepingReplicas', 0)} sleeping"),
        ("Node", status.get("node")), ("GPUs", status.get("gpus") or "<none>"),
        ("VRAM/GPU", human_bytes(status.get("servingMemoryPerGPU"))),
        ("Conversion", f"{conversion['status']} ({human_bytes(conversion.get('totalSizeBytes'))})"
         if conversion else None),
        ("Staging Tier", ", ".join(f"{tier} ({node})" for node, tier in tiers.items()) or None),
        ("Adapters", ", ".join(status.get("loraAdapters", [])) or None),
        ("KV Cache", _kv_cache_line(status.get("kvCacheBytes"))),
    ):
        if value is not None:
            lines.append(f"  {key + ':':<14}{value}")
    if replicas := status.get("replicaStatus"):
        lines.append("Replicas:")
        lines += ["  " + line for line in render(
            ["REPLICA", "RUNG", "STATE", "PID", "HOST MEMORY", "DEVICE MEMORY", "REASON"],
            [[r["replica"], r["rung"] + (f" (level {r['sleepLevel']})" if r.get("sleepLevel") else ""), r["state"],
              r.get("pid") or "-", human_bytes(r.get("hostBytes")),
              ", ".join(f"{i}: {human_bytes(b)}" for i, b in r.get("deviceBytes", {}).items()) or "-",
              r.get("reason", "") + (f" (next try {r['retryAt']})" if r.get("retryAt") else "")]
             for r in replicas]).splitlines()]
    conditions = status.get("conditions", [])
    lines.append("Conditions:")
    lines += ["  " + line for line in render(
        ["TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"],
        [[c["type"], c["status"], c.get("reason", ""), c.get("lastTransitionTime", ""), c.get("message", "")]
         for c in conditions]).splitlines()]
    if not events:
        lines.append("Events:       <none>")
    else:
        lines.append("Events:")
        rows = []
        for e in events:
            age = _age(now, e["lastTimestamp"])
            if e["count"] > 1:
                age += f" (x{e['count']} over {_age(now, e['firstTimestamp'])})"
            rows.append([e["type"], e["reason"], age, e["message"]])
        lines += ["  " + line for line in render(["TYPE", "REASON", "AGE", "MESSAGE"], rows).splitlines()]
    return "\n".join(lines)


def _age(now: datetime, stamp: str) -> str:
    seconds = max(0, int((now - datetime.fromisoformat(stamp)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def apply(args: argparse.Namespace) -> int:
    """Validate here first (clear messages without a round trip), then let the daemon write the
    file into models.d atomically; it validates again against what else is there."""
    from gthreadd.spec.validate import validate_paths

    client = admin(args)
    for path in args.filename:
        if validate_paths([path], quiet=True) != 0:
            return 1
        text = Path(path).read_text(encoding="utf-8")
        reply = _call(client, "POST", f"{API}/apply", {"file": Path(path).name, "text": text, "dryRun": args.dry_run}, 120)
        for line in reply["results"]:
            print(line)
        for name, reason in reply.get("unschedulable", {}).items():
            print(f"warning: Model {name} cannot run on this host: {reason}", file=sys.stderr)
    return 0


def delete(args: argparse.Namespace) -> int:
    for line in _call(admin(args), "DELETE", f"{MODELS}/{args.name}", timeout=120)["results"]:
        print(line)
    return 0


def sleep(args: argparse.Namespace) -> int:
    result = _call(admin(args), "POST", f"/{args.name}/sleep", timeout=900)
    print(f"model.greenthread.ai/{result['model']} {result['state']}")
    return 0


def wake(args: argparse.Namespace) -> int:
    result = _call(admin(args), "POST", f"/{args.name}/wake", timeout=900)
    print(f"model.greenthread.ai/{result['model']} {result['state']}")
    return 0


def lora(args: argparse.Namespace) -> int:
    """LoRA adapters of a running Model: load and unload through the daemon (which remembers them
    across sleeps and engine restarts), list what /v1/models lists for it."""
    if args.action == "list":
        listing = _call(reader(args), "GET", "/v1/models")
        for entry in listing["data"]:
            if entry.get("name") == args.name and entry.get("parent"):
                print(entry["id"])
        return 0
    if not args.adapter or (args.action == "load" and not args.path):
        raise CliError(f"gthread lora {args.action} NAME ADAPTER{' PATH' if args.action == 'load' else ''}")
    body = {"lora_name": args.adapter} | ({"lora_path": args.path} if args.action == "load" else {})
    result = _call(admin(args), "POST", f"/{args.name}/v1/{args.action}_lora_adapter", body, timeout=900)
    print(result["message"])
    return 0


def validate(args: argparse.Namespace) -> int:
    from gthreadd.spec.validate import validate_paths

    return validate_paths(args.files)


def keys_hash(args: argparse.Namespace) -> int:
    """The digest a keys file holds for a key, read from stdin (not an argument: it would be in ps
    and the shell's history)."""
    from gthreadd.tenants.keyring import digest

    key = sys.stdin.readline().strip()
    if not key:
        raise CliError("no key on stdin: echo -n KEY | gthread keys hash (or type it and press enter)")
    print(digest(key))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gthread", description="Inspect, check and administer a gthreadd host.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--server", default=os.environ.get("GTHREAD_SERVER", ""),
                        help=f"read over TCP from this address ($GTHREAD_SERVER; default: the socket, else "
                             f"{DEFAULT_SERVER})")
    parser.add_argument("--socket", default=os.environ.get("GTHREAD_SOCKET", DEFAULT_SOCKET),
                        help=f"the daemon's control socket ($GTHREAD_SOCKET, default {DEFAULT_SOCKET})")
    verbs = parser.add_subparsers(dest="verb", required=True)

    get = verbs.add_parser("get", help="list resources")
    kinds = get.add_subparsers(dest="kind", required=True)
    for kind in ("models", "model"):
        p = kinds.add_parser(kind, help="Model resources and their status")
        p.add_argument("name", nargs="?")
        p.add_argument("-o", "--output", choices=["wide", "json", "yaml"])
        p.add_argument("-w", "--watch", action="store_true", help="after the table, print rows as they change")
        p.add_argument("-A", "--all-namespaces", action="store_true", help="accepted for kubectl habits; "
                       "a host shows all namespaces")
        p.set_defaults(func=get_models)
    for kind in ("gpus", "gpu"):
        p = kinds.add_parser(kind, help="this host's accelerators (the CPU device where there is no GPU)")
        p.add_argument("-o", "--output", choices=["wide", "json", "yaml"])
        p.add_argument("-w", "--watch", action="store_true", help="after the table, print rows as they change")
        p.set_defaults(func=get_gpus)

    for kind in ("keys", "key"):
        p = kinds.add_parser(kind, help="API keys by name: models, limits, use in the last minute")
        p.add_argument("-o", "--output", choices=["json", "yaml"])
        p.set_defaults(func=get_keys)

    d = verbs.add_parser("describe", help="a Model in detail: spec, status, conditions, recent events")
    d.add_argument("kind", choices=["model", "models"])
    d.add_argument("name")
    d.set_defaults(func=describe)

    lg = verbs.add_parser("logs", help="a model's log lines (the daemon's about it, and its vLLM engine's)")
    lg.add_argument("name")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing lines as they are written")
    lg.add_argument("--tail", type=int, default=200, metavar="N", help="how many recent lines first (default 200)")
    lg.set_defaults(func=logs)

    a = verbs.add_parser("apply", help="validate Model files and write them into the daemon's models.d")
    a.add_argument("-f", "--filename", action="append", required=True, metavar="FILE")
    a.add_argument("--dry-run", action="store_true", help="validate against the daemon and say whether each "
                   "Model could ever be placed on this host, without writing anything")
    a.set_defaults(func=apply)

    rm = verbs.add_parser("delete", help="delete a Model (its file in models.d)")
    rm.add_argument("kind", choices=["model", "models"])
    rm.add_argument("name")
    rm.set_defaults(func=delete)

    for verb, func, text in (("sleep", sleep, "put a model to sleep now (in-flight requests finish first)"),
                             ("wake", wake, "wake a model now, as a request would")):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("name")
        p.set_defaults(func=func)

    lo = verbs.add_parser("lora", help="LoRA adapters of a Model: load NAME ADAPTER PATH, unload NAME ADAPTER, "
                                       "list NAME")
    lo.add_argument("action", choices=["load", "unload", "list"])
    lo.add_argument("name")
    lo.add_argument("adapter", nargs="?")
    lo.add_argument("path", nargs="?", help="an adapter directory or a Hugging Face repo id")
    lo.set_defaults(func=lora)

    k = verbs.add_parser("keys", help="API keys: hash prints the SHA-256 digest of a key read from stdin, for "
                                      "the keys file")
    k.add_argument("action", choices=["hash"])
    k.set_defaults(func=keys_hash)

    v = verbs.add_parser("validate", help="check Model files; exit 0 when valid")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.set_defaults(func=validate)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        sys.exit(args.func(args))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
