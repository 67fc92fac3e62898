"""Named order streams for the simulator, drawn from a seeded RNG.

Every order is a :class:`JobSpec` (85 % SD 1.5 at 512², 15 % SDXL at 1024², 20 steps, 1–10
prompts sharing the images), a requested deadline and a budget per image. Budgets: a third of
customers state none; the rest state the pay-per-image price they would pay elsewhere (Dezgo's
list price, ``data/SOURCES.md``: $0.0019 SD 1.5, $0.0054 SDXL) times 0.5–2.

* ``steady``: our typical customer. Poisson arrivals, one every 30 min on average, for
  ``days`` days; 10–1000 images (log-uniform); deadlines 2 hours to 3 days (log-uniform).
* ``bursty``: marketing campaigns. Four bursts at random times in ``days`` days, each of
  10–25 orders arriving within about an hour, plus a light background (one order every 3 h);
  10–5000 images; deadlines 1 hour to 7 days (log-uniform).
* ``tight``: large orders wanted fast. One every 2 h on average; 1000–5000 images; deadline
  ``max(1 h, f × fastest)`` with ``f`` in 1.1–1.5 and ``fastest`` the time one of the fastest
  cards (an H100 SXM, 240 s start-up, 90 s dispatch) needs for the order alone.

Sizes and deadlines stay inside the issue's range: 10 to 5000 images, 1 hour to 7 days.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from subconscious.models import JobSpec, ModelFamily

HOUR = 3600.0
DAY = 24 * HOUR
DEZGO_USD_PER_IMAGE = {ModelFamily.SD15: Decimal("0.0019"), ModelFamily.SDXL: Decimal("0.0054")}
# H100 SXM, batch 8, our measurement (images/s): the fastest card a tight deadline is set by.
FASTEST_IMAGES_PER_S = {ModelFamily.SD15: 6.35, ModelFamily.SDXL: 1.099}
FASTEST_OVERHEAD_S = 240 + 90
MIN_DEADLINE_S = HOUR
MAX_DEADLINE_S = 7 * DAY


@dataclass(frozen=True)
class OrderSpec:
    order_id: str
    arrival_s: float
    job: JobSpec
    deadline_s: float  # requested: absolute, seconds after the start
    max_price_per_image_usd: Decimal | None

    @property
    def images(self) -> int:
        return self.job.total_images


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def make_job(rng: random.Random, images: int, sdxl: bool | None = None) -> JobSpec:
    if sdxl is None:
        sdxl = rng.random() < 0.15
    prompts = min(images, rng.randint(1, 10))
    base, extra = divmod(images, prompts)
    counts = [base + (1 if i < extra else 0) for i in range(prompts)]
    body: dict[str, object] = {
        "prompts": [{"text": f"prompt {i}", "count": c} for i, c in enumerate(counts)],
        "model_family": "sdxl" if sdxl else "sd15",
        "width": 1024 if sdxl else 512,
        "height": 1024 if sdxl else 512,
    }
    return JobSpec.model_validate(body)


def _budget(rng: random.Random, job: JobSpec) -> Decimal | None:
    if rng.random() < 1 / 3:
        return None
    factor = Decimal(str(round(rng.uniform(0.5, 2.0), 2)))
    return (DEZGO_USD_PER_IMAGE[job.model_family] * factor).quantize(Decimal("0.000001"))


def _order(
    rng: random.Random, index: int, arrival: float, images: int, slack_s: float
) -> OrderSpec:
    job = make_job(rng, images)
    slack_s = min(max(slack_s, MIN_DEADLINE_S), MAX_DEADLINE_S)
    return OrderSpec(f"o{index:04d}", arrival, job, arrival + slack_s, _budget(rng, job))


def steady(rng: random.Random, days: float) -> list[OrderSpec]:
    orders: list[OrderSpec] = []
    t = rng.expovariate(1 / (0.5 * HOUR))
    while t < days * DAY:
        images = round(log_uniform(rng, 10, 1000))
        orders.append(_order(rng, len(orders), t, images, log_uniform(rng, 2 * HOUR, 3 * DAY)))
        t += rng.expovariate(1 / (0.5 * HOUR))
    return orders


def bursty(rng: random.Random, days: float) -> list[OrderSpec]:
    arrivals: list[float] = []
    for _ in range(4):
        t = rng.uniform(0, days * DAY - HOUR)
        for _ in range(rng.randint(10, 25)):
            arrivals.append(t)
            t += rng.expovariate(1 / (HOUR / 15))
    t = rng.expovariate(1 / (3 * HOUR))
    while t < days * DAY:
        arrivals.append(t)
        t += rng.expovariate(1 / (3 * HOUR))
    orders = []
    for index, arrival in enumerate(sorted(arrivals)):
        images = round(log_uniform(rng, 10, 5000))
        orders.append(_order(rng, index, arrival, images, log_uniform(rng, HOUR, 7 * DAY)))
    return orders


def fastest_s(job: JobSpec) -> float:
    return FASTEST_OVERHEAD_S + job.total_images / FASTEST_IMAGES_PER_S[job.model_family]


def tight(rng: random.Random, days: float) -> list[OrderSpec]:
    orders: list[OrderSpec] = []
    t = rng.expovariate(1 / (2 * HOUR))
    while t < days * DAY:
        job = make_job(rng, round(log_uniform(rng, 1000, 5000)))
        slack = min(max(HOUR, rng.uniform(1.1, 1.5) * fastest_s(job)), MAX_DEADLINE_S)
        orders.append(OrderSpec(f"o{len(orders):04d}", t, job, t + slack, _budget(rng, job)))
        t += rng.expovariate(1 / (2 * HOUR))
    return orders


WORKLOADS: dict[str, Callable[[random.Random, float], list[OrderSpec]]] = {
    "steady": steady,
    "bursty": bursty,
    "tight": tight,
}
DEFAULT_DAYS = {"steady": 3.0, "bursty": 3.0, "tight": 2.0}


def generate(name: str, seed: int, days: float | None = None) -> list[OrderSpec]:
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    rng = random.Random(f"{name}:{seed}")
    return WORKLOADS[name](rng, DEFAULT_DAYS[name] if days is None else days)
