"""A bursty multi-model trace through gthreadd, against a dedicated `vllm serve`, and the same
trace simulated under gthreadd's scheduler and two peers' policies.

`run` does all of it in one go, on the demo checkpoint under four Model names (m0..m3) on a CPU
capacity that holds one awake (`--cpu-memory-share`): it replays a seeded trace (bench/trace_gen.py)
through gthreadd's port with the openai client, streaming, then the same trace through one `vllm
serve` with every request sent to its one model; it measures the costs a simulation needs (boot,
wake, sleep, stop, per-token time, batching) in that same run, and simulates the trace under
gthreadd's real decision core, a llama-swap-style and an Ollama-style policy (bench/trace_sim.py).
Goodput is the number of requests answered with a time to first token (TTFT) within the SLO, which
is 3x an awake model's TTFT plus one wake (both measured in the run, before the trace).

    .venv/bin/python bench/trace.py run --checkpoint .state/checkpoints/smollm2-135m-instruct
    .venv/bin/python bench/trace.py generate --seed 3          # the trace alone
    .venv/bin/python bench/trace.py simulate --costs run.json  # the simulations again, from a run's --json
"""

import argparse
import asyncio
import dataclasses
import datetime
import json
import math
import re
import shlex
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Optional

import openai
from prometheus_client.parser import text_string_to_metric_families

from serving_vs_vllm import BIN, HOST, ensure_port_free, gthreadd_ready, model_file, running, vllm_ready
from trace_gen import Periodic, Request, TraceParams, generate, summary
from trace_sim import (
    Costs, LlamaSwapPolicy, OllamaPolicy, Outcome, Simulation, gthreadd_core, models_that_fit,
)

from gthreadd.runtime.devices import cpu_device
from gthreadd.spec.duration import parse_duration

DEDICATED = "dedicated"
"""The one model name of the `vllm serve` baseline; every request of the trace goes to it."""
REAL_RUNS = {DEDICATED: "dedicated vllm serve", "gthreadd": "gthreadd"}
"""Each real run's name in the report, its plot and its --json's outcomes ("<name> real")."""
DEFAULT_COSTS = Costs(boot_s=24.5, wake_s=0.003, wake_deep_s=3.57, sleep_s=0.88, deepen_s=1.34,
                      held_bytes=1265 << 20, stop_s=0.47, prefill_s=0.076, token_s=0.032, batch_slowdown=0.035,
                      prefill_slowdown=0.40)
"""For `simulate` without a run's measurements: what `run` measured on 2026-11-24 (bench/README.md)."""
SERVER_START_S = 24.0
"""For `simulate` without a run: a `vllm serve` start, what the peers pay for every load (same run)."""
DEFAULT_SWITCH_TTFT_S = 0.50
"""For `simulate` without a run: a request to a sleeping model (same run)."""
SETTLE_S = 5.0
"""Quiet time between the warm-up and the trace, in the run and in the simulation."""


@dataclasses.dataclass(frozen=True)
class Measured:
    """What the run measured besides the trace: the SLO's parts and the simulator's costs."""

    awake_ttft_s: float
    switch_ttft_s: float
    """A request to a sleeping model while another, idle, is awake: its sleep, a wake, a prefill."""
    costs: Costs
    server_start_s: float
    """A `vllm serve` process from start to ready: the peers' load (they start servers)."""
    server_idle_cost_s: float = 0.0
    server_idle_s: float = 1.0
    """Costs.idle_cost's numbers for `vllm serve` (the dedicated run; `costs` has gthreadd's own,
    fitted apart: on 12-06 either was the larger, run to run)."""
    server_stop_s: Optional[float] = None
    """A `vllm serve` process's stop, what the peers pay to unload (runs before 2026-12-07 had one
    stop for all: `costs.stop_s`)."""

    @property
    def server_costs(self) -> Costs:
        """What the peers' policies and the dedicated simulation pay: they start and stop `vllm serve`."""
        stop_s = self.costs.stop_s if self.server_stop_s is None else self.server_stop_s
        return dataclasses.replace(self.costs, boot_s=self.server_start_s, stop_s=stop_s,
                                   idle_cost_s=self.server_idle_cost_s, idle_s=self.server_idle_s)

    @property
    def one_wake_s(self) -> float:
        return self.switch_ttft_s - self.awake_ttft_s

    @property
    def slo_s(self) -> float:
        return 3 * self.awake_ttft_s + self.one_wake_s


def warmup_sequence(models: list[str]) -> list[str]:
    """Boot every model (the least popular first, so the most popular is awake when the trace
    starts), three requests to the awake one (awake TTFT), then four switches (a wake's TTFT)."""
    return list(reversed(models)) + [models[0]] * 3 + [models[1], models[0]] * 2


