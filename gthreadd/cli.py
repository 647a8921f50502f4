"""`gthread`: look at and check what a gthreadd serves, with kubectl's conventions.

Talks to the daemon's HTTP API (`--server`, or $GTHREAD_SERVER, default http://127.0.0.1:8000).
Errors go to stderr with a non-zero exit.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

import yaml

from gthreadd.table import human_bytes, render

API = "/apis/greenthread.ai/v1alpha1/models"
MODEL_COLUMNS = ["NAMESPACE", "NAME", "PHASE", "REPLICAS", "SERVING", "SLEEPING", "NODE", "GPUS", "VRAM/GPU", "URL"]


class CliError(Exception):
    pass


def _get(server: str, path: str) -> dict:
    try:
        with urllib.request.urlopen(server.rstrip("/") + path, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise CliError(f"{exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"cannot reach gthreadd at {server}: {getattr(exc, 'reason', exc)}") from None


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
    if args.name:
        items, errors = [_get(args.server, f"{API}/{args.name}")], []
    else:
        listing = _get(args.server, API)
        items, errors = listing["items"], listing.get("errors", [])
    for error in errors:
        print(f"warning: {error}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(items[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": items}, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(items[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": items},
                             sort_keys=False), end="")
    elif not items:
        print("No resources found", file=sys.stderr)
    else:
        wide = args.output == "wide"
        headers = MODEL_COLUMNS + (["MODEL", "REASON", "FILE"] if wide else [])
        print(render(headers, [model_row(obj, wide) for obj in items]))
    return 0


GPU_COLUMNS = ["NAME", "NODE", "INDEX", "PRODUCT", "MODE", "HEALTH", "AVAILABLE"]


def get_gpus(args: argparse.Namespace) -> int:
    items = _get(args.server, "/apis/greenthread.ai/v1alpha1/gpus")["items"]
    if args.output == "json":
        print(json.dumps({"kind": "List", "items": items}, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump({"kind": "List", "items": items}, sort_keys=False), end="")
    else:
        wide = args.output == "wide"
        headers = GPU_COLUMNS + (["UUID", "TOTAL"] if wide else [])
        rows = [[g["name"], g["node"], g["index"], g["product"], g["mode"], g["health"], g["available"]]
                + ([g["uuid"], g["totalBytes"]] if wide else []) for g in items]
        print(render(headers, rows))
    return 0


def validate(args: argparse.Namespace) -> int:
    from gthreadd.validate import validate_paths

    return validate_paths(args.files)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gthread", description="Inspect and check a gthreadd host.")
    parser.add_argument("--server", default=os.environ.get("GTHREAD_SERVER", "http://127.0.0.1:8000"),
                        help="gthreadd address (default $GTHREAD_SERVER or http://127.0.0.1:8000)")
    verbs = parser.add_subparsers(dest="verb", required=True)

    get = verbs.add_parser("get", help="list resources")
    kinds = get.add_subparsers(dest="kind", required=True)
    for kind in ("models", "model"):
        p = kinds.add_parser(kind, help="Model resources and their status")
        p.add_argument("name", nargs="?")
        p.add_argument("-o", "--output", choices=["wide", "json", "yaml"])
        p.add_argument("-A", "--all-namespaces", action="store_true", help="accepted for kubectl habits; "
                       "a host shows all namespaces")
        p.set_defaults(func=get_models)

    for kind in ("gpus", "gpu"):
        p = kinds.add_parser(kind, help="this host's accelerators (the CPU device where there is no GPU)")
        p.add_argument("-o", "--output", choices=["wide", "json", "yaml"])
        p.set_defaults(func=get_gpus)

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
