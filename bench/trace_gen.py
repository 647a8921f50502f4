"""A seeded generator of multi-model request traces in the shape the serving literature uses
(AlpaServe, MuxServe, ServerlessLLM): a few popular models and a long tail (Zipf-like popularity),
each model's arrivals a Gamma renewal process whose coefficient of variation (CV) above 1 makes
them come in bursts, and optionally models that are called on a timer (cron jobs, dashboards).

The same seed always gives the same trace: the real run and the simulator replay one list.
"""

import math
import random
import statistics
from dataclasses import asdict, dataclass


PROMPTS = (
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Name three primary colours.",
    "Explain what a CPU does in one sentence.",
    "Give me a tip for learning to cook.",
    "What is two plus two?",
)
"""Short chat prompts: the trace is about when and to whom, not what, so prefill stays small."""


@dataclass(frozen=True)
class Periodic:
    """A model called on a timer: `burst` requests every `period_s`, at a seeded phase."""

    model: int
    period_s: float
    burst: int = 1


@dataclass(frozen=True)
class TraceParams:
    models: int = 4
    duration_s: float = 240.0
    rate: float = 0.4
    """Requests per second over all models (periodic ones excluded)."""
    zipf: float = 1.0
    """Popularity of the model of rank i (from 0) is proportional to 1 / (i + 1) ** zipf."""
    cv: float = 3.0
    """Coefficient of variation of each model's inter-arrival times: 1 is Poisson, above is bursty."""
    min_tokens: int = 16
    max_tokens: int = 32
    periodic: tuple[Periodic, ...] = ()
    seed: int = 0

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in asdict(self).items())


@dataclass(frozen=True)
class Request:
    id: str
    at: float
    """Seconds from the start of the trace."""
    model: str
    max_tokens: int
    prompt: str


def model_name(index: int) -> str:
    return f"m{index}"


def popularity(models: int, zipf: float) -> list[float]:
    weights = [1 / (i + 1) ** zipf for i in range(models)]
    return [w / sum(weights) for w in weights]


def gamma_arrivals(rng: random.Random, rate: float, cv: float, duration_s: float) -> list[float]:
    """Arrival times of a Gamma renewal process with this mean rate and CV (shape 1/CV^2), observed
    from a random moment of its stationary life: the first arrival is a uniform share of a
    length-biased gap (Gamma with shape + 1), so the trace does not open with every model at once."""
    if rate <= 0:
        return []
    shape = 1 / cv ** 2
    scale = 1 / (rate * shape)
    times, t = [], rng.gammavariate(shape + 1, scale) * rng.random()
    while t < duration_s:
        times.append(t)
        t += rng.gammavariate(shape, scale)
    return times


def generate(params: TraceParams) -> list[Request]:
    rng = random.Random(params.seed)
    periodic = {p.model: p for p in params.periodic}
    shares = popularity(params.models, params.zipf)
    timed: list[tuple[float, int]] = []
    for index in range(params.models):
        if index in periodic:
            p = periodic[index]
            phase = rng.uniform(0, p.period_s)
            times = [phase + k * p.period_s for k in range(math.ceil(params.duration_s / p.period_s))]
            timed += [(t, index) for t in times if t < params.duration_s for _ in range(p.burst)]
        else:
            timed += [(t, index) for t in gamma_arrivals(rng, params.rate * shares[index], params.cv, params.duration_s)]
    timed.sort()
    return [Request(f"r{n:04d}", round(t, 3), model_name(index), rng.randint(params.min_tokens, params.max_tokens),
                    rng.choice(PROMPTS))
            for n, (t, index) in enumerate(timed)]


def coefficient_of_variation(times: list[float]) -> float:
    gaps = [b - a for a, b in zip(times, times[1:])]
    if len(gaps) < 2 or not any(gaps):
        return float("nan")
    return statistics.pstdev(gaps) / statistics.fmean(gaps)


def summary(trace: list[Request]) -> str:
    """Per model: requests and the realized CV of its inter-arrival times."""
    models = sorted({r.model for r in trace}, key=lambda m: int(m[1:]))
    parts = []
    for model in models:
        times = [r.at for r in trace if r.model == model]
        parts.append(f"{model} {len(times)} req (CV {coefficient_of_variation(times):.2f})")
    return f"{len(trace)} requests: " + ", ".join(parts)