def spec_lines(args: argparse.Namespace) -> str:
    return (f"  sleep: {{idleTimeout: {args.idle_timeout}, drainTimeout: {args.drain_timeout}}}\n"
            f"  fairness: {{minRuntime: {args.min_runtime}, maxWaitTime: {args.max_wait}}}\n")


def model_files(args: argparse.Namespace, checkpoint: Path) -> dict[str, str]:
    return {f"m{i}": model_file(f"m{i}", checkpoint, args.utilization, spec_lines(args)) for i in range(args.models)}


# -- the real run ----------------------------------------------------------------------------------
async def ask(client, model: str, max_tokens: int, prompt: str = "What is the capital of France?") -> tuple:
    """(TTFT, end-to-end seconds, tokens) of one streamed chat completion of exactly max_tokens."""
    started = time.monotonic()
    first: Optional[float] = None
    chunks, usage = 0, None
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0,
        stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.monotonic()
            chunks += 1
    if first is None:
        raise RuntimeError(f"{model}: the stream ended without a token")
    return first - started, time.monotonic() - started, usage or chunks


async def replay(client, trace: list[Request], model_of: Callable[[str], str]) -> list[Outcome]:
    """Send each request at its time from now, all concurrently; errors are outcomes, not failures."""
    start = time.monotonic() + 0.5

    async def one(request: Request) -> Outcome:
        await asyncio.sleep(max(0.0, start + request.at - time.monotonic()))
        outcome = Outcome(request.id, request.model, request.at)
        try:
            outcome.ttft, outcome.e2e, _ = await ask(client, model_of(request.model), request.max_tokens,
                                                     request.prompt)
            outcome.status = 200
        except openai.APIStatusError as exc:
            outcome.status = exc.status_code
        except (openai.APIError, RuntimeError):
            outcome.status = 502  # a stream that broke off, or ended in an error event (an abort)
        return outcome

    return list(await asyncio.gather(*(one(r) for r in trace)))


def openai_client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0, timeout=900)


def samples(metrics_text: str, name: str) -> dict[tuple, float]:
    """A /metrics family's samples: sorted labels -> value."""
    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(metrics_text)
            for s in family.samples if s.name == name}


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def level_costs(events: dict[str, list[dict]]) -> tuple[dict[str, float], dict[str, int]]:
    """From each Model's events: mean seconds of sleeps (to level 1), deepenings (level 1 to 2),
    wakes from level 1 and from level 2; and the level each model sleeps at in the end."""
    seconds: dict[str, list[float]] = {"sleep": [], "deepen": [], "wake": [], "wake_deep": []}
    final: dict[str, int] = {}
    for model, items in events.items():
        level: Optional[int] = None  # the level the model sleeps at; None while awake or not yet known
        for event in items:
            slept = re.search(r"asleep at level (\d) .* in ([\d.]+)s", event["message"])
            woke = re.search(r": awake\b.* in ([\d.]+)s$", event["message"])  # ", its weights read again", a reason
            if event["reason"] == "Stopped":
                level = None
            elif event["reason"] == "Slept" and slept:
                kind = "deepen" if level == 1 and slept[1] == "2" else "sleep"
                seconds[kind] += [float(slept[2])] * event["count"]
                level = int(slept[1])
            elif event["reason"] == "Woke" and woke:
                if level is not None:
                    seconds["wake_deep" if level == 2 else "wake"] += [float(woke[1])] * event["count"]
                level = None
        if level is not None:
            final[model] = level
    return {k: statistics.fmean(v) for k, v in seconds.items() if v}, final


def operation_means(metrics_text: str) -> dict[str, float]:
    """operation -> mean seconds over every model, from gthread_engine_operation_seconds."""
    totals: dict[str, list[float]] = {}
    for i, part in enumerate(("_sum", "_count")):
        for labels, value in samples(metrics_text, "gthread_engine_operation_seconds" + part).items():
            totals.setdefault(dict(labels)["operation"], [0.0, 0.0])[i] += value
    return {op: total / count for op, (total, count) in totals.items() if count}


