"""The steps of one render run (the Step Functions state machine in ``infra/render_run.asl.json``).

Provision → WaitReady (polled) → Render (bounded slices, looped) → Teardown (always) → Record.
Each step is idempotent: Step Functions may retry it, and SQS may deliver a task twice.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING

from subconscious.dal.work_queue import Delivery
from subconscious.errors import (
    ConfigurationError,
    MachineGone,
    MachineNotReady,
    MachinePreempted,
    ProviderError,
    RendererError,
    RendererOutOfMemory,
    RendererUnavailable,
    SpendCapReached,
    TaskCrashedMachine,
)
from subconscious.logic.batch_storage import BatchStorage
from subconscious.logic.lifecycle import retry_or_give_up
from subconscious.logic.throughput import learn_from_run
from subconscious.market.base import Capability, Provider
from subconscious.models import (
    OPEN_STATES,
    Machine,
    MachineStatus,
    OrderState,
    RenderRun,
    RenderTask,
    RunStatus,
    split_order_key,
)
from subconscious.models.labels import run_label
from subconscious.models.servers import WorkerKind
from subconscious.money import ceil_div, cost_micros
from subconscious.observability import logger
from subconscious.planner.costs import aws_machine_micros, cost_for, micros_per_hour
from subconscious.render.a1111 import TXT2IMG_ATTEMPTS, A1111Client, RenderedImage
from subconscious.settings import Settings

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services

_MACHINE_USER = "subc"
_MIN_SECRET_BYTES = 16
_WAIT_FOR_ACCEPT_S = 30  # a task whose order is still being accepted comes back later
_RECEIVE_AT_ONCE = 2
_READY_PROBE_TIMEOUT_S = 15.0
# A task kept off this machine goes back at once: visible, so the dispatch sees work and
# rents the machine that will take it. (Delayed, it was invisible to this machine, which idled
# out, and the dispatch, counting it as waiting, rented a machine per idle-out until the delay
# ended: five for one poison task in the fault suite.) This machine bounces it at most
# idle_polls_before_teardown times in a row before it ends for want of other work.
_ELSEWHERE_S = 0


def machine_credential(services: Services, run_id: str) -> tuple[str, str]:
    """automatic1111 ``--api-auth`` for one run, derived (never stored, never logged)."""
    key = services.settings.machine_auth_secret.get_secret_value().encode()
    if len(key) < _MIN_SECRET_BYTES:  # an empty or short key makes every password guessable
        raise ConfigurationError("SUBC_MACHINE_AUTH_SECRET is missing or shorter than 16 bytes")
    password = hmac.new(key, run_id.encode(), hashlib.sha256).hexdigest()[:32]
    return _MACHINE_USER, password


def worker_env(settings: Settings, run: RenderRun) -> dict[str, str]:
    """The lean worker's settings for this run (``worker/README.md``): the UNet shapes the
    dispatch chose to compile, the checkpoint. None for automatic1111."""
    if settings.worker is not WorkerKind.LEAN:
        return {}
    env = {}
    if run.compile_shapes:
        env["WORKER_COMPILE_SHAPES"] = ",".join(run.compile_shapes)
    if settings.worker_checkpoint:
        env["WORKER_CHECKPOINT"] = settings.worker_checkpoint
    return env


def _run(services: Services, run_id: str) -> RenderRun:
    run = services.runs.get(run_id)
    if run is None:
        raise MachineGone(f"run {run_id} has no record")
    return run


def _provider(services: Services, run: RenderRun) -> Provider:
    return services.provider(run.offer.provider)


# --- Provision ---
def provision(services: Services, run_id: str, now: datetime | None = None) -> dict[str, str]:
    run = _run(services, run_id)
    if run.machine_id:  # a retried step: the machine was launched already
        return {"machine_id": run.machine_id}
    provider = _provider(services, run)
    # A launch whose answer was lost (timeout, then a retry of this step) left a machine with
    # our label: adopt it rather than rent a second one.
    adopted = provider.machines(label=run_label(run_id))
    if adopted:
        machine = adopted[0]
    else:
        user, password = machine_credential(services, run_id)
        machine = provider.launch(
            run.offer,
            label=run_label(run_id),
            api_auth=f"{user}:{password}",
            bid_usd_per_hour=run.bid_usd_per_hour,
            worker_env=worker_env(services.settings, run),
        )
    services.runs.save(
        run.model_copy(
            update={
                "machine_id": machine.machine_id,
                "status": RunStatus.PROVISIONING,
                "machine_launched_at": now or datetime.now(UTC),
            }
        )
    )
    logger.info("machine launched", run_id=run_id, machine_id=machine.machine_id, gpu=run.offer.gpu)
    return {"machine_id": machine.machine_id}


# --- WaitReady ---
def _live_machine(services: Services, run: RenderRun) -> Machine:
    if not run.machine_id:
        raise MachineGone(f"run {run.run_id} has no machine")
    machine = _provider(services, run).status(run.machine_id)
    if machine.status in (MachineStatus.EXITED, MachineStatus.TERMINATED):
        raise MachineGone(f"machine {machine.machine_id} is {machine.status.value}")
    return machine


def _client(
    services: Services, run: RenderRun, machine: Machine, timeout_s: float | None = None
) -> A1111Client:
    if machine.url is None:
        raise MachineGone(f"machine {machine.machine_id} has no address")
    return A1111Client(
        machine.url,
        auth=_credential(services, run, machine),
        timeout_s=timeout_s or services.settings.renderer_request_timeout_s,
        # a rented machine must be public; the operator's own static servers may be private
        allow_private=services.settings.allow_private_machine_addresses
        or _provider(services, run).supports(Capability.OPERATOR_ADDRESSES),
    )


def _credential(services: Services, run: RenderRun, machine: Machine) -> tuple[str, str] | None:
    """A rented machine's per-run credential; a static server's own (it was set up by hand)."""
    provider = _provider(services, run)
    if provider.supports(Capability.OWN_CREDENTIALS):
        return provider.credential(machine.machine_id)
    return machine_credential(services, run.run_id)


def wait_ready(
    services: Services, run_id: str, ready_timeout_s: int, now: datetime | None = None
) -> dict[str, bool]:
    now = now or datetime.now(UTC)
    run = _run(services, run_id)
    if services.runs.stop_requested(run_id):
        # no longer wanted: the render step ends the run at once and Teardown gives it back
        logger.info("stop requested while the machine booted", run_id=run_id)
        return {"ready": True}
    machine = _live_machine(services, run)
    launched = run.machine_launched_at or run.started_at
    if (now - launched).total_seconds() > ready_timeout_s:
        raise MachineNotReady(f"machine {machine.machine_id} not ready after {ready_timeout_s}s")
    if machine.status is not MachineStatus.RUNNING:
        return {"ready": False}
    if _spent(run) >= run.spend_cap_micros:
        raise SpendCapReached(f"run {run_id} spent its cap while the machine booted")
    if run.machine_running_at is None:
        run = run.model_copy(update={"machine_running_at": now})
        services.runs.save(run)
    # The provider says it runs (image pulled, container started): its server gets a start-up
    # deadline of its own, much shorter than the ready timeout that also covers the pull, so a
    # machine that never serves is not paid for the whole ready timeout. The clock starts at
    # RUNNING even while the provider shows no address for it yet (a RunPod pod whose port
    # never maps).
    serving_s = (now - (run.machine_running_at or now)).total_seconds()
    serve_deadline_s = services.settings.machine_serve_deadline_s + run.compile_s
    if getattr(_provider(services, run), "running_before_pull", False):
        # its "running" is the VM: the image is pulled and started after it, which the
        # offer's start-up estimate covers
        serve_deadline_s += run.offer.startup_s
    if serving_s > serve_deadline_s:
        raise MachineNotReady(
            f"machine {machine.machine_id} runs but has not served within {serve_deadline_s}s"
        )
    if machine.url is None:
        return {"ready": False}
    # Short requests: automatic1111 blocks the first txt2img while its checkpoint loads; a
    # timeout here means "not ready yet, poll again", not a dead Lambda step.
    client = _client(services, run, machine, timeout_s=_READY_PROBE_TIMEOUT_S)
    try:
        ready = client.is_ready()
    finally:
        client.close()
    if ready:
        services.runs.save(run.model_copy(update={"status": RunStatus.RENDERING, "ready_at": now}))
        logger.info("machine ready", run_id=run_id, boot_s=int((now - launched).total_seconds()))
    return {"ready": ready}


# --- Render ---
class Verdict(Enum):
    """What a render slice does with a task it received."""

    RENDER = "render"
    LATER = "later"  # the order is still being accepted
    ELSEWHERE = "elsewhere"  # it failed on this machine: another takes it
    DROP = "drop"  # gone, cancelled, finished: no GPU time on work nobody will pay for


@dataclass
class SliceResult:
    more: bool
    images: int
    reason: str


def render_slice(services: Services, run_id: str, slice_s: int) -> SliceResult:
    """Render tasks from the queue for at most ``slice_s`` seconds (a Lambda has 15 minutes;
    the state machine loops). Ends the run's work when the queue stays empty or the run's spend
    cap is reached. A batch's images are stored while the next batch renders."""
    run = _run(services, run_id)
    stopped = _stopped(services, run_id)  # before touching the machine: it may not answer
    if stopped is not None:
        return stopped
    machine = _live_machine(services, run)
    client = _client(services, run, machine)
    return _Slice(services, run, machine, client, slice_s).render()


