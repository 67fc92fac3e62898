"""Storing a render run's batches in the background, while the next batch renders.

Images go to S3 in parallel, then each is recorded and counted, then the order is charged for
what it gained, and only then is the task's message deleted (invariant 2: a task leaves the
queue only once its images are stored). Split out of :mod:`subconscious.logic.render_run`,
whose render loop drives it.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING

from subconscious.dal.work_queue import Delivery
from subconscious.logic.lifecycle import close_if_settled
from subconscious.logic.throughput import predicted_seconds
from subconscious.models import OrderState, RenderRun, RenderTask, image_key, order_key
from subconscious.money import ceil_div, cost_micros
from subconscious.planner.costs import aws_batch_micros, aws_render_micros
from subconscious.planner.workers import kind_for
from subconscious.render.a1111 import RenderedImage

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services

_MILLI = Decimal("0.001")


class BatchStorage:
    """Stores rendered batches in the background: images to S3 in parallel, then recorded and
    counted, then the task's message deleted (only then: invariant 2)."""

    def __init__(self, services: Services, run: RenderRun) -> None:
        self._services = services
        self.run = run
        self.images = 0
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finish")
        self._uploads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="upload")
        self._pending: deque[tuple[Delivery, Future[int]]] = deque()

    def submit(self, delivery: Delivery, rendered: list[RenderedImage], seconds: float) -> None:
        future = self._finisher.submit(self._store, delivery.task, rendered, seconds)
        self._pending.append((delivery, future))

    def collect(self, keep: int) -> None:
        while len(self._pending) > keep:
            delivery, future = self._pending[0]
            stored = future.result()  # raises what storing raised
            self._pending.popleft()
            self._services.queue.delete(delivery)
            self.images += stored

    def abandon(self) -> list[Delivery]:
        """Deliveries whose storing did not finish (to hand back to the queue)."""
        deliveries = []
        while self._pending:
            delivery, future = self._pending.popleft()
            try:
                future.result()
            except Exception:
                deliveries.append(delivery)
                continue
            self._services.queue.delete(delivery)  # stored after all: nothing to redo
        return deliveries

    def close(self) -> None:
        self._finisher.shutdown(wait=True)
        self._uploads.shutdown(wait=True)

    def _store(self, task: RenderTask, rendered: list[RenderedImage], seconds: float) -> int:
        services = self._services

        def upload(image: RenderedImage) -> str:
            key = image_key(task.tenant_id, task.order_id, task.prompt_index, image.seed)
            metadata = {"order": task.order_id, "prompt-index": str(task.prompt_index)}
            services.bucket.put_png(key, image.png, {**metadata, "seed": str(image.seed)})
            return key

        # S3 puts in parallel (the slow part); then each image recorded and counted, one
        # transaction after the other. Stored first, counted second: a crash in between
        # re-renders, never loses an image.
        keys = list(self._uploads.map(upload, rendered))
        new_images = 0
        for image, key in zip(rendered, keys, strict=True):
            new_images += services.images.record(
                task.tenant_id,
                task.order_id,
                prompt_index=task.prompt_index,
                prompt=task.prompt,
                seed=image.seed,
                width=task.width,
                height=task.height,
                key=key,
            )
        # The order pays for the images it gains; re-rendering a duplicate delivery is ours.
        # So with AWS's charges: the render step's seconds, and each new image's own.
        batch_cost = cost_micros(self.run.usd_per_hour, int(seconds) + 1)
        spend = ceil_div(batch_cost * new_images, len(rendered)) if rendered else 0
        held_aws = ceil_div(aws_render_micros(seconds) * new_images, max(1, len(rendered)))
        aws = held_aws + aws_batch_micros(
            new_images, task.width, task.height, max(1, len(rendered))
        )
        updated = services.orders.add_spend(task.tenant_id, task.order_id, spend, aws)
        if updated.state is OrderState.ACCEPTED:
            services.orders.transition(task.tenant_id, task.order_id, OrderState.RENDERING)
        close_if_settled(services, task.tenant_id, updated)
        predicted = predicted_seconds(
            self.run.offer.gpu,
            task,
            len(rendered),
            kind_for(self.run.offer.provider, self._services.settings.worker),
            compiled=task.cfg_scale > 1
            and f"{task.width}x{task.height}x{task.batch_size}" in self.run.compile_shapes,
        )
        served = dict(self.run.served)
        key = order_key(task.tenant_id, task.order_id)
        served[key] = served.get(key, 0) + new_images
        self.run = self.run.model_copy(
            update={
                "served": served,
                "charged_gpu_micros": self.run.charged_gpu_micros + spend,
                "charged_aws_micros": self.run.charged_aws_micros + held_aws,
                "images": self.run.images + len(rendered),
                "render_seconds": self.run.render_seconds + Decimal(f"{seconds:.3f}"),
                "predicted_seconds": self.run.predicted_seconds + predicted.quantize(_MILLI),
            }
        )
        return len(rendered)