def slowdowns(outcomes: list[Outcome], sent: dict[str, float], tokens: dict[str, int], prefill_s: float,
              token_s: float) -> tuple[float, float]:
    """The EngineTimeModel's batching numbers (prefill, decode), fitted to a run: each request's
    time to its first token, and per token after it, against the mean number of requests in
    flight over that time, by least squares through (1 stream, the time alone)."""
    spans = [(sent[o.id], sent[o.id] + o.e2e) for o in outcomes if o.status == 200]

    def fit(points: list[tuple[float, float]]) -> float:
        den = sum((streams - 1) ** 2 for streams, _ in points)
        return max(0.0, sum((slow - 1) * (streams - 1) for streams, slow in points) / den) if den else 0.0

    def streams(a: float, b: float) -> float:
        return sum(max(0.0, min(b, e) - max(a, s)) for s, e in spans) / (b - a)

    prefill, decode = [], []
    for o in outcomes:
        if o.status != 200 or o.ttft <= 0:
            continue
        start, first, end = sent[o.id], sent[o.id] + o.ttft, sent[o.id] + o.e2e
        prefill.append((streams(start, first), o.ttft / prefill_s))
        if tokens[o.id] > 1 and end > first:
            decode.append((streams(first, end), (o.e2e - o.ttft) / (tokens[o.id] - 1) / token_s))
    return fit(prefill), fit(decode)


def idle_costs(outcomes: list[Outcome], sent: dict[str, float], expected: dict[str, Optional[float]],
               below: float) -> tuple[float, float]:
    """Costs.idle_cost's two numbers (most, seconds), fitted to a run: each request that found
    nothing in flight, what its time to its first token exceeds `expected` (its simulated one, with
    no idle cost: the wake, switch or batch the simulation already charges is not charged twice)
    against the quiet before it; least squares over time constants from 0.5 to ~150 s. A request
    whose simulated time is `below` or more away from the measured one (a boot on one side only)
    says nothing about quiet: left out."""
    points, busy_until = [], None
    for o in sorted((o for o in outcomes if o.status == 200), key=lambda o: sent[o.id]):
        start, sim = sent[o.id], expected.get(o.id)
        if busy_until is not None and start > busy_until and sim is not None and abs(o.ttft - sim) < below:
            points.append((start - busy_until, o.ttft - sim))
        busy_until = max(busy_until or start, start + o.e2e)
    best = (math.inf, 0.0, 1.0)
    for tau in (0.5 * 1.1**k for k in range(60)):
        shape = [-math.expm1(-quiet / tau) for quiet, _ in points]
        den = sum(x * x for x in shape)
        most = max(0.0, sum(x * excess for x, (_, excess) in zip(shape, points)) / den) if den else 0.0
        error = sum((excess - most * x) ** 2 for x, (_, excess) in zip(shape, points))
        if error < best[0]:
            best = (error, most, tau)
    return best[1], best[2]


