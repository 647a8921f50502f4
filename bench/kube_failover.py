"""Node loss on Kubernetes: how long a Model is unanswered when the node serving it dies, against
a cold start of the same Model on a fresh daemon (the baseline: the boot no failover can avoid).

Two "nodes" (gthreadd + gthread-kube each, real vLLM engines) against a real kube-apiserver 1.20
and kube-controller-manager (tests/kube_env.py: built from Debian's sources once per machine),
deploy/ applied, each shim with a token of the gthreadd ServiceAccount. One run:
  1. apply the Model; time to the first answer from the node that takes its Lease (cold start);
  2. SIGKILL that node's daemon and shim; time until the other node holds the Lease (detection:
     the Lease duration on the survivor's clock, plus up to one renew interval), and until it answers.

    .venv/bin/python bench/kube_failover.py --checkpoint .state/checkpoints/smollm2-135m-instruct
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.daemon_process import DaemonProcess  # noqa: E402
from tests.e2e.shim_process import ShimProcess  # noqa: E402
from tests.kube_env import ControlPlane, environment  # noqa: E402

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def answers(daemon: DaemonProcess, name: str) -> bool:
    body = json.dumps({"model": name, "messages": QUESTION, "max_tokens": 16, "temperature": 0}).encode()
    status, reply = daemon.request("POST", f"/{name}/v1/chat/completions", body)
    return status == 200 and "Paris" in reply["choices"][0]["message"]["content"]


def wait(check, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--lease-duration", type=float, default=15.0, help="gthread-kube's default")
    parser.add_argument("--renew-interval", type=float, default=5.0, help="gthread-kube's default")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="kube-failover-"))
    plane = ControlPlane(environment(root), root / "control-plane")
    plane.start()
    nodes = {}
    try:
        plane.install(Path(__file__).resolve().parents[1] / "deploy")
        shim_config = plane.kubeconfig(plane.token_for("greenthread-system", "gthreadd"), root / "shim.kubeconfig")
        for name in ("n1", "n2"):
            plane.kubectl("apply", "-f", "-", input=json.dumps(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
            daemon = DaemonProcess(root / name, args.checkpoint.resolve(), {"HF_HUB_OFFLINE": "1"})
            shim = ShimProcess(name, daemon, shim_config, args.lease_duration, args.renew_interval)
            daemon.start()
            shim.start()
            nodes[name] = (daemon, shim)
        model = {"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model",
                 "metadata": {"name": "chat", "namespace": "default"},
                 "spec": {"modelName": str(args.checkpoint.resolve()), "gpuMemoryUtilization": "0.20"}}

        def holder() -> str:
            lease = plane.kubectl("get", "lease", "model-default-chat-0", "-n", "greenthread-system", "-o", "json")
            return json.loads(lease.stdout)["spec"].get("holderIdentity", "") if lease.returncode == 0 else ""

        applied = time.monotonic()
        plane.kubectl("apply", "-f", "-", input=json.dumps(model))
        first = wait(holder, 60, "a node to take the Lease")
        owner = holder()
        cold = wait(lambda: answers(nodes[owner][0], "chat"), 600, "the first answer") - applied
        survivor = next(n for n in nodes if n != owner)
        lost = time.monotonic()
        for proc in nodes[owner]:
            proc.kill()
        taken = wait(lambda: holder() == survivor, 10 * args.lease_duration, "the takeover") - lost
        answered = wait(lambda: answers(nodes[survivor][0], "chat"), 600, "the survivor's answer") - lost
        print(f"lease {args.lease_duration:.0f}s, renew {args.renew_interval:.0f}s; first Lease taken "
              f"{first - applied:.1f}s after apply")
        print(f"cold start (apply -> first answer):        {cold:6.1f}s")
        print(f"failover: Lease taken after node loss       {taken:6.1f}s")
        print(f"failover: first answer after node loss      {answered:6.1f}s")
        print(f"failover / (lease duration + cold start):   {answered / (args.lease_duration + cold):6.3f}")
        print(f"failover boot / cold start:                 {(answered - taken) / cold:6.3f}")
    finally:
        for daemon, shim in nodes.values():
            shim.kill()
            daemon.kill()
        plane.stop()


if __name__ == "__main__":
    main()
