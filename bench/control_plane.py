"""The control plane at scale: 1,000 Model files in models.d, reconciled and scheduled.

Measures, in one process, the daemon's own code paths without engines:
- reconcile: scan models.d (parse and validate every file), build the desired state, apply it to
  the fleet (ServedModels created, extraArgs checked by vLLM's parser, one ModelUpserted each);
  first from an empty fleet, then a rescan with nothing changed, then a rescan after one edit;
- ingest: the scheduler core deciding those 1,000 ModelUpserted events;
- decide: `Scheduler.decide(event, now)` on a steady mixed event stream over 1,000 units (requests
  arriving and finishing on random models, wakes, sleeps, timers), its p50 / p99 / max.

Engines are InstantEngines, a test double that reports every operation done at once: only the
control plane is measured. Devices: 8 GPUs of 80 GiB, every Model claiming 0.2 of one, so 40 can
be awake and 960 wait their turn.

    .venv/bin/python bench/control_plane.py --models 1000
    .venv/bin/python bench/control_plane.py --models 1000 --host-budget 200   # with a host budget too
Goals (issue 15): reconcile <= 2 s, decide p99 <= 1 ms.
"""

import argparse
import cProfile
import importlib
import datetime
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gthreadd.runtime.fleet import Fleet
from gthreadd.spec.desired import DesiredState, build_desired, scan_directory
from gthreadd.spec.resource import model_yaml
from scheduler.fairness import Scheduler, SchedulerConfig
from scheduler.inventory import Device
from scheduler.messages import (
    Boot, EngineAsleep, EngineAwake, EngineStopped, RequestArrived, RequestFinished, SetTimer, Sleep, Stop, TimerFired,
    Wake, Admit,
)

AWAKE_HOST, ASLEEP_HOST = 3 * 2**30, 2 * 2**30
"""Host memory each engine reports awake and asleep, for the host budget (--host-budget)."""
GPUS = [Device(i, f"GPU-{i}", "NVIDIA-H100-80GB-HBM3", 80 * 2**30, 80 * 2**30) for i in range(8)]
SPEC = ('  gpuMemoryUtilization: "0.2"\n  extraArgs: ["--max-model-len", "4096"]\n'
        '  sleep: {idleTimeout: 30s}\n  fairness: {minRuntime: 5s, maxWaitTime: 10s}\n')


class InstantEngine:
    """A test double for an engine: the fleet only constructs it here; nothing is started."""

    def __init__(self, config):
        self.config = config


def write_models(directory: Path, count: int, checkpoint: Path) -> None:
    directory.mkdir()
    for i in range(count):
        popular = "  fairness: {popular: true}\n" if i < 4 else ""
        spec = SPEC.replace("  fairness: {minRuntime: 5s, maxWaitTime: 10s}\n", popular) if popular else SPEC
        (directory / f"m{i:04}.yaml").write_text(model_yaml(f"m{i:04}", checkpoint, spec))


def reconcile(fleet: Fleet, directory: Path) -> float:
    started = time.perf_counter()
    fleet.apply(build_desired(scan_directory(directory), fleet.desired))
    return time.perf_counter() - started


def timed_decide(scheduler: Scheduler, event, now: float, times: list[float]) -> list:
    started = time.perf_counter()
    actions = scheduler.decide(event, now)
    times.append(time.perf_counter() - started)
    return actions