def held_asleep(base_url: str, timeout_s: float = 180) -> dict[str, float]:
    """Each model's device bytes while every model sleeps (the same in two reads a second apart: a
    pre-wake may come and go), as the daemon measured them after its last sleep."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        text = get_text(f"{base_url}/metrics")
        busy = any(v and dict(k)["state"] != "sleeping" for k, v in samples(text, "gthread_model_state").items())
        held = None if busy else {dict(k)["model"]: v for k, v in samples(text, "gthread_replica_memory_bytes").items()
                                  if dict(k)["memory"] == "device0"}
        if held is not None and held == last:
            return held
        last = held
        time.sleep(1)
    raise RuntimeError(f"the models were not all asleep within {timeout_s:.0f} s of the trace's end")


def run_gthreadd(args: argparse.Namespace, trace: list[Request], workdir: Path) -> tuple[list[Outcome], dict]:
    base_url = f"http://{HOST}:{args.port_base}"
    models_dir, log = workdir / "models.d", workdir / "gthreadd.log"
    models_dir.mkdir()
    for name, text in model_files(args, args.checkpoint).items():
        (models_dir / f"{name}.yaml").write_text(text)
    argv = [str(BIN / "gthreadd"), "--models-dir", str(models_dir), "--state-dir", str(workdir / "state"),
            "--listen", f"{HOST}:{args.port_base}", "--host-tier-dir", str(workdir / "host-tier"),
            "--cpu-memory-share", str(args.share)]
    models = [f"m{i}" for i in range(args.models)]

    async def session() -> tuple[list[Outcome], dict]:
        async with openai_client(base_url) as client:
            return await calibrate_and_replay(client)

    async def calibrate_and_replay(client) -> tuple[list[Outcome], dict]:
        probes: dict[str, list[tuple]] = {"awake": [], "switch": []}
        previous = None
        for n, model in enumerate(warmup_sequence(models)):
            if n >= len(models) + 3 and model != previous:
                await asyncio.sleep(args.min_runtime_s)  # the awake model may be preempted
            kind = "boot" if n < len(models) else "awake" if model == previous else "switch"
            result = await ask(client, model, 16)
            probes.setdefault(kind, []).append(result)
            print(f"  warm-up {model} ({kind}): TTFT {result[0]:.2f} s", file=sys.stderr, flush=True)
            previous = model
        await asyncio.sleep(SETTLE_S)
        print(f"  replaying {len(trace)} requests over {args.duration:.0f} s", file=sys.stderr, flush=True)
        return await replay(client, trace, lambda m: m), probes

    with running("gthreadd", argv, log, gthreadd_ready(base_url, log, ("m0",))):
        outcomes, probes = asyncio.run(session())
        operations = operation_means(get_text(f"{base_url}/metrics"))
        held_by_model = held_asleep(base_url)
        events = {m: json.loads(get_text(f"{base_url}/apis/greenthread.ai/v1alpha1/models/{m}/events"))["items"]
                  for m in models}
        levels, final = level_costs(events)
        held = {level: [held_by_model[m] for m, at in final.items() if at == level and m in held_by_model]
                for level in (1, 2)}
    return outcomes, {"probes": probes, "operations": operations, "levels": levels,
                      "held_bytes": int(statistics.fmean(held[1])) if held[1] else 0,
                      "held_deep_bytes": int(statistics.fmean(held[2])) if held[2] else 0}


def run_vllm(args: argparse.Namespace, trace: list[Request], workdir: Path) -> tuple[list[Outcome], float, float]:
    """The trace against one `vllm serve`; also its start-to-ready and stop seconds."""
    port = args.port_base + 1
    base_url = f"http://{HOST}:{port}"
    argv = [str(BIN / "python"), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(args.checkpoint), "--served-model-name", DEDICATED, "--dtype", "bfloat16",
            "--gpu-memory-utilization", args.utilization, "--max-model-len", "4096", "--enforce-eager",
            "--disable-log-stats", "--disable-uvicorn-access-log", "--host", HOST, "--port", str(port)]

    async def session() -> list[Outcome]:
        async with openai_client(base_url) as client:
            await ask(client, DEDICATED, 1)
            await asyncio.sleep(SETTLE_S)
            print(f"  replaying {len(trace)} requests over {args.duration:.0f} s", file=sys.stderr, flush=True)
            return await replay(client, trace, lambda m: DEDICATED)

    started = time.monotonic()
    with running("vllm", argv, workdir / "vllm.log", vllm_ready(base_url)):
        start_s = time.monotonic() - started
        outcomes = asyncio.run(session())
        stopping = time.monotonic()
    return outcomes, start_s, time.monotonic() - stopping


def measured_costs(gthreadd: dict, dedicated: list[Outcome], trace: list[Request], server_start_s: float,
                   server_stop_s: float) -> Measured:
    """Everything but the idle costs (fit_idle_costs: they are fitted against the simulation)."""
    awake = gthreadd["probes"]["awake"]
    awake_ttft = statistics.median(ttft for ttft, _, _ in awake)
    token_s = statistics.median((e2e - ttft) / (tokens - 1) for ttft, e2e, tokens in awake)
    ops, levels = gthreadd["operations"], gthreadd["levels"]
    sent = {r.id: r.at for r in trace}
    tokens = {r.id: r.max_tokens for r in trace}
    prefill_slowdown, batch_slowdown = slowdowns(dedicated, sent, tokens, awake_ttft, token_s)
    costs = Costs(boot_s=ops["boot"], wake_s=levels.get("wake", ops["wake"]),
                  wake_deep_s=levels.get("wake_deep", ops["wake"]), sleep_s=levels.get("sleep", ops["sleep"]),
                  deepen_s=levels.get("deepen", ops["sleep"]), held_bytes=gthreadd["held_bytes"],
                  held_deep_bytes=gthreadd["held_deep_bytes"], stop_s=ops.get("stop", server_stop_s),
                  prefill_s=awake_ttft, token_s=token_s, batch_slowdown=batch_slowdown,
                  prefill_slowdown=prefill_slowdown)
    switch_ttft = statistics.median(ttft for ttft, _, _ in gthreadd["probes"]["switch"])
    return Measured(awake_ttft, switch_ttft, costs, server_start_s, server_stop_s=server_stop_s)


def fit_idle_costs(args: argparse.Namespace, trace: list[Request], measured: Measured,
                   real: dict[str, list[Outcome]]) -> Measured:
    """`measured` with each side's idle cost fitted to what its simulation without one misses on the
    requests that found the machine quiet."""
    quiet = dataclasses.replace(measured, costs=dataclasses.replace(measured.costs, idle_cost_s=0.0),
                                server_idle_cost_s=0.0)
    sims = simulate(args, trace, quiet)
    sent = {r.id: r.at for r in trace}

    def fitted(name: str) -> tuple[float, float]:
        return idle_costs(real[name], sent, {o.id: o.ttft for o in sims[name]}, below=measured.costs.boot_s / 2)
    (most, tau), (server_most, server_tau) = fitted("gthreadd"), fitted(DEDICATED)
    return dataclasses.replace(measured, costs=dataclasses.replace(measured.costs, idle_cost_s=most, idle_s=tau),
                               server_idle_cost_s=server_most, server_idle_s=server_tau)


# -- the simulations -------------------------------------------------------------------------------
def simulate(args: argparse.Namespace, trace: list[Request], measured: Measured) -> dict[str, list[Outcome]]:
    files = model_files(args, args.checkpoint)
    device = cpu_device(args.share)
    models = list(files)
    warmup = warmup_sequence(models)
    peers = measured.server_costs
    core, upserts = gthreadd_core(files, device)
    results = {"gthreadd": Simulation(core, measured.costs, upserts).run(trace, warmup, SETTLE_S)}
    _, upserts = gthreadd_core(files, device)
    results["llama-swap-style"] = Simulation(LlamaSwapPolicy(), peers, upserts).run(trace, warmup, SETTLE_S)
    results["ollama-style"] = Simulation(OllamaPolicy(models_that_fit(files, device), args.keep_alive),
                                         peers, upserts).run(trace, warmup, SETTLE_S)
    _, one = gthreadd_core({DEDICATED: model_file(DEDICATED, args.checkpoint, args.utilization)}, device)
    results[DEDICATED] = Simulation(LlamaSwapPolicy(), peers, one).run(
        [dataclasses.replace(r, model=DEDICATED) for r in trace], [DEDICATED], SETTLE_S)
    return results


def other_seeds(args: argparse.Namespace, measured: Measured) -> dict[str, list[int]]:
    """Simulated goodput of each policy on the next seeds' traces: how typical the recorded one is."""
    goodputs: dict[str, list[int]] = {}
    for seed in range(args.seed + 1, args.seed + 1 + args.other_seeds):
        trace = generate(dataclasses.replace(trace_params(args), seed=seed))
        for name, outcomes in simulate(args, trace, measured).items():
            goodputs.setdefault(name, []).append(good(outcomes, measured.slo_s))
    return goodputs


