"""Throughput model: GPU names, scaling by steps and pixels, batch sizes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from subconscious.models import JobSpec, ModelFamily
from subconscious.throughput import canonical_gpu, images_per_second, max_batch, rate


def job(**overrides: Any) -> JobSpec:
    body: dict[str, Any] = {"prompts": [{"text": "a", "count": 1}]}
    body.update(overrides)
    return JobSpec.model_validate(body)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("A100 80GB PCIe", "A100"),
        ("H100 SXM (80GB HBM3)", "H100"),
        ("H100 SXM", "H100"),
        ("A100 SXM4 40GB", "A100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("rtx 3090 ti", "RTX 3090 TI"),
        ("  RTX   4090  ", "RTX 4090"),
        ("L40S", "L40S"),
    ],
)
def test_canonical_gpu(name: str, canonical: str) -> None:
    assert canonical_gpu(name) == canonical


def test_aliases_share_a_rate() -> None:
    spec = job()
    assert images_per_second("NVIDIA GeForce RTX 4090", spec) == images_per_second("RTX 4090", spec)
    assert images_per_second("H100 SXM (80GB HBM3)", spec) == images_per_second("H100 PCIe", spec)


@pytest.mark.parametrize("gpu", ["RTX 4090", "H100", "A100", "RTX 3090", "Mystery GPU 9000"])
def test_double_steps_halves_the_rate(gpu: str) -> None:
    assert images_per_second(gpu, job(steps=40)) == images_per_second(gpu, job(steps=20)) / 2
    assert images_per_second(gpu, job(steps=10)) == images_per_second(gpu, job(steps=20)) * 2


@pytest.mark.parametrize("gpu", ["RTX 4090", "H100", "Mystery GPU 9000"])
def test_four_times_the_pixels_quarters_the_rate(gpu: str) -> None:
    small = images_per_second(gpu, job(width=512, height=512))
    assert images_per_second(gpu, job(width=1024, height=1024)) == small / 4
    assert images_per_second(gpu, job(width=1024, height=512)) == small / 2


@pytest.mark.parametrize("gpu", ["RTX 4090", "H100", "RTX 3090", "A100", "T4"])
def test_sdxl_is_slower_than_sd15_on_the_same_card(gpu: str) -> None:
    sd15 = images_per_second(gpu, job())
    sdxl = images_per_second(gpu, job(model_family="sdxl", width=1024, height=1024))
    assert Decimal(0) < sdxl < sd15


def test_sdxl_without_crowd_data_is_derived_from_sd15() -> None:
    # A100 has SD 1.5 rows only: SDXL is its SD 1.5 rate times 0.178.
    sd15 = rate("A100", ModelFamily.SD15, 512, 512, 20)
    assert rate("A100", ModelFamily.SDXL, 1024, 1024, 20) == sd15 * Decimal("0.178")


def test_known_rates_from_the_table() -> None:
    # best median at batch <= 8 divided by 20 steps (data/gpu_throughput.csv)
    assert rate("RTX 4090", ModelFamily.SD15, 512, 512, 20) == Decimal("3.95")
    assert rate("H100 PCIe", ModelFamily.SD15, 512, 512, 20) == Decimal("2.4785")


@pytest.mark.parametrize(("family", "side"), [(ModelFamily.SD15, 512), (ModelFamily.SDXL, 1024)])
def test_unknown_gpu_falls_back_to_half_an_image_per_second(family: ModelFamily, side: int) -> None:
    assert rate("Mystery GPU 9000", family, side, side, 20) == Decimal("0.5")
    assert rate("Mystery GPU 9000", family, side, side, 40) == Decimal("0.25")


def test_rates_are_decimal() -> None:
    assert type(images_per_second("RTX 4090", job())) is Decimal
    assert type(images_per_second("Mystery", job())) is Decimal


@pytest.mark.parametrize(
    ("overrides", "memory", "batch"),
    [
        ({}, 24, 8),  # 20 GB usable / 1.5 GB = 13 -> capped at 8
        ({}, 80, 8),
        ({}, 8, 2),  # 4 GB / 1.5
        ({}, 10, 4),  # 6 GB / 1.5
        ({}, 4, 1),  # nothing fits: still 1
        ({}, 1, 1),
        ({"width": 1024, "height": 1024}, 24, 3),  # 20 / 6
        ({"model_family": "sdxl", "width": 1024, "height": 1024}, 24, 1),  # 20 / 12
        ({"model_family": "sdxl", "width": 1024, "height": 1024}, 80, 6),  # 76 / 12
        ({"model_family": "sdxl", "width": 512, "height": 512}, 24, 6),  # 20 / 3
    ],
)
def test_max_batch(overrides: dict[str, Any], memory: int, batch: int) -> None:
    assert max_batch(job(**overrides), memory) == batch


@pytest.mark.parametrize("memory", [1, 8, 12, 16, 24, 48, 80, 141])
@pytest.mark.parametrize(
    "overrides",
    [{}, {"width": 1024, "height": 1024}, {"model_family": "sdxl", "width": 1024, "height": 1024}],
)
def test_max_batch_stays_between_1_and_8(overrides: dict[str, Any], memory: int) -> None:
    assert 1 <= max_batch(job(**overrides), memory) <= 8


@pytest.mark.parametrize("memory", [12, 24, 48])
def test_sdxl_1024_batches_are_smaller(memory: int) -> None:
    assert max_batch(job(model_family="sdxl", width=1024, height=1024), memory) < max_batch(
        job(), memory
    )


@pytest.mark.parametrize(
    "gpu", ["RTX 4090", "RTX 3090", "RTX 3060", "RTX 5090", "H100", "H200", "A30", "T4", "A100"]
)
def test_sdxl_1024_is_at_least_twice_as_slow_as_sd15_512(gpu: str) -> None:
    # on every card with data the crowd medians give SDXL/SD1.5 between 0.09 and 0.33
    sd15 = rate(gpu, ModelFamily.SD15, 512, 512, 20)
    sdxl = rate(gpu, ModelFamily.SDXL, 1024, 1024, 20)
    assert sdxl * 2 <= sd15


@pytest.mark.parametrize("gpu", ["B200", "L40S"])
def test_sdxl_only_cards_are_not_slower_at_sd15(gpu: str) -> None:
    sd15 = rate(gpu, ModelFamily.SD15, 512, 512, 20)
    sdxl = rate(gpu, ModelFamily.SDXL, 1024, 1024, 20)
    assert sdxl * 2 <= sd15
