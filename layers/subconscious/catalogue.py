"""One name per GPU, whatever the provider calls it.

Providers and data sources spell the same card many ways: "RTX 4090", "NVIDIA GeForce RTX 4090"
(RunPod ids), "geforcertx4090-pcie-24gb" (TensorDock v0Name), "A100 80GB (p4de.24xlarge)"
(instance names in brackets), "NVIDIA A100-SXM4-80GB" (nvidia-smi). ``canonical`` reduces all of
them to one name, and ``memory_gb`` gives that card's memory. Pure: no I/O.

Choices that matter for money:

* A100 40GB and A100 80GB are different cards (memory and, in the crowd data, speed: 14.5 vs
  23.2 it/s at batch 1) and keep different names. An A100 whose memory the name does not give is
  taken as the 40GB one (the smaller and slower: the safe side for a quote).
* H100 SXM (also sold as "SXM5", "HGX", "80GB HBM3", or plain "H100" by GCP, CoreWeave, Oracle,
  Nebius, whose instances are SXM boards) is "H100". H100 PCIe stays "H100 PCIe" because our
  data does tell them apart: the crowd's H100 PCIe median (SD 1.5, batch 8: 2.5 images/s) is
  well under our own measurement on an H100 SXM (6.35 images/s). H100 NVL (94 GB, PCIe boards)
  is "H100 NVL". The form factor is not split for A100 80GB, H200 or V100 (no data that would
  price them differently), except V100 16GB vs 32GB (different memory).
* GeForce cards with two memory sizes under one name (RTX 4060 Ti, RTX 5060 Ti: 8 or 16 GB) get
  the smaller memory.
* A name not in the catalogue comes back cleaned up (brackets, "NVIDIA"/"GeForce"/"Tesla" and
  form-factor words dropped, upper case), never as an error; the throughput model prices such a
  card as slow.
"""

from __future__ import annotations

import re

# canonical name → memory in GB (the figure providers quote: GiB in fact)
MEMORY_GB: dict[str, int] = {
    "A10": 24,
    "A10G": 24,
    "A30": 24,
    "A40": 48,
    "A100 40GB": 40,
    "A100 80GB": 80,
    "B200": 180,  # usable memory as rented (Lambda: gpu_1x_b200_sxm6_180gb)
    "H100": 80,
    "H100 PCIe": 80,
    "H100 NVL": 94,
    "H200": 141,
    "L4": 24,
    "L40": 48,
    "L40S": 48,
    "P4000": 8,
    "RTX 2080 Ti": 11,
    "RTX 3060": 12,
    "RTX 3060 Ti": 8,
    "RTX 3070": 8,
    "RTX 3070 Ti": 8,
    "RTX 3080": 10,
    "RTX 3080 Ti": 12,
    "RTX 3090": 24,
    "RTX 3090 Ti": 24,
    "RTX 4000 Ada": 20,
    "RTX 4060": 8,
    "RTX 4060 Ti": 8,
    "RTX 4070": 12,
    "RTX 4070 SUPER": 12,
    "RTX 4070 Ti": 12,
    "RTX 4070 Ti SUPER": 16,
    "RTX 4080": 16,
    "RTX 4080 SUPER": 16,
    "RTX 4090": 24,
    "RTX 5060 Ti": 8,
    "RTX 5070": 12,
    "RTX 5070 Ti": 16,
    "RTX 5080": 16,
    "RTX 5090": 32,
    "RTX 6000 Ada": 48,
    "RTX A4000": 16,
    "RTX A4500": 20,
    "RTX A5000": 24,
    "RTX A6000": 48,
    "T4": 16,
    "V100 16GB": 16,
    "V100 32GB": 32,
    "V100S": 32,
}

_BRACKETS = re.compile(r"\(.*?\)")
_MEMORY = re.compile(r"(?<!\d)(\d{1,3})\s*gb", re.I)
_WORD = re.compile(r"[a-z0-9]+")
# words that name a vendor, a form factor, a memory type or a generation suffix, not a card
_NOISE_WORDS = re.compile(r"^(pcie|sxm\d?|hgx|nvl|hbm\d?e?|gddr\d?x?|\d+gb|generation|gen)$")
_VENDOR = re.compile(r"nvidia|geforce|tesla|quadro")


def _key(name: str) -> str:
    """A spelling-free key: 'NVIDIA GeForce RTX 4070 Ti SUPER' → 'rtx4070tisuper'."""
    words = [w for w in _WORD.findall(name.lower()) if not _NOISE_WORDS.match(w)]
    return _VENDOR.sub("", "".join(words))


# every catalogue name is reachable through its own key; variants are resolved in canonical()
_BY_KEY: dict[str, str] = {_key(name): name for name in MEMORY_GB}


def canonical(name: str) -> str:
    """The catalogue's name for ``name``; an unknown card's name comes back cleaned up."""
    lower = name.lower()
    memory = _MEMORY.search(name)
    gb = int(memory.group(1)) if memory else None
    key = _key(_BRACKETS.sub(" ", name))
    if key == "a100":
        return "A100 80GB" if gb == 80 else "A100 40GB"
    if key == "h100":
        if "nvl" in lower:
            return "H100 NVL"
        return "H100 PCIe" if "pcie" in lower else "H100"
    if key == "v100":
        return "V100 32GB" if gb == 32 else "V100 16GB"
    if key in _BY_KEY:
        return _BY_KEY[key]
    return _cleaned(name)


def _cleaned(name: str) -> str:
    words = _WORD.findall(_BRACKETS.sub(" ", name).lower())
    kept = [_VENDOR.sub("", w) for w in words if not _NOISE_WORDS.match(w)]
    kept = [w for w in kept if w]
    kept += [w for w in words if re.fullmatch(r"\d+gb", w)]  # memory tells cards apart
    return " ".join(kept).upper() or "UNKNOWN"


def memory_gb(canonical_name: str) -> int | None:
    """Memory of a catalogue card; None for a name the catalogue does not know."""
    return MEMORY_GB.get(canonical_name)