# -- reporting -------------------------------------------------------------------------------------
def good(outcomes: list[Outcome], slo_s: float) -> int:
    return sum(1 for o in outcomes if o.status == 200 and o.ttft is not None and o.ttft <= slo_s)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else ("inf" if a else "n/a")


def table(rows: list[tuple[str, str, list[Outcome]]], slo_s: float) -> list[str]:
    line = "{:<22}{:<6}{:>9}{:>7}{:>9}{:>10}{:>10}{:>8}"
    lines = [line.format("policy", "run", "requests", "good", "goodput", "p50 TTFT", "p90 TTFT", "failed")]
    for name, kind, outcomes in rows:
        ttfts = sorted(o.ttft for o in outcomes if o.ttft is not None)
        p50 = statistics.median(ttfts) if ttfts else float("nan")
        p90 = statistics.quantiles(ttfts, n=10, method="inclusive")[8] if len(ttfts) > 1 else p50
        n = good(outcomes, slo_s)
        lines.append(line.format(name, kind, len(outcomes), n, f"{n / max(len(outcomes), 1):.1%}",
                                 f"{p50:.2f} s", f"{p90:.2f} s", sum(o.status != 200 for o in outcomes)))
    return lines


SOON_S = 2.0
"""A request that came less than this after the one before it came inside a busy period."""


def situations(trace: list[Request]) -> dict[str, str]:
    """Each request's place in the trace, the same under every policy: whether the request before
    it was for another model (under gthreadd, a switch) or for its own, and whether it came within
    SOON_S (inside a busy period) or after a quiet. Where gthreadd loses to the dedicated engine is
    read off this, by situation."""
    place, before = {}, None
    for request in sorted(trace, key=lambda r: r.at):
        if before is None:
            place[request.id] = "the first"
        else:
            whose = "another model" if before.model != request.model else "its own model"
            when = f"< {SOON_S:g} s" if request.at - before.at < SOON_S else f">= {SOON_S:g} s"
            place[request.id] = f"after {whose} {when}"
        before = request
    return place


