"""What a customer asks for: the job (prompts and image settings) and its constraints."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

MAX_IMAGES_PER_ORDER = 10_000
MAX_SEED = 2**32 - 1


class ModelFamily(StrEnum):
    SD15 = "sd15"
    SDXL = "sdxl"


# (smallest, largest) side in pixels each family renders well; sides are multiples of 64.
SIZE_LIMITS: dict[ModelFamily, tuple[int, int]] = {
    ModelFamily.SD15: (256, 1024),
    ModelFamily.SDXL: (512, 2048),
}


class Sampler(StrEnum):
    """automatic1111 sampler names (``sampler_name``), the ones every install ships."""

    EULER_A = "Euler a"
    EULER = "Euler"
    LMS = "LMS"
    HEUN = "Heun"
    DPM2 = "DPM2"
    DPM_2M = "DPM++ 2M"
    DPM_2M_KARRAS = "DPM++ 2M Karras"
    DPM_SDE = "DPM++ SDE"
    DPM_SDE_KARRAS = "DPM++ SDE Karras"
    DDIM = "DDIM"
    UNIPC = "UniPC"


class StrictModel(BaseModel):
    """Request models reject unknown fields, so a typo is a 422 and not a silent default."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PromptSpec(StrictModel):
    text: Annotated[str, Field(min_length=1, max_length=2000)]
    count: Annotated[int, Field(ge=1, le=MAX_IMAGES_PER_ORDER, strict=True)]


class SeedPolicy(StrictModel):
    """``random``: each prompt gets a random base seed when the order is accepted.
    ``fixed``: every prompt's images use seeds ``base, base+1, …`` (reproducible runs)."""

    kind: Literal["random", "fixed"] = "random"
    base: Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)] | None = None

    @model_validator(mode="after")
    def _base_only_when_fixed(self) -> Self:
        if self.kind == "fixed" and self.base is None:
            raise ValueError("a fixed seed policy needs 'base'")
        if self.kind == "random" and self.base is not None:
            raise ValueError("'base' is only allowed with kind 'fixed'")
        return self


class JobSpec(StrictModel):
    prompts: Annotated[list[PromptSpec], Field(min_length=1, max_length=100)]
    negative_prompt: Annotated[str, Field(max_length=2000)] = ""
    model_family: ModelFamily = ModelFamily.SD15
    width: Annotated[int, Field(strict=True)] = 512
    height: Annotated[int, Field(strict=True)] = 512
    steps: Annotated[int, Field(ge=1, le=150, strict=True)] = 20
    cfg_scale: Annotated[Decimal, Field(ge=1, le=30, max_digits=4, decimal_places=1)] = Decimal(7)
    sampler: Sampler = Sampler.EULER_A
    seed: SeedPolicy = SeedPolicy()

    @field_validator("prompts")
    @classmethod
    def _order_size(cls, prompts: list[PromptSpec]) -> list[PromptSpec]:
        total = sum(p.count for p in prompts)
        if total > MAX_IMAGES_PER_ORDER:
            raise ValueError(f"an order holds at most {MAX_IMAGES_PER_ORDER} images, got {total}")
        return prompts

    @field_validator("width", "height")
    @classmethod
    def _side(cls, value: int, info: ValidationInfo) -> int:
        family = info.data.get("model_family")
        if family is None:  # the family itself failed validation; that error is enough
            return value
        low, high = SIZE_LIMITS[family]
        if value % 64 or not low <= value <= high:
            raise ValueError(
                f"must be a multiple of 64 between {low} and {high} for {family.value}, got {value}"
            )
        return value

    @property
    def total_images(self) -> int:
        return sum(p.count for p in self.prompts)

    @property
    def megapixels(self) -> Decimal:
        return Decimal(self.width * self.height) / 1_000_000


class Constraints(StrictModel):
    deadline: AwareDatetime | None = None
    max_price_per_image_usd: Annotated[Decimal, Field(ge=0, le=1000, decimal_places=6)] | None = (
        None
    )
    late_work: Literal["continue", "stop"] = Field(
        default="continue",
        description="past the deadline (or the accepted completion time where none is given): "
        "'continue' renders on for at most a day, then the order expires; 'stop' expires it at "
        "once. Either way only delivered images are charged.",
    )


class ConstraintsIn(Constraints):
    """Constraints as a customer sends them: the deadline must still lie ahead.

    Stored quotes and orders use :class:`Constraints`, which must load after the deadline passed.
    """

    @field_validator("deadline")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            value = value.astimezone(UTC)
        except OverflowError as error:  # e.g. year 9999 at UTC-12 is year 10000 in UTC
            raise ValueError("deadline is out of range") from error
        if value <= datetime.now(UTC):
            raise ValueError("deadline must be in the future")
        return value
