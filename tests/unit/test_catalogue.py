"""The GPU catalogue: every name our data and markets use maps to one card the model prices."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from subconscious.catalogue import MEMORY_GB, canonical, memory_gb
from subconscious.throughput_model import UNMEASURED, ThroughputModel

ROOT = Path(__file__).resolve().parents[2]
CROWD = ROOT / "layers" / "subconscious" / "data" / "gpu_throughput.csv"
PRICES = ROOT / "infra" / "local" / "data" / "gpu_prices.csv"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("geforcertx4090-pcie-24gb", "RTX 4090"),
        ("NVIDIA GeForce RTX 3090", "RTX 3090"),
        ("A100 80GB PCIe", "A100 80GB"),
        ("A100 SXM4 80GB", "A100 80GB"),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB"),
        ("A100 40GB (p4d.24xlarge)", "A100 40GB"),
        ("A100 SXM4 40GB", "A100 40GB"),
        ("A100", "A100 40GB"),
        ("H100 SXM (80GB HBM3)", "H100"),
        ("H100 80GB HBM3", "H100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("H100 SXM5", "H100"),
        ("H100 (HGX)", "H100"),
        ("h100-sxm5-80gb", "H100"),
        ("H100 PCIe", "H100 PCIe"),
        ("H100 PCIe (gpu_1x_h100_pcie_80gb)", "H100 PCIe"),
        ("H100 NVL", "H100 NVL"),
        ("H200 NVL", "H200"),
        ("Tesla T4", "T4"),
        ("T4 (g4dn.xlarge)", "T4"),
        ("L40S", "L40S"),
        ("L40S (BM.GPU.L40S.4)", "L40S"),
        ("RTX A6000", "RTX A6000"),
        ("rtxa6000-pcie-48gb", "RTX A6000"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("RTX 6000 Ada", "RTX 6000 Ada"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada"),
        ("NVIDIA GeForce RTX 4070 Ti SUPER", "RTX 4070 Ti SUPER"),
        ("Tesla V100-SXM2-16GB", "V100 16GB"),
        ("V100 SXM2 32GB", "V100 32GB"),
        ("V100 16GB", "V100 16GB"),
        ("V100S PCIe 32GB", "V100S"),
        ("Quadro P4000", "P4000"),
        ("B200 (gpu_1x_b200_sxm6_180gb)", "B200"),
    ],
)
def test_provider_names_map_to_one_card(name: str, expected: str) -> None:
    assert canonical(name) == expected
    assert expected in MEMORY_GB


def test_catalogue_names_are_fixed_points() -> None:
    for name in MEMORY_GB:
        assert canonical(name) == name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA Gaudi 3", "GAUDI 3"),
        ("Instinct MI300X 192GB (pod)", "INSTINCT MI300X 192GB"),
        ("geforcertx9999-pcie-24gb", "RTX9999 24GB"),
        ("", "UNKNOWN"),
        ("(NVIDIA)", "UNKNOWN"),
    ],
)
def test_unknown_names_come_back_cleaned(name: str, expected: str) -> None:
    assert canonical(name) == expected
    assert memory_gb(canonical(name)) is None


def test_memory() -> None:
    assert memory_gb("A100 40GB") == 40
    assert memory_gb("A100 80GB") == 80
    assert memory_gb(canonical("NVIDIA GeForce RTX 4090")) == 24
    assert memory_gb("H100 NVL") == 94


def _names(path: Path, providers: tuple[str, ...] | None = None) -> set[str]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return {r["gpu"] for r in rows if providers is None or r["provider"].startswith(providers)}


def test_every_crowd_gpu_is_priced_from_data() -> None:
    model = ThroughputModel()
    for name in _names(CROWD):
        assert canonical(name) in MEMORY_GB, name
        assert model.knows(name), name


def test_every_marketplace_gpu_is_known_or_a_documented_unknown() -> None:
    model = ThroughputModel()
    names = _names(PRICES, ("Vast.ai", "RunPod"))
    assert len(names) > 20
    for name in names:
        card = canonical(name)
        assert card in MEMORY_GB, name
        assert model.knows(name) or card in UNMEASURED, name
    for card in UNMEASURED:
        assert card in MEMORY_GB
        assert not model.knows(card)
