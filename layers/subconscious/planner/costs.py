"""What a machine costs and how fast it renders a job: the planner's cost model. Pure.

A machine costs its hourly price from the moment it is rented: over its start-up (image pull,
boot, model load), the rendering, and the teardown, rounded up to the provider's billing
increment. It renders at the throughput model's rate for the batch that fits its memory and
keeps one txt2img call under the provider's request limit (RunPod's proxy cuts at 100 s).
An interruptible machine costs its bid and may be preempted: it loses the batch in flight and
a replacement pays a new start-up.

Every cost here is what serving the job costs us: the GPU as above, plus what AWS charges for
it (:mod:`subconscious.planner.serving`): per machine, the render step's Lambda for every
second the machine is held, the state machine's transitions, the run's own writes; per image,
its S3 object, DynamoDB transaction, queue requests and the download's data out.

Money is integer micro-dollars; rates (images/s) are floats, they are not money.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from subconscious.catalogue import canonical
from subconscious.models import JobSpec, ModelFamily, Offer
from subconscious.models.servers import WorkerKind
from subconscious.money import MICROS_PER_USD, to_micros_up
from subconscious.planner.serving import (
    MACHINE_USD_FIXED,
    MACHINE_USD_PER_S,
    MACHINE_USD_PER_SLICE,
    RENDER_SLICE_S,
    images_usd,
    machine_usd,
)
from subconscious.planner.workers import kind_for, server_factor
from subconscious.throughput_model import ThroughputModel

# Billing increments (seconds): Vast.ai bills by the second; RunPod pods and TensorDock are
# taken per minute (the coarser of what their pages have said: the safe side for a quote); EC2
# Linux instances bill per second with a 60 s minimum (aws.amazon.com/ec2/pricing/on-demand,
# "Per Second Billing"), taken per minute here, the safe side; an unknown provider is taken to
# bill by the hour.
BILLING_INCREMENT_S = {
    "vast": 1,
    "runpod": 60,
    "tensordock": 60,
    "ec2": 60,
    "emulated": 1,
    "static": 1,
}
DEFAULT_BILLING_INCREMENT_S = 3600
TEARDOWN_S = 30
# One txt2img call must end inside the provider's request limit with room for a slow call.
REQUEST_LIMIT_S = {"runpod": 100.0}
DEFAULT_REQUEST_LIMIT_S = 300.0
CALL_SHARE_OF_LIMIT = 0.5
# Preemptions per hour assumed for an interruptible machine where no trace tells better:
# the spot traces flip availability "several times a day" (data/SOURCES.md).
DEFAULT_PREEMPTIONS_PER_HOUR = 0.25
MIN_MEMORY_GB = {ModelFamily.SD15: 8, ModelFamily.SDXL: 12}


@lru_cache(maxsize=65536)
def micros_per_hour(usd_per_hour: Decimal) -> int:
    return int((usd_per_hour * MICROS_PER_USD).to_integral_value())


def billed_seconds(provider: str, seconds: float) -> int:
    step = BILLING_INCREMENT_S.get(provider, DEFAULT_BILLING_INCREMENT_S)
    return max(step, math.ceil(max(seconds, 0.0) / step) * step)


def cost_for(provider: str, price_micros_per_hour: int, seconds: float) -> int:
    """Micro-dollars for holding a machine ``seconds``, billed as the provider bills."""
    return math.ceil(price_micros_per_hour * billed_seconds(provider, seconds) / 3600)


def aws_machine_micros(held_s: float, polls: int | None = None) -> int:
    """What AWS charges for one rented machine held ``held_s`` (``polls``: how often WaitReady
    polled it; unknown, its whole ready timeout: the safe side), in micro-dollars, rounded
    up."""
    held_s = max(held_s, 0.0)
    if polls is not None:
        return _up_micros(machine_usd(held_s, polls))
    # the closed form of machine_usd(held_s) (serving.py; a test holds them equal): the
    # quote prices every offer alone with it, thousands of times a quote
    slices = math.ceil(held_s / RENDER_SLICE_S)
    usd = (
        MACHINE_USD_FIXED
        + MACHINE_USD_PER_S * Decimal(str(held_s))
        + MACHINE_USD_PER_SLICE * slices
    )
    return _up_micros(usd)


def aws_render_micros(seconds: float) -> int:
    """What AWS charges for ``seconds`` of the render step (its Lambda waits on the GPU)."""
    return _up_micros(MACHINE_USD_PER_S * Decimal(str(max(seconds, 0.0))))


def aws_batch_micros(images: int, width: int, height: int, images_per_task: int) -> int:
    """What AWS charges for ``images`` stored from one task of ``images_per_task``."""
    return _up_micros(images_usd(images, width, height, images_per_task))


def aws_images_micros(job: JobSpec, images: int) -> int:
    """What AWS charges for ``images`` of ``job``'s size, whatever renders them (a task per
    image: the most requests), in micro-dollars, rounded up."""
    return _up_micros(images_usd(images, job.width, job.height))


def _up_micros(usd: Decimal) -> int:
    return to_micros_up(usd)


def usable(offer: Offer, job: JobSpec) -> bool:
    return offer.gpu_memory_gb >= MIN_MEMORY_GB[job.model_family]


def memory_needed(jobs: Iterable[JobSpec]) -> int:
    """The least GPU memory a machine needs to run every one of ``jobs``."""
    return max((MIN_MEMORY_GB[f] for f in {j.model_family for j in jobs}), default=0)


@dataclass(frozen=True)
class Speed:
    """How an offer renders one job: images per second at ``batch`` images per call."""

    images_per_s: float
    batch: int

    def seconds(self, images: int) -> float:
        return images / self.images_per_s

    @property
    def batch_s(self) -> float:
        return self.batch / self.images_per_s


class Rates:
    """Memoised rates of (GPU, memory, job setting) on one throughput model, for the server
    our machines run (:mod:`subconscious.planner.workers`): quoting against a thousand offers
    asks for the same few dozen cards over and over."""

    def __init__(
        self, model: ThroughputModel, worker: WorkerKind = WorkerKind.AUTOMATIC1111
    ) -> None:
        self.model = model
        self.worker = worker
        self._memo: dict[tuple[str, int, int, ModelFamily, int, int, int, str, bool], Speed] = {}

    def speed(self, offer: Offer, job: JobSpec) -> Speed:
        """Uncompiled: what every plan and promise counts on."""
        return self._lookup(offer, job, compiled=False)

    def compiled(self, offer: Offer, job: JobSpec) -> Speed:
        """With the UNet compiled for the job's shape (the lean worker; automatic1111 cannot)."""
        return self._lookup(offer, job, compiled=self.worker is WorkerKind.LEAN)

    def _lookup(self, offer: Offer, job: JobSpec, compiled: bool) -> Speed:
        key = (
            offer.gpu,
            offer.gpu_count,
            offer.gpu_memory_gb,
            job.model_family,
            job.width,
            job.height,
            job.steps,
            offer.provider,
            compiled,
        )
        found = self._memo.get(key)
        if found is None:
            found = self._speed(offer, job, compiled)
            self._memo[key] = found
        return found

    def _speed(self, offer: Offer, job: JobSpec, compiled: bool) -> Speed:
        gpu = canonical(offer.gpu)
        family, width, height = job.model_family, job.width, job.height
        batch = self.model.best_batch(gpu, family, width, height, offer.gpu_memory_gb)
        limit = REQUEST_LIMIT_S.get(offer.provider, DEFAULT_REQUEST_LIMIT_S)
        kind = kind_for(offer.provider, self.worker)
        factor = float(self.model.correction(gpu).factor)
        while True:
            per_s = float(
                self.model.images_per_second(gpu, family, width, height, job.steps, batch)
            )
            per_s *= server_factor(kind, family, per_s / factor, width, height, compiled)
            if batch == 1 or batch / per_s <= limit * CALL_SHARE_OF_LIMIT:
                break
            batch = max(1, batch // 2)
        return Speed(images_per_s=per_s * offer.gpu_count, batch=batch)


def price_micros_per_hour(offer: Offer, interruptible: bool) -> int:
    """What we pay per hour: the minimum bid (a little over it) or the on-demand price."""
    if interruptible:
        if offer.min_bid_usd_per_hour is None:
            raise ValueError(f"offer {offer.offer_id} cannot be rented interruptible")
        return math.ceil(micros_per_hour(offer.min_bid_usd_per_hour) * BID_OVER_MINIMUM)
    return micros_per_hour(offer.usd_per_hour)


# Bid this much over the minimum so an equal bid does not outbid us at once.
BID_OVER_MINIMUM = 1.05


def job_cost_micros(
    job: JobSpec,
    offer: Offer,
    speed: Speed,
    images: int,
    *,
    interruptible: bool,
    machines: int = 1,
    preemptions_per_hour: float = DEFAULT_PREEMPTIONS_PER_HOUR,
) -> int:
    """Renting ``machines`` of ``offer`` to render ``images`` of ``job``: each pays start-up,
    its share of the rendering and teardown; an interruptible one adds its expected preemption
    losses at ``preemptions_per_hour`` (per preemption: the batch in flight plus a new
    start-up, and a new run's AWS charges); and AWS's charges for the machines and the
    images."""
    price = price_micros_per_hour(offer, interruptible)
    render_s = speed.seconds(images) / machines
    held_s = offer.startup_s + render_s + TEARDOWN_S
    restarts = 0
    if interruptible:
        restarts = math.ceil(preemptions_per_hour * held_s / 3600)
        held_s += restarts * (speed.batch_s + offer.startup_s)
    per_machine = cost_for(offer.provider, price, held_s) + aws_machine_micros(held_s)
    per_machine += restarts * aws_machine_micros(0)
    return machines * per_machine + aws_images_micros(job, images)


def fleet_seconds(speeds: list[Speed], images: int) -> float:
    """Rendering time of ``images`` shared by several machines in proportion to their rates."""
    return images / sum(s.images_per_s for s in speeds)


def fleet_cost_micros(job: JobSpec, offers: list[Offer], speeds: list[Speed], images: int) -> int:
    """On-demand machines rendering ``images`` of ``job`` together: each pays its start-up, the
    shared rendering time and teardown, billed as its provider bills, and AWS's charges for
    holding it; and AWS's charges for the images."""
    busy = fleet_seconds(speeds, images)
    machines = sum(
        cost_for(o.provider, price_micros_per_hour(o, False), o.startup_s + busy + TEARDOWN_S)
        + aws_machine_micros(o.startup_s + busy + TEARDOWN_S)
        for o in offers
    )
    return machines + aws_images_micros(job, images)