class _Slice:
    """One slice of rendering on one machine: the deliveries it holds, the batches storing
    behind the renderer, and how long the queue has had nothing for it."""

    def __init__(
        self,
        services: Services,
        run: RenderRun,
        machine: Machine,
        client: A1111Client,
        slice_s: int,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.run = run
        self.machine = machine
        self.client = client
        # Worst case of one task: every txt2img attempt times out, then its images are stored.
        self.task_worst_s = int(self.settings.renderer_request_timeout_s * TXT2IMG_ATTEMPTS) + 30
        # A task is started only if it can end inside the slice (settings keep slice + one task
        # under the Lambda timeout).
        self.end = time.monotonic() + slice_s
        self.visibility = self.task_worst_s * (_RECEIVE_AT_ONCE + 1)
        self.storage = BatchStorage(services, run)
        self.held: list[Delivery] = []
        self.current: list[Delivery] = []
        self.avoid_id = _avoidable(services, run)  # the id retries that failed here keep off
        self.idle_polls = 0

    def render(self) -> SliceResult:
        """The slice, start to end: whatever fails, every task not yet stored goes back."""
        services = self.services
        try:
            result = self._loop()
            self.storage.collect(keep=0)
        except Exception:
            # This machine (or our storage) failed: hand back at once every task not yet stored.
            self._hand_back(self.current + self.held + self.storage.abandon())
            raise
        finally:
            self.storage.close()
            self.client.close()
            services.runs.save(self.storage.run)
        self._hand_back(self.held)  # received but not started before the slice ended
        result.images = self.storage.images
        return result

    def _loop(self) -> SliceResult:
        while time.monotonic() < self.end:
            self.storage.collect(keep=1)  # at most one batch stores behind the renderer
            ended = self._ended()
            if ended is not None:
                return ended
            if not self.held:
                stopped = _stopped(self.services, self.run.run_id)
                if stopped is not None:
                    return stopped
                self.held = self.services.queue.receive(
                    _RECEIVE_AT_ONCE, self.settings.sqs_wait_s, self.visibility
                )
                if not self.held:
                    self.idle_polls += 1
                    continue
            self._take(self.held.pop(0))
        return SliceResult(more=True, images=0, reason="slice over")

    def _ended(self) -> SliceResult | None:
        """The slice's end where the run spent its cap or has had nothing to render."""
        run = self.run
        if _spent(run) >= run.spend_cap_micros:
            logger.warning("run reached its spend cap", run_id=run.run_id, cap=run.spend_cap_micros)
            return SliceResult(more=False, images=0, reason="spend cap")
        if self.idle_polls >= self.settings.idle_polls_before_teardown:
            # nothing this machine may render: the queue is empty, or all that is left
            # failed here before (another machine, or the next one rented, takes it)
            return SliceResult(more=False, images=0, reason="queue empty")
        return None

    def _take(self, delivery: Delivery) -> None:
        """One delivery, rendered here, sent back for later or for another machine, or
        dropped."""
        queue = self.services.queue
        self.current = [delivery]  # handed back by render() if this step fails
        task = delivery.task
        verdict = _verdict(self.services, task, self.avoid_id)
        self.idle_polls = self.idle_polls + 1 if verdict is Verdict.ELSEWHERE else 0
        if verdict is Verdict.RENDER:
            self._render(delivery)
        elif verdict is Verdict.LATER:
            # a fresh, delayed copy: handing the message back would count each wait
            # towards the dead-letter limit, and the task would be given up untried
            queue.send([task], delay_s=_WAIT_FOR_ACCEPT_S)
            queue.delete(delivery)
        elif verdict is Verdict.ELSEWHERE:
            # it failed on this machine before: another machine takes it. A fresh copy,
            # not the same message handed back: each receive here would count towards
            # the dead-letter queue's limit, and a task waiting for another machine
            # would be given up without being tried.
            queue.send([task], delay_s=_ELSEWHERE_S)
            queue.delete(delivery)
        else:
            queue.delete(delivery)
        self.current = []

    def _render(self, delivery: Delivery) -> None:
        # the message stays hidden while this batch renders and the one behind stores
        self.services.queue.set_visibility(delivery, self.task_worst_s * 2)
        started = time.monotonic()
        try:
            rendered = render_task(self.client, delivery.task)
        except RendererError as error:
            self.current = []  # settled (queued again or given up) before any raise
            _task_failed(self.services, self.run, self.machine, delivery, error)
        else:
            self.storage.submit(delivery, rendered, time.monotonic() - started)

    def _hand_back(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self.services.queue.set_visibility(delivery, 0)


def _preempted(services: Services, run: RenderRun) -> bool:
    """An interruptible machine its provider now reports gone (it was outbid or reclaimed)."""
    if not run.interruptible or not run.machine_id:
        return False
    try:
        machine = _provider(services, run).status(run.machine_id)
    except ProviderError:  # gone from the list, or the provider is down: it is not serving
        return True
    return machine.status in (MachineStatus.EXITED, MachineStatus.TERMINATED)


def _stopped(services: Services, run_id: str) -> SliceResult | None:
    """The slice's end if the dispatch asked this run to stop (checked between batches)."""
    if not services.runs.stop_requested(run_id):
        return None
    logger.info("dispatch asked this run to stop", run_id=run_id)
    return SliceResult(more=False, images=0, reason="stop requested")


def _spent(run: RenderRun) -> int:
    if run.machine_launched_at is None:
        return 0
    elapsed = int((datetime.now(UTC) - run.machine_launched_at).total_seconds())
    return cost_micros(run.usd_per_hour, elapsed)


def _verdict(services: Services, task: RenderTask, machine_id: str | None) -> Verdict:
    """render, later (the order is still being accepted), elsewhere (it failed on this
    machine) or drop (gone, cancelled, finished: no GPU time on work nobody will pay for)."""
    order = services.orders.get(task.tenant_id, task.order_id)
    if order is None or order.state not in OPEN_STATES:
        logger.info("dropped task of a closed order", order_id=task.order_id, task=task.task_id)
        return Verdict.DROP
    if order.state is OrderState.QUOTED:
        return Verdict.LATER
    if machine_id is not None and machine_id in task.avoid_machines:
        return Verdict.ELSEWHERE
    return Verdict.RENDER


def _avoidable(services: Services, run: RenderRun) -> str | None:
    """The id a failed task's retries avoid on this run's machine: none for a server the
    operator runs by hand, which keeps its id from run to run and has no other to go to."""
    if _provider(services, run).supports(Capability.LASTING_MACHINES):
        return None
    return run.machine_id


def _task_failed(
    services: Services, run: RenderRun, machine: Machine, delivery: Delivery, error: Exception
) -> None:
    """A task failed on this machine: it is queued again elsewhere (or given up after its last
    attempt) before its delivery is deleted. Then whose fault was it? A machine that stopped
    answering, or that cannot render one image of the task's own size now, is replaced (the
    error goes up and the run ends: its host is held off); one that renders is kept, and the
    task carries the blame (a poison task must not cost every machine it meets)."""
    task = delivery.task
    why = f"{type(error).__name__}: {str(error)[:200]}"
    logger.warning("task failed", task=task.task_id, machine_id=run.machine_id, why=why)
    if isinstance(error, RendererUnavailable) and _preempted(services, run):
        # an interruptible machine taken back by its market: not the task's fault, so no
        # attempt is spent (SQS's receive count still bounds a task that kills every machine)
        services.queue.set_visibility(delivery, 0)
        raise MachinePreempted(f"machine {run.machine_id} was preempted: {why}") from error
    retry_or_give_up(services, task, _avoidable(services, run), why)
    services.queue.delete(delivery)
    if not isinstance(error, RendererUnavailable) and _renders(services, run, machine, task):
        return
    if task.attempts > 0:
        # it failed on another machine before: the task is the likely cause, not this host
        raise TaskCrashedMachine(f"machine {run.machine_id} failed with a task: {why}") from error
    raise RendererUnavailable(f"machine {run.machine_id} failed with a task: {why}") from error


def _renders(services: Services, run: RenderRun, machine: Machine, task: RenderTask) -> bool:
    """Whether the machine renders one image of ``task``'s size and sampler, with a plain
    prompt, now: a card too small for the size, or a server that answers the wrong image, fails
    it whatever the prompt; a poison prompt passes it. Short timeouts: a slice's budget holds
    one such probe."""
    probe = task.model_copy(
        update={"prompt": "health check", "negative_prompt": "", "batch_size": 1, "steps": 1}
    )
    client = _client(services, run, machine, timeout_s=_READY_PROBE_TIMEOUT_S)
    try:
        client.txt2img(probe)
    except RendererError:
        return False
    finally:
        client.close()
    return True


def render_task(client: A1111Client, task: RenderTask) -> list[RenderedImage]:
    """One txt2img call; on out-of-memory, the same seeds in two smaller calls."""
    try:
        return client.txt2img(task)
    except RendererOutOfMemory:
        if task.batch_size == 1:
            raise
        half = task.batch_size // 2
        logger.warning("out of memory: splitting batch", task=task.task_id, batch=task.batch_size)
        first = task.model_copy(update={"batch_size": half})
        second = task.model_copy(
            update={"seed": task.seed + half, "batch_size": task.batch_size - half}
        )
        return render_task(client, first) + render_task(client, second)


# --- Teardown and Record ---
def give_back_machines(services: Services, run: RenderRun) -> list[str]:
    """Terminate every machine of this run: the one recorded and any other with its label.
    Idempotent; raises if the provider cannot be reached (callers retry)."""
    provider = _provider(services, run)
    # The machine we know of first: a failing list call must not keep it running.
    terminated = []
    if run.machine_id:
        provider.terminate(run.machine_id)
        terminated.append(run.machine_id)
    for machine in provider.machines(label=run_label(run.run_id)):
        if machine.machine_id not in terminated:
            provider.terminate(machine.machine_id)
            terminated.append(machine.machine_id)
    return sorted(terminated)


def teardown(services: Services, run_id: str, now: datetime | None = None) -> dict[str, list[str]]:
    """Give back every machine of this run. Safe to repeat."""
    run = services.runs.get(run_id)
    if run is None:
        return {"terminated": []}
    terminated = give_back_machines(services, run)
    services.runs.save(
        run.model_copy(
            update={
                "status": RunStatus.TEARING_DOWN,
                "machine_ended_at": run.machine_ended_at or now or datetime.now(UTC),
            }
        )
    )
    logger.info("machines given back", run_id=run_id, machines=terminated)
    return {"terminated": terminated}


def record(
    services: Services,
    run_id: str,
    error: object = None,
    teardown_error: object = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """Close the run. If Teardown gave up, the run stays live as ``teardown_failed`` so that
    dispatch keeps trying to give its machines back (invariant 1)."""
    now = now or datetime.now(UTC)
    run = _run(services, run_id)
    spend = 0
    if run.machine_launched_at is not None:
        ended = run.machine_ended_at or now
        spend = cost_micros(
            run.usd_per_hour, int((ended - run.machine_launched_at).total_seconds())
        )
    status = RunStatus.FAILED if error else RunStatus.SUCCEEDED
    if teardown_error:
        status = RunStatus.TEARDOWN_FAILED
        logger.error("teardown failed: machines may be alive", run_id=run_id)
    problem = error or teardown_error
    services.runs.save(
        run.model_copy(
            update={
                "status": status,
                "ended_at": now,
                "spend_micros": spend,
                "error": _describe(problem) if problem else None,
            }
        )
    )
    if run.machine_launched_at is not None:
        try:
            share_run_costs(services, run, run.machine_ended_at or now)
        except Exception:  # the operator's accounts: never fail the record of a finished run
            logger.exception("run costs not shared among its orders", run_id=run_id)
    delivered = run.images / run.render_seconds if run.render_seconds else 0
    if not error:  # a failed run's rate says more about the failure than about the GPU
        try:
            learn_from_run(services, run)
        except Exception:  # advice for later quotes: never fail the record of a finished run
            logger.exception("throughput correction not stored", run_id=run_id)
    logger.info(
        "render run recorded",
        run_id=run_id,
        status=status.value,
        images=run.images,
        spend_micros=spend,
        images_per_s=f"{delivered:.2f}",
    )
    return {"status": status.value}


def share_run_costs(services: Services, run: RenderRun, ended: datetime) -> None:
    """What the run cost beyond what its batches charged as they were stored (start-up, idle
    polls, teardown, the provider's billing increment; AWS's charges per machine), shared
    among the orders it rendered for by images. Set per run on each order, so a retried
    record writes the same figures again. A run that rendered nothing is on no order."""
    launched = run.machine_launched_at
    total = sum(run.served.values())
    if launched is None or total <= 0:
        return
    held_s = max(0.0, (ended - launched).total_seconds())
    startup_s = ((run.ready_at or ended) - launched).total_seconds()
    # WaitReady runs at least once
    polls = max(1, math.ceil(max(0.0, startup_s) / services.settings.poll_interval_s))
    billed = cost_for(run.offer.provider, micros_per_hour(run.usd_per_hour), held_s)
    gpu_over = max(0, billed - run.charged_gpu_micros)
    aws_over = max(0, aws_machine_micros(held_s, polls) - run.charged_aws_micros)
    for key, images in sorted(run.served.items()):
        tenant_id, order_id = split_order_key(key)
        services.orders.set_run_cost(
            tenant_id,
            order_id,
            run.run_id,
            ceil_div(gpu_over * images, total),
            ceil_div(aws_over * images, total),
        )


def _describe(error: object) -> str:
    if isinstance(error, dict):
        return f"{error.get('Error', 'Error')}: {str(error.get('Cause', ''))[:500]}"
    return str(error)[:500]
