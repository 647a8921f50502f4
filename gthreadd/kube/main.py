"""`gthread-kube`: the Kubernetes shim, run beside gthreadd (a second container of the DaemonSet's
pod, sharing the control socket).

A separate process rather than `gthreadd --kubernetes`: the daemon stays the product and knows
nothing of clusters; the shim is a client of its control socket as `gthread` is, so an API server
outage, a shim crash or a shim upgrade never touches a serving engine, and the daemon's
dependencies do not grow a Kubernetes client.
"""

import argparse
import asyncio
import logging
import os
import signal
import sys

from lightkube import AsyncClient, KubeConfig
from lightkube.config.models import Cluster, User

from gthreadd import __version__
from gthreadd.kube.agent import AgentConfig, NodeAgent
from gthreadd.kube.daemon_client import DaemonClient
from gthreadd.kube.leases import LeaseTiming
from gthreadd.observe import logs

log = logging.getLogger("gthreadd.kube")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="gthread-kube", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--node-name", default=env("NODE_NAME"), help="this node (env NODE_NAME, the downward API)")
    parser.add_argument("--node-address", default=env("POD_IP"),
                        help="address Services reach the daemon at (env POD_IP: status.podIP)")
    parser.add_argument("--port", type=int, default=int(env("GTHREADD_PORT", "8000")), help="the daemon's TCP port")
    parser.add_argument("--socket", default=env("GTHREADD_SOCKET", "/run/gthreadd/gthreadd.sock"),
                        help="the daemon's control socket")
    parser.add_argument("--namespace", default=env("POD_NAMESPACE", "greenthread-system"),
                        help="where the replicas' Leases live (env POD_NAMESPACE)")
    parser.add_argument("--server", default=env("KUBE_SERVER"),
                        help="API server URL without credentials (tests); default: in-cluster, then KUBECONFIG")
    parser.add_argument("--lease-duration", type=float, default=15.0, help="seconds a Lease outlives its last renewal")
    parser.add_argument("--renew-interval", type=float, default=5.0, help="seconds between renewals and passes")
    parser.add_argument("--ingress-class", default=env("INGRESS_CLASS", ""),
                        help="publish an Ingress of this class per Model, path /<name>/v1 (default: none)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if not args.node_name:
        parser.error("--node-name (or NODE_NAME) is required")
    if not args.renew_interval < args.lease_duration:
        parser.error("--renew-interval must be shorter than --lease-duration")
    args.node_address = args.node_address or "127.0.0.1"
    return args


def kube_config(server: str | None) -> KubeConfig:
    """In-cluster (the pod's service account), else KUBECONFIG; with `server`, that URL and no
    credentials (a local API server, or the emulator in tests)."""
    if server:
        return KubeConfig.from_one(cluster=Cluster(server=server), user=User())
    return KubeConfig.from_env()


async def serve(args: argparse.Namespace) -> None:
    kube = AsyncClient(config=kube_config(args.server), field_manager="gthread-kube")
    daemon = DaemonClient(args.socket)
    agent = NodeAgent(AgentConfig(node=args.node_name, lease_namespace=args.namespace,
                                  node_address=args.node_address, port=args.port,
                                  timing=LeaseTiming(args.lease_duration, args.renew_interval),
                                  ingress_class=args.ingress_class), kube, daemon)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await daemon.start()
    await agent.start()
    log.info("gthread-kube on node %s: daemon %s, Leases in %s", args.node_name, args.socket, args.namespace)
    try:
        await stopping.wait()
    finally:
        await agent.stop()
        await daemon.close()
        await kube.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logs.configure(args.log_level)
    asyncio.run(serve(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