def steady_stream(scheduler: Scheduler, first: list, models: list[str], events: int, seed: int) -> list[float]:
    """Drive the core as the daemon's effects layer would, from the actions `first` (the ingest's
    boots), with engines that finish at once (the next simulated millisecond) and requests arriving
    on Zipf-ish popular models; the time of every decide."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(models))]
    times: list[float] = []
    pending: list[tuple[float, int, object]] = []  # (due, seq, event)
    in_flight: dict = {}
    timers: dict[tuple, float] = {}
    now, seq, ids = 0.0, 0, 0

    def perform(actions: list) -> None:
        nonlocal seq
        for action in actions:
            seq += 1
            if isinstance(action, (Boot, Wake)):
                pending.append((now + 0.001, seq, EngineAwake(action.unit, AWAKE_HOST, AWAKE_HOST)))
            elif isinstance(action, Sleep):
                pending.append((now + 0.001, seq, EngineAsleep(action.unit, (), action.level, ASLEEP_HOST)))
            elif isinstance(action, Stop):
                pending.append((now + 0.001, seq, EngineStopped(action.unit)))
            elif isinstance(action, Admit):
                in_flight[action.request_id] = action.unit
                pending.append((now + rng.uniform(0.05, 2.0), seq, RequestFinished(action.unit, action.request_id)))
            elif isinstance(action, SetTimer):
                timers[action.key] = action.at

    perform(first)
    while len(times) < events:
        if rng.random() < 0.5 or not pending:
            now += rng.expovariate(200.0)
            ids += 1
            model = rng.choices(models, weights)[0]
            event = RequestArrived(model, f"r{ids}")
        else:
            pending.sort(key=lambda p: (p[0], p[1]))
            due, _, event = pending.pop(0)
            now = max(now, due)
        for key, at in [(k, a) for k, a in timers.items() if a <= now]:
            del timers[key]
            perform(timed_decide(scheduler, TimerFired(key), now, times))
        perform(timed_decide(scheduler, event, now, times))
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20000, help="decide calls in the steady stream")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="write the cProfile of the first reconcile and the stream here")
    parser.add_argument("--host-budget", type=float, default=0, help="GiB of host memory the scheduler budgets "
                        "(engines report 3 GiB awake, 2 GiB asleep); 0: none")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="control_plane-") as tmp:
        tmp = Path(tmp)
        (tmp / "ckpt").mkdir()
        (tmp / "ckpt" / "config.json").write_text("{}")
        write_models(tmp / "models.d", args.models, tmp / "ckpt")
        upserts: list = []
        fleet = Fleet(InstantEngine, GPUS, upserts.append, tmp / "store")
        fleet.apply(build_desired([], DesiredState()))
        started = time.perf_counter()
        importlib.import_module("engine.args")  # vLLM's parser: imported once per daemon, reported apart
        vllm_import = time.perf_counter() - started
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        from_empty = reconcile(fleet, tmp / "models.d")
        unchanged = reconcile(fleet, tmp / "models.d")
        edited = tmp / "models.d" / f"m{args.models // 2:04}.yaml"
        edited.write_text(edited.read_text().replace("idleTimeout: 30s", "idleTimeout: 45s"))
        one_edit = reconcile(fleet, tmp / "models.d")
        scheduler = Scheduler(GPUS, SchedulerConfig(host_limit=int(args.host_budget * 2**30)))
        ingest_times: list[float] = []
        first = [a for event in upserts[:args.models] for a in timed_decide(scheduler, event, 0.0, ingest_times)]
        models = sorted(fleet.models)
        stream = steady_stream(scheduler, first, models, args.events, args.seed)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
            pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(25)
    units = len(scheduler.units)
    print(f"# control_plane  {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    print(f"# command: {' '.join(sys.argv)}")
    budget = f", a {args.host_budget:g} GiB host budget" if args.host_budget else ""
    print(f"# {args.models} Model files, {units} units, 8 x 80 GiB GPUs (40 fit awake){budget}, seed {args.seed}")
    print(f"importing vLLM's arg parser    {vllm_import:8.3f} s   (once per daemon, before the first check)")
    print(f"reconcile from empty           {from_empty:8.3f} s   (goal <= 2 s)")
    print(f"reconcile, nothing changed     {unchanged:8.3f} s")
    print(f"reconcile, one file edited     {one_edit:8.3f} s")
    print(f"ingest {len(ingest_times)} ModelUpserted       {sum(ingest_times):8.3f} s   "
          f"(p99 {percentile(ingest_times, 0.99) * 1e3:.3f} ms)")
    print(f"decide, steady stream          p50 {statistics.median(stream) * 1e3:.3f} ms   "
          f"p99 {percentile(stream, 0.99) * 1e3:.3f} ms   max {max(stream) * 1e3:.3f} ms   "
          f"({len(stream)} calls; goal p99 <= 1 ms)")
    rungs = {}
    for view in scheduler.snapshot().units:
        rungs[view.rung] = rungs.get(view.rung, 0) + 1
    print(f"at the end: {rungs}, {sum(len(q.waiting) for q in scheduler.queues.values())} requests queued")


if __name__ == "__main__":
    main()
