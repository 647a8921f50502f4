"""A chaos soak: steady load over several Models on capacity for fewer, while a seeded fault
injector kills EngineCores (SIGKILL), stalls them (SIGSTOP for a few seconds), edits, deletes and
re-adds models.d files, sends SIGHUP, and fills the host tier. Nothing may be lost and nothing
answered wrongly.

Every request ends in one of: answered (200, "Paris"), refused (429 or 503 with Retry-After; a
404 for a Model deleted while it was asked), wrong (200 without "Paris") or lost (no answer, a
refusal without Retry-After, any other status). Each fault that takes an engine away is timed to
its recovery (a new engine running); /status is watched throughout and must never say `failed`.
The daemon's own memory (RssAnon) is read after the warm-up and after the load, settled.

    .venv/bin/python bench/chaos.py --checkpoint .state/checkpoints/smollm2-135m-instruct \\
        --minutes 10 --seed 0 --json /tmp/chaos.json

The models: the first two load through the host tier (loadFormat gthread, bfloat16 and float32,
so each has weights of its own), whose budget (--host-tier-size) holds only one of them; "fill"
pins one of them (staging.pinned), so the other cannot stage and reads the disk until it is
unpinned. Exits 1 when anything was lost or wrong, a refusal lacked Retry-After, a fault did not
recover or `failed` was seen.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import mkdtemp
from typing import Optional

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.e2e's helpers

from gthreadd.runtime.devices import private_memory  # noqa: E402
from tests.e2e.daemon_process import DaemonProcess  # noqa: E402

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
POLICY = "  fairness: {minRuntime: 2s, maxWaitTime: 2s}\n  sleep: {idleTimeout: %s, drainTimeout: 5s}\n"
VARIANTS = ("  loadFormat: gthread\n", "  loadFormat: gthread\n  dtype: float32\n", "")
"""Each model's weights: two through the host tier with weights of their own, one by vLLM's loader."""
FAULTS = {"kill": 3, "stop": 2, "edit-live": 1, "edit-restart": 1, "delete": 2, "sighup": 1, "fill": 1}
"""Fault kinds and their weights in a random soak. A deleted model's file is written again 5-15 s
later (one model away at a time)."""
RECOVERY_S = 300.0
"""A fault not recovered from in this long is a failure of the run."""


@dataclass
class Config:
    models: int = 3
    clients: int = 4
    minutes: float = 10.0
    seed: int = 0
    fault_every: float = 20.0
    """Mean seconds between faults (exponential gaps)."""
    faults: tuple[str, ...] = ()
    """These faults in this order, then the run ends; empty: random kinds by FAULTS' weights until
    `minutes` are up."""
    max_tokens: int = 16
    share: str = "0.45"
    """--cpu-memory-share: 0.45 holds two of the three models awake (each claims 0.2)."""
    host_tier_size: str = "600Mi"
    """Holds the float32 model's converted weights or the bfloat16 one's, not both."""
    kills_per_model: int = 3
    """At most this many SIGKILLs of one model's engine in ten minutes: five would be a crash loop,
    which the daemon is right to give up on."""


@dataclass
class Fault:
    kind: str
    model: str
    at: float
    """Seconds since the load started."""
    detail: str = ""
    recovered_s: Optional[float] = None
    """For a fault that takes an engine away: seconds until a new one runs (None: not timed)."""
    failed: str = ""


@dataclass
class Report:
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    """answered, wrong, 429, 503, 404-deleted, lost"""
    problems: list[str] = field(default_factory=list)
    """Every lost or wrong request, and every other failure of the run, in words."""
    latencies: list[float] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    failed_seen: list[str] = field(default_factory=list)
    memory_before: int = 0
    memory_after: int = 0
    engines_after: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failed_seen and all(not f.failed for f in self.faults)

    def summary(self) -> dict:
        recoveries = [f.recovered_s for f in self.faults if f.recovered_s is not None]
        return {
            "seconds": round(self.seconds, 1), "sent": sum(self.outcomes.values()), "outcomes": dict(self.outcomes),
            "latency_p50": round(statistics.median(self.latencies), 2) if self.latencies else None,
            "faults": Counter(f.kind for f in self.faults),
            "recovery_s": {"n": len(recoveries), "max": round(max(recoveries), 1) if recoveries else None,
                           "median": round(statistics.median(recoveries), 1) if recoveries else None},
            "daemon_memory_mib": {"before": self.memory_before >> 20, "after": self.memory_after >> 20},
            "engines_after": self.engines_after, "failed_seen": self.failed_seen, "problems": self.problems,
            "ok": self.ok,
        }


def model_spec(index: int, idle_timeout: str = "60s", pinned: bool = False, max_num_seqs: int = 0) -> tuple[str, ...]:
    """(extraArgs..., more spec lines) of model `index` in one of its edits."""
    more = VARIANTS[index % len(VARIANTS)] + POLICY % idle_timeout
    if pinned:
        more += "  staging: {pinned: true}\n"
    return (("--max-num-seqs", str(max_num_seqs)) if max_num_seqs else ()) + (more,)


class Soak:
    """The load, the injector and the watch over one daemon, for one run."""

    def __init__(self, daemon: DaemonProcess, config: Config):
        self.daemon = daemon
        self.config = config
        self.names = [f"m{i}" for i in range(config.models)]
        self.present = set(self.names)
        self.deleted: dict[str, list[tuple[float, float]]] = {n: [] for n in self.names}
        """Per model, the (from, to) windows it was absent (to: inf while it is)."""
        self.edits = {n: {"idle_timeout": "60s", "pinned": False, "max_num_seqs": 0} for n in self.names}
        self.kills: dict[str, list[float]] = {n: [] for n in self.names}
        self.report = Report()
        self.rng = random.Random(config.seed)
        self._done = asyncio.Event()
        self._recoveries: list[asyncio.Task] = []
        self._started = 0.0

    def write(self, name: str) -> None:
        *extra, more = model_spec(self.names.index(name), **self.edits[name])
        self.daemon.write_model(f"{name}.yaml", name, *extra, more=more)

    # -- the load --------------------------------------------------------------------------------
    async def client(self, session: aiohttp.ClientSession, rng: random.Random) -> None:
        while not self._done.is_set():
            if not self.present:
                await asyncio.sleep(0.5)
                continue
            model = rng.choice(sorted(self.present))
            body = {"model": model, "messages": QUESTION, "max_tokens": self.config.max_tokens, "temperature": 0}
            sent = time.monotonic()
            try:
                async with session.post(f"{self.daemon.url}/{model}/v1/chat/completions", json=body) as response:
                    payload = await response.json(content_type=None)
                    status, retry_after = response.status, response.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError) as exc:
                self.lost(model, f"no answer: {type(exc).__name__}: {exc}")
                continue
            self.classify(model, sent, status, retry_after, payload)
            if status in (429, 503) and retry_after:
                await asyncio.sleep(min(float(retry_after), 5.0))  # a client that honours it, briefly

    def classify(self, model: str, sent: float, status: int, retry_after: Optional[str], payload: dict) -> None:
        if status == 200:
            content = payload["choices"][0]["message"]["content"]
            if "Paris" in content:
                self.report.outcomes["answered"] += 1
                self.report.latencies.append(time.monotonic() - sent)
            else:
                self.report.outcomes["wrong"] += 1
                self.report.problems.append(f"{model}: wrong answer {content!r}")
        elif status in (429, 503) and retry_after:
            self.report.outcomes[str(status)] += 1
        elif status == 404 and any(start < time.monotonic() and sent < end for start, end in self.deleted[model]):
            self.report.outcomes["404-deleted"] += 1
        else:
            self.lost(model, f"HTTP {status}{' without Retry-After' if status in (429, 503) else ''}: {payload}")

    def lost(self, model: str, why: str) -> None:
        self.report.outcomes["lost"] += 1
        self.report.problems.append(f"{model}: {why}")

    # -- the watch -------------------------------------------------------------------------------
    async def status(self, session: aiohttp.ClientSession, model: str) -> dict:
        async with session.get(f"{self.daemon.url}/{model}/status") as response:
            return await response.json(content_type=None) if response.status == 200 else {}

    async def watch(self, session: aiohttp.ClientSession) -> None:
        """/status of every model twice a second: `failed` must never be seen."""
        while not self._done.is_set():
            for model in sorted(self.present):
                state = (await self.status(session, model)).get("state")
                if state == "failed":
                    self.report.failed_seen.append(f"{model} at {time.monotonic() - self._started:.1f}s")
            await asyncio.sleep(0.5)

    async def engine_pid(self, session: aiohttp.ClientSession, model: str) -> Optional[int]:
        replicas = (await self.status(session, model)).get("replicas") or [{}]
        return replicas[0].get("pid")

    def recover(self, session: aiohttp.ClientSession, fault: Fault, old_pid: Optional[int]) -> None:
        """Time the model until it has an engine again other than `old_pid`, in the background."""
        async def wait() -> None:
            since = time.monotonic()
            while time.monotonic() - since < RECOVERY_S:
                if (await self.engine_pid(session, fault.model)) not in (None, old_pid):
                    fault.recovered_s = round(time.monotonic() - since, 2)
                    return
                await asyncio.sleep(0.25)
            fault.failed = f"no engine {RECOVERY_S:.0f}s after the fault"
        self._recoveries.append(asyncio.create_task(wait()))

    # -- the faults ------------------------------------------------------------------------------
    async def inject(self, session: aiohttp.ClientSession) -> None:
        kinds = list(self.config.faults)
        deadline = self._started + self.config.minutes * 60
        while kinds or (not self.config.faults and time.monotonic() < deadline):
            await asyncio.sleep(self.rng.expovariate(1 / self.config.fault_every))
            kind = kinds.pop(0) if self.config.faults else self.rng.choices(list(FAULTS), list(FAULTS.values()))[0]
            if not await self.fault(session, kind) and self.config.faults:
                kinds.insert(0, kind)  # nothing to inflict it on now (no engine running): later
        while not all(task.done() for task in self._recoveries):  # a re-add adds a recovery of its own
            await asyncio.gather(*self._recoveries)
        await asyncio.sleep(self.config.fault_every)  # the load goes on past the last recovery
        self._done.set()

    async def fault(self, session: aiohttp.ClientSession, kind: str) -> bool:
        """Inflict one fault of `kind`; False when no model could take it now."""
        now = time.monotonic()
        at = round(now - self._started, 1)
        if kind == "sighup":
            os.kill(self.daemon.proc.pid, signal.SIGHUP)
            self.report.faults.append(Fault(kind, "", at))
            return True
        candidates = sorted(self.present)
        if kind == "kill":
            candidates = [m for m in candidates
                          if sum(now - t < 600 for t in self.kills[m]) < self.config.kills_per_model]
        elif kind == "fill":
            candidates = [m for m in candidates if self.names.index(m) % len(VARIANTS) < 2]
        elif kind == "delete" and self.present != set(self.names):
            candidates = []  # one model away at a time
        pids = {m: await self.engine_pid(session, m) for m in candidates}
        if kind in ("kill", "stop", "edit-restart"):  # faults of a running engine
            candidates = [m for m in candidates if pids[m] is not None]
        if not candidates:
            return False
        model = self.rng.choice(candidates)
        fault = Fault(kind, model, at)
        self.report.faults.append(fault)
        pid, edits = pids[model], self.edits[model]
        if kind == "kill":
            self.kills[model].append(now)
            os.kill(pid, signal.SIGKILL)
            fault.detail = f"SIGKILL to EngineCore {pid}"
            self.recover(session, fault, pid)
        elif kind == "stop":
            stall = self.rng.uniform(2, 6)
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(stall)
            os.kill(pid, signal.SIGCONT)
            fault.detail = f"SIGSTOP to EngineCore {pid} for {stall:.1f}s"
        elif kind == "edit-live":  # read live: no new engine
            edits["idle_timeout"] = "90s" if edits["idle_timeout"] == "60s" else "60s"
            fault.detail = f"idleTimeout {edits['idle_timeout']}"
            self.write(model)
        elif kind == "edit-restart":  # an engine field: new engines
            edits["max_num_seqs"] = 64 if edits["max_num_seqs"] != 64 else 32
            fault.detail = f"--max-num-seqs {edits['max_num_seqs']}"
            self.write(model)
            self.recover(session, fault, pid)
        elif kind == "delete":
            self.present.discard(model)
            self.deleted[model].append((now, float("inf")))
            (self.daemon.models_dir / f"{model}.yaml").unlink()
            pause = self.rng.uniform(5, 15)
            fault.detail = f"file deleted for {pause:.1f}s"
            self._recoveries.append(asyncio.create_task(self.readd(session, model, pause)))
        elif kind == "fill":
            edits["pinned"] = not edits["pinned"]
            fault.detail = "staging.pinned: true (the host tier full for the other)" if edits["pinned"] else "unpinned"
            self.write(model)
        return True

    async def readd(self, session: aiohttp.ClientSession, model: str, pause: float) -> None:
        """Write the file again; the model is back once the daemon has read it (until then a 404
        is its true answer), and recovered once an engine runs."""
        await asyncio.sleep(pause)
        fault = Fault("readd", model, round(time.monotonic() - self._started, 1), "file written again")
        self.report.faults.append(fault)
        self.write(model)
        self.recover(session, fault, None)
        written = time.monotonic()
        while not await self.status(session, model):
            if time.monotonic() - written > RECOVERY_S:
                fault.failed = f"not known to the daemon {RECOVERY_S:.0f}s after its file was written"
                return
            await asyncio.sleep(0.1)
        start, _ = self.deleted[model][-1]
        self.deleted[model][-1] = (start, time.monotonic())
        self.present.add(model)

    # -- the run ---------------------------------------------------------------------------------
    async def run(self) -> Report:
        timeout = aiohttp.ClientTimeout(total=900)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._started = time.monotonic()
            rngs = [random.Random(self.config.seed * 1000 + i) for i in range(self.config.clients)]
            await asyncio.gather(self.inject(session), self.watch(session),
                                 *(self.client(session, rng) for rng in rngs))
        self.report.seconds = time.monotonic() - self._started
        return self.report


def daemon_memory(daemon: DaemonProcess) -> int:
    return private_memory([daemon.proc.pid])


def engine_cores(daemon: DaemonProcess) -> int:
    import psutil

    return sum(p.name().startswith("VLLM::EngineCore")
               for p in psutil.Process(daemon.proc.pid).children(recursive=True))


def answers(daemon: DaemonProcess, model: str) -> bool:
    body = {"messages": QUESTION, "max_tokens": 8, "temperature": 0}
    return daemon.request("POST", f"/{model}/v1/chat/completions", json.dumps(body).encode())[0] == 200


def soak(daemon: DaemonProcess, config: Config) -> Report:
    """Write the models, start the daemon, warm every engine up, run the soak, and measure the
    daemon's memory before and after (settled: no request in flight, 10 s on)."""
    run = Soak(daemon, config)
    for name in run.names:
        run.write(name)
    daemon.start()
    for name in run.names:  # every engine built (and converted) before the clock starts
        daemon.wait_for(lambda n=name: answers(daemon, n), 900, f"{name} to answer")
    time.sleep(5)
    run.report.memory_before = daemon_memory(daemon)
    report = asyncio.run(run.run())
    for name in run.names:
        daemon.wait_for(lambda n=name: answers(daemon, n), 900, f"{name} to answer after the soak")
    time.sleep(10)
    report.memory_after = daemon_memory(daemon)
    report.engines_after = engine_cores(daemon)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--models", type=int, default=Config.models)
    parser.add_argument("--clients", type=int, default=Config.clients)
    parser.add_argument("--minutes", type=float, default=Config.minutes)
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--fault-every", type=float, default=Config.fault_every, help="mean seconds between faults")
    parser.add_argument("--share", default=Config.share, help="--cpu-memory-share of the daemon")
    parser.add_argument("--json", type=Path, help="write the summary and every fault here")
    args = parser.parse_args()
    config = Config(models=args.models, clients=args.clients, minutes=args.minutes, seed=args.seed,
                    fault_every=args.fault_every, share=args.share)
    daemon = DaemonProcess(Path(mkdtemp(prefix="chaos-")), args.checkpoint.resolve(), {"HF_HUB_OFFLINE": "1"},
                           flags=("--cpu-memory-share", config.share, "--host-tier-size", config.host_tier_size))
    try:
        report = soak(daemon, config)
    finally:
        daemon.kill()
        print(f"daemon log: {daemon.log_path}")
    summary = report.summary()
    print(json.dumps({k: v for k, v in summary.items() if k != "problems"}, indent=2, default=str))
    for fault in report.faults:
        recovered = f", recovered in {fault.recovered_s}s" if fault.recovered_s is not None else ""
        print(f"  {fault.at:7.1f}s {fault.kind:7s} {fault.model:3s} {fault.detail}{recovered} {fault.failed}")
    for problem in report.problems[:20]:
        print("  !", problem)
    if args.json:
        args.json.write_text(json.dumps({**summary, "faults": [asdict(f) for f in report.faults],
                                         "config": asdict(config)}, indent=2, default=str))
    if not report.ok:
        raise SystemExit("the soak lost, misanswered or failed something: see above")


if __name__ == "__main__":
    main()
