"""The throughput model as the running system sees it: the packaged prior, corrected by what
our own render runs measured (per-GPU factors kept in the prices table)."""

from __future__ import annotations

from decimal import Decimal
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from subconscious.catalogue import canonical
from subconscious.models import RenderRun, RenderTask
from subconscious.models.servers import WorkerKind
from subconscious.observability import logger
from subconscious.planner.costs import Rates
from subconscious.planner.workers import server_factor
from subconscious.throughput_model import Correction, ThroughputModel

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services

_ATTEMPTS = 5  # a conditional write lost to another run's record is retried on fresh data


@cache
def prior() -> ThroughputModel:
    """The model from the packaged data alone (what a run's predictions are made with)."""
    return ThroughputModel()


def current_model(services: Services) -> ThroughputModel:
    return prior().corrected(services.corrections.load())


def current_rates(services: Services) -> Rates:
    """Rates on today's model; one memo per set of stored factors, so a warm Lambda answers
    quotes without recomputing every card's rates."""
    stored = services.corrections.load()
    factors = tuple(sorted((gpu, c.factor, c.runs) for gpu, c in stored.items()))
    return _rates(factors, services.settings.worker)


@lru_cache(maxsize=8)
def _rates(factors: tuple[tuple[str, Decimal, int], ...], worker: WorkerKind) -> Rates:
    model = prior().corrected({gpu: Correction(f, runs) for gpu, f, runs in factors})
    return Rates(model, worker)


def predicted_seconds(
    gpu: str,
    task: RenderTask,
    images: int,
    worker: WorkerKind = WorkerKind.AUTOMATIC1111,
    compiled: bool = False,
) -> Decimal:
    """What the prior model says ``images`` of ``task``'s setting take on ``gpu``, on the
    server the run used (so a GPU's learned factor is mostly the card's: the server's own share
    is modelled, though a factor scales its encoding time too)."""
    per_s = prior().images_per_second(
        gpu, task.model_family, task.width, task.height, task.steps, task.batch_size
    )
    factor = server_factor(
        worker, task.model_family, float(per_s), task.width, task.height, compiled
    )
    return Decimal(images) / (per_s * Decimal(repr(factor)))


def learn_from_run(services: Services, run: RenderRun) -> Correction | None:
    """Move the run's GPU factor by what it measured against the prior's prediction."""
    if run.images <= 0 or run.render_seconds <= 0 or run.predicted_seconds <= 0:
        return None
    gpu = canonical(run.offer.gpu)
    measured = Decimal(run.images) / run.render_seconds
    for _ in range(_ATTEMPTS):
        stored = services.corrections.load()
        model = prior().corrected(stored)
        old = model.correction(gpu)
        # the prior predicted predicted_seconds; today's model predicts that over its factor
        predicted = Decimal(run.images) * old.factor / run.predicted_seconds
        new = model.with_correction(gpu, measured, predicted).correction(gpu)
        if services.corrections.replace(gpu, old, new):
            logger.info(
                "throughput model corrected",
                gpu=gpu,
                measured_images_per_s=f"{measured:.3f}",
                predicted_images_per_s=f"{predicted:.3f}",
                factor=str(new.factor),
                runs=new.runs,
            )
            return new
    logger.warning("throughput correction lost to concurrent runs; skipped", gpu=gpu)
    return None