def by_situation(rows: list[tuple[str, str, list[Outcome]]], trace: list[Request], slo_s: float) -> list[str]:
    """Median TTFT and misses of the SLO per situation (`situations`), for gthreadd and dedicated."""
    rows = [row for row in rows if row[0] in ("gthreadd", "dedicated", "dedicated vllm serve")]
    place = situations(trace)
    lines = ["by situation (the request before it: whose, how long before), median TTFT / requests over the SLO:",
             f"  {'situation':<30}{'n':>4}" + "".join(f"{name.split()[0] + ' ' + kind:>20}" for name, kind, _ in rows)]
    for situation in sorted(set(place.values())):
        cells = []
        for _, _, outcomes in rows:
            mine = [o for o in outcomes if place.get(o.id) == situation]
            ttfts = [o.ttft for o in mine if o.ttft is not None]
            median = statistics.median(ttfts) if ttfts else float("nan")
            cells.append(f"{median:.2f} s / {len(mine) - good(mine, slo_s)}")
        n = sum(1 for p in place.values() if p == situation)
        lines.append(f"  {situation:<30}{n:>4}" + "".join(f"{cell:>20}" for cell in cells))
    return lines


def per_model(ours: list[Outcome], theirs: list[Outcome], slo_s: float) -> str:
    models = sorted({o.model for o in ours}, key=lambda m: int(m[1:]))
    parts = []
    for m in models:
        a, b = [o for o in ours if o.model == m], [o for o in theirs if o.model == m]
        parts.append(f"{m} {good(a, slo_s)}/{good(b, slo_s)} = {ratio(good(a, slo_s), good(b, slo_s))}")
    return ", ".join(parts)


