"""The market (offers, machines) and the work (render tasks, render runs)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, Field

from subconscious.models.job import ModelFamily, Sampler


class Offer(BaseModel):
    provider: str
    offer_id: str
    gpu: str
    gpu_count: int = 1
    gpu_memory_gb: int
    usd_per_hour: Decimal
    interruptible: bool = False
    min_bid_usd_per_hour: Decimal | None = None
    reliability: Decimal = Decimal("0.99")
    location: str = ""
    startup_s: int = Field(default=180, description="estimated boot + image pull + model load")


class MachineStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"  # died on its own (crash, preemption)
    TERMINATED = "terminated"  # given back by us


class Machine(BaseModel):
    provider: str
    machine_id: str
    offer_id: str
    label: str
    status: MachineStatus
    url: str | None = None
    usd_per_hour: Decimal


class RenderTask(BaseModel):
    """One txt2img call: a prompt, consecutive seeds ``seed … seed+batch_size-1``, a size."""

    tenant_id: str
    order_id: str
    prompt_index: int
    prompt: str
    negative_prompt: str
    seed: int
    batch_size: int
    width: int
    height: int
    steps: int
    cfg_scale: Decimal
    sampler: Sampler
    model_family: ModelFamily
    # Failed attempts of this task and the tasks it was split from (bounded by
    # SUBC_TASK_MAX_ATTEMPTS), and the machines they failed on (a retry goes elsewhere).
    attempts: int = Field(default=0, ge=0)
    avoid_machines: tuple[str, ...] = ()

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.batch_size))

    @property
    def task_id(self) -> str:
        return f"{self.order_id}:{self.prompt_index}:{self.seed}"

    def retry_after_failure(self, machine_id: str | None) -> list[RenderTask]:
        """What to queue after this task failed on ``machine_id``: its seeds in two halves
        (a smaller call: less memory, and a bad seed is isolated), counted as one more attempt
        and kept off that machine."""
        avoid = self.avoid_machines
        if machine_id and machine_id not in avoid:
            avoid = (*avoid, machine_id)
        common = {"attempts": self.attempts + 1, "avoid_machines": avoid}
        if self.batch_size == 1:
            return [self.model_copy(update=common)]
        half = self.batch_size // 2
        return [
            self.model_copy(update={**common, "batch_size": half}),
            self.model_copy(
                update={**common, "seed": self.seed + half, "batch_size": self.batch_size - half}
            ),
        ]


def image_key(tenant_id: str, order_id: str, prompt_index: int, seed: int) -> str:
    """The S3 key of one image: a re-render of the same (order, prompt, seed) overwrites it."""
    return f"images/{tenant_id}/{order_id}/{prompt_index:03d}/{seed}.png"


class RunStatus(StrEnum):
    STARTING = "starting"
    PROVISIONING = "provisioning"
    RENDERING = "rendering"
    TEARING_DOWN = "tearing_down"
    # Teardown gave up with machines possibly alive: dispatch keeps trying to give them back.
    TEARDOWN_FAILED = "teardown_failed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


LIVE_RUN_STATUSES = frozenset(
    {
        RunStatus.STARTING,
        RunStatus.PROVISIONING,
        RunStatus.RENDERING,
        RunStatus.TEARING_DOWN,
        RunStatus.TEARDOWN_FAILED,
    }
)


class RenderRun(BaseModel):
    run_id: str
    offer: Offer
    status: RunStatus = RunStatus.STARTING
    machine_id: str | None = None
    execution_arn: str | None = None
    started_at: AwareDatetime
    machine_launched_at: AwareDatetime | None = None
    # First seen running by its provider: its server must serve soon after (a start-up
    # deadline shorter than the ready timeout).
    machine_running_at: AwareDatetime | None = None
    ready_at: AwareDatetime | None = None  # its server served: a later failure is not a launch's
    machine_ended_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    spend_cap_micros: int = Field(default=0, description="stop renting past this spend")
    bid_usd_per_hour: Decimal | None = Field(
        default=None, description="set for an interruptible machine: what we bid per hour"
    )
    compile_shapes: tuple[str, ...] = Field(
        default=(), description="WxHxB shapes the lean worker compiles its models for at start"
    )
    compile_s: int = Field(
        default=0, ge=0, description="how much later compiling those shapes makes it ready"
    )
    images: int = 0
    render_seconds: Decimal = Decimal(0)
    # What the throughput model predicted those images would take: measured against
    # render_seconds when the run is recorded, it moves the model's factor for this GPU.
    predicted_seconds: Decimal = Decimal(0)
    spend_micros: int = 0
    # The orders it rendered for ("tenant#order" -> images stored) and what its batches
    # charged them as they went (GPU seconds; AWS for the render Lambda's seconds): at the
    # end, the rest of what the run cost is shared among those orders by images.
    served: dict[str, int] = Field(default_factory=dict)
    charged_gpu_micros: int = 0
    charged_aws_micros: int = 0
    error: str | None = None

    @property
    def interruptible(self) -> bool:
        return self.bid_usd_per_hour is not None

    @property
    def usd_per_hour(self) -> Decimal:
        """What the machine costs us: the bid for an interruptible one, else the offer's price."""
        return (
            self.bid_usd_per_hour if self.bid_usd_per_hour is not None else self.offer.usd_per_hour
        )


def order_key(tenant_id: str, order_id: str) -> str:
    """An order's key in a run's ``served`` map."""
    return f"{tenant_id}#{order_id}"


def split_order_key(key: str) -> tuple[str, str]:
    """(tenant, order) of an ``order_key`` (order ids carry no '#')."""
    tenant_id, _, order_id = key.rpartition("#")
    return tenant_id, order_id