def plot(path: Path, panels: list[tuple[str, list[Outcome]]], slo_s: float, title: str) -> None:
    """TTFT against arrival time, a panel per policy; unanswered requests as x on the top edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, sharex=True, sharey=True, figsize=(11, 1.9 * len(panels) + 0.8))
    top = max([o.ttft for _, outs in panels for o in outs if o.ttft is not None] + [slo_s]) * 1.5
    models = sorted({o.model for _, outs in panels for o in outs}, key=lambda m: int(m[1:]))
    colours = {m: f"C{i}" for i, m in enumerate(models)}
    for ax, (name, outcomes) in zip(axes, panels):
        for m in models:
            done = [o for o in outcomes if o.model == m and o.ttft is not None and o.status == 200]
            lost = [o for o in outcomes if o.model == m and (o.ttft is None or o.status != 200)]
            ax.scatter([o.at for o in done], [o.ttft for o in done], s=12, color=colours[m], label=m)
            ax.scatter([o.at for o in lost], [top / 1.2] * len(lost), s=20, marker="x", color=colours[m])
        ax.axhline(slo_s, color="grey", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_ylim(0.05, top)
        ax.set_ylabel("TTFT (s)")
        ax.set_title(f"{name}: {good(outcomes, slo_s)} of {len(outcomes)} within the SLO ({slo_s:.2f} s, dashed)",
                     fontsize=9, loc="left")
    axes[0].legend(loc="upper right", fontsize=7, ncol=len(models))
    axes[-1].set_xlabel("arrival (s from the trace's start)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(args: argparse.Namespace, params: TraceParams, trace: list[Request], measured: Measured,
           sims: dict[str, list[Outcome]], real: Optional[dict[str, list[Outcome]]]) -> dict:
    slo = measured.slo_s
    c = measured.costs
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    device = cpu_device(args.share)
    print(f"# trace.py {args.command}  {date}")
    print(f"# command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"# trace: {params.describe()}")
    print(f"# {summary(trace)}")
    print(f"# Models m0..m{args.models - 1} on {args.checkpoint.name}: gpuMemoryUtilization {args.utilization}, "
          f"{spec_lines(args).strip().replace(chr(10), ',')}; --cpu-memory-share {args.share} "
          f"({models_that_fit(model_files(args, args.checkpoint), device)} of {args.models} fit awake)")
    print(f"# SLO: 3 x awake TTFT {measured.awake_ttft_s:.3f} s + one wake {measured.one_wake_s:.3f} s "
          f"(a request to a sleeping model, {measured.switch_ttft_s:.3f} s, less the awake TTFT) = {slo:.3f} s")
    print(f"# costs: gthreadd boot {c.boot_s:.2f} s, wake {c.wake_s:.2f} s (from level 2: {c.wake_deep_s:.2f} s), "
          f"sleep {c.sleep_s:.2f} s (deepening to level 2: {c.deepen_s:.2f} s, a sleeper holds "
          f"{c.held_bytes / 2**30:.2f} GiB at level 1, {c.held_deep_bytes / 2**30:.2f} at level 2); vllm serve "
          f"start {measured.server_start_s:.2f} s, stop {c.stop_s:.2f} s; prefill {c.prefill_s:.3f} s, "
          f"token {c.token_s * 1000:.1f} ms; per extra stream, prefill slowdown {c.prefill_slowdown:.3f}, "
          f"decode slowdown {c.batch_slowdown:.3f}; the first request after t s of quiet "
          f"{c.idle_cost_s:.2f} s x (1 - exp(-t / {c.idle_s:.1f} s)) more (vllm serve: "
          f"{measured.server_idle_cost_s:.2f} s, {measured.server_idle_s:.1f} s)")
    rows = []
    if real:
        rows += [(name, "real", real[run]) for run, name in REAL_RUNS.items()]
    rows += [(name if name != DEDICATED else "dedicated", "sim", outs) for name, outs in sims.items()]
    print("\n".join(table(rows, slo)))
    print("\n".join(by_situation(rows, trace, slo)))
    g_sim = good(sims["gthreadd"], slo)
    out = {"date": date, "command": shlex.join(sys.argv), "params": dataclasses.asdict(params),
           "measured": {**dataclasses.asdict(measured), "slo_s": slo},
           "goodput": {f"{name} {kind}": good(outs, slo) for name, kind, outs in rows}}
    if real:
        g_real, d_real = good(real["gthreadd"], slo), good(real[DEDICATED], slo)
        print(f"gthreadd / dedicated vllm serve (real): {ratio(g_real, d_real)}  (goal >= 0.9)")
        print(f"  per model, gthreadd/dedicated: {per_model(real['gthreadd'], real[DEDICATED], slo)}")
        gap = abs(g_sim - g_real) / g_real if g_real else float("inf")
        print(f"gthreadd simulated / measured goodput: {g_sim}/{g_real} = {ratio(g_sim, g_real)}, gap {gap:.1%} "
              f"(goal within 15%)")
        out["ratios"] = {"gthreadd_over_dedicated_real": g_real / d_real if d_real else None, "sim_gap": gap}
    for peer in ("llama-swap-style", "ollama-style"):
        print(f"gthreadd / {peer} (sim): {g_sim}/{good(sims[peer], slo)} = {ratio(g_sim, good(sims[peer], slo))}"
              + ("  (goal >= 1.5)" if peer.startswith("llama") else ""))
    print(f"gthreadd simulated / dedicated simulated: {ratio(g_sim, good(sims[DEDICATED], slo))}")
    if real:
        sim = {o.id: o for o in sims["gthreadd"]}
        diffs = sorted(abs(sim[o.id].ttft - o.ttft) for o in real["gthreadd"]
                       if o.ttft is not None and sim[o.id].ttft is not None)
        print(f"gthreadd per request, |simulated - measured| TTFT: median {statistics.median(diffs):.2f} s, "
              f"p90 {statistics.quantiles(diffs, n=10, method='inclusive')[8]:.2f} s")
    print(f"at twice the SLO ({2 * slo:.2f} s): " + ", ".join(f"{name} {kind} {good(outs, 2 * slo)}"
                                                            for name, kind, outs in rows))
    spread = other_seeds(args, measured)
    out["other_seeds"] = spread
    if args.other_seeds:
        ours = spread["gthreadd"]
        per_seed = [a / b for a, b in zip(ours, spread[DEDICATED]) if b]
        print(f"simulated on seeds {args.seed + 1}..{args.seed + args.other_seeds} with these costs, gthreadd's "
              f"goodput over all of them / dedicated {ratio(sum(ours), sum(spread[DEDICATED]))} (per seed "
              f"{min(per_seed):.2f} to {max(per_seed):.2f}), / llama-swap-style "
              f"{ratio(sum(ours), sum(spread['llama-swap-style']))}, / ollama-style "
              f"{ratio(sum(ours), sum(spread['ollama-style']))}")
    if args.plot:
        panels = [(f"{name} (real)", real[run]) for run, name in REAL_RUNS.items()] if real else []
        panels += [(f"{name} (sim)", outs) for name, outs in sims.items() if name != DEDICATED]
        plot(args.plot, panels, slo, f"seed {params.seed}: {summary(trace)}")
        print(f"plot: {args.plot}")
    out["outcomes"] = {f"{name} {kind}": [dataclasses.asdict(o) for o in outs] for name, kind, outs in rows}
    return out


# -- the command line ------------------------------------------------------------------------------
def trace_params(args: argparse.Namespace) -> TraceParams:
    periodic = tuple(Periodic(int(m), float(p), int(b)) for m, p, b in (s.split(":") for s in args.periodic))
    return TraceParams(models=args.models, duration_s=args.duration, rate=args.rate, zipf=args.zipf, cv=args.cv,
                       min_tokens=args.min_tokens, max_tokens=args.max_tokens, periodic=periodic, seed=args.seed)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {name: sub.add_parser(name) for name in ("run", "simulate", "generate")}
    for name, p in commands.items():
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--models", type=int, default=4)
        p.add_argument("--duration", type=float, default=300.0, help="seconds of trace")
        p.add_argument("--rate", type=float, default=0.3, help="requests/s over all models")
        p.add_argument("--zipf", type=float, default=1.0, help="popularity exponent")
        p.add_argument("--cv", type=float, default=3.0, help="CV of each model's inter-arrival times")
        p.add_argument("--min-tokens", type=int, default=16)
        p.add_argument("--max-tokens", type=int, default=32)
        p.add_argument("--periodic", action="append", default=[], metavar="MODEL:PERIOD:BURST",
                       help="model index MODEL gets BURST requests every PERIOD seconds instead")
        if name == "generate":
            continue
        p.add_argument("--checkpoint", type=Path, default=Path(".state/checkpoints/smollm2-135m-instruct"))
        p.add_argument("--share", type=float, default=0.38,
                       help="--cpu-memory-share: 0.38 holds one awake Model of 0.20 and, beside it, the weights "
                            "of three level-1 sleepers (0.3: one)")
        p.add_argument("--utilization", default="0.20", help="each Model's gpuMemoryUtilization")
        p.add_argument("--idle-timeout", default="5s")
        p.add_argument("--drain-timeout", default="0s")
        p.add_argument("--min-runtime", default="0s")
        p.add_argument("--max-wait", default="0s")
        p.add_argument("--keep-alive", type=float, default=300.0, help="the Ollama-style policy's keep-alive")
        p.add_argument("--other-seeds", type=int, default=9, help="also simulate this many further seeds")
        p.add_argument("--plot", type=lambda value: Path(value) if value else None,
                       default=Path(tempfile.gettempdir()) / "trace.png",
                       help="TTFT over time per policy (needs the bench extra's matplotlib); '' for none")
        p.add_argument("--json", type=Path, help="write parameters, costs and every outcome here")
    commands["run"].add_argument("--port-base", type=int, default=8620, help="gthreadd gets this port, vllm the next")
    commands["simulate"].add_argument("--costs", type=Path, help="a run's --json, for its measured costs (and, where "
                                      "it holds the run's outcomes, its idle costs fitted again and the gap to them)")
    args = parser.parse_args()
    if args.command != "generate":
        args.checkpoint = args.checkpoint.resolve()
        args.min_runtime_s = parse_duration(args.min_runtime).total_seconds()
    return args


def main() -> None:
    args = parse_args()
    params = trace_params(args)
    trace = generate(params)
    if args.command == "generate":
        print(f"# trace: {params.describe()}\n# {summary(trace)}")
        for r in trace:
            print(f"{r.at:9.3f}  {r.id}  {r.model}  {r.max_tokens:3d}  {r.prompt}")
        return
    if args.command == "simulate":
        real = None
        if args.costs:
            run = json.loads(args.costs.read_text())
            m = run["measured"]
            known = {f.name for f in dataclasses.fields(Measured)}  # older runs lack the newer ones
            measured = Measured(**{k: v for k, v in m.items() if k in known} | {"costs": Costs(**m["costs"])})
            if all(f"{name} real" in run.get("outcomes", {}) for name in REAL_RUNS.values()):
                if run["params"] != json.loads(json.dumps(dataclasses.asdict(params))):
                    sys.exit(f"{args.costs}: the run replayed another trace ({run['params']}): pass its options")
                real = {key: [Outcome(**o) for o in run["outcomes"][f"{name} real"]] for key, name in REAL_RUNS.items()}
                measured = fit_idle_costs(args, trace, measured, real)
        else:
            measured = Measured(DEFAULT_COSTS.prefill_s, DEFAULT_SWITCH_TTFT_S, DEFAULT_COSTS, SERVER_START_S)
        out = report(args, params, trace, measured, simulate(args, trace, measured), real)
    else:
        for port in (args.port_base, args.port_base + 1):
            ensure_port_free(port)
        # SIGTERM unwinds like Ctrl-C, so the servers' `finally` still stops them.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        with tempfile.TemporaryDirectory(prefix="trace-") as tmp:
            ours, gthreadd = run_gthreadd(args, trace, Path(tmp))
            theirs, server_start_s, stop_s = run_vllm(args, trace, Path(tmp))
        real = {"gthreadd": ours, DEDICATED: theirs}
        measured = fit_idle_costs(args, trace, measured_costs(gthreadd, theirs, trace, server_start_s, stop_s), real)
        out = report(args, params, trace, measured, simulate(args, trace, measured), real)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
