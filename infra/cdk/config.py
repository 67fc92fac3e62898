"""What a deployer may tune, from CDK context (``cdk.json`` or ``-c key=value``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from constructs import Node

from infra import definitions as d

ROOT = Path(__file__).resolve().parents[2]


def _parsed(value: Any) -> Any:
    """``-c key=value`` gives strings; cdk.json gives JSON values: accept both."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@dataclass(frozen=True)
class StackConfig:
    layer_dir: Path  # a Lambda layer folder (python/...), built by `make synth`
    code_dir: Path  # a folder holding the ``functions`` package
    schedule_rates_s: dict[str, int] = field(default_factory=lambda: dict(d.SCHEDULES))
    providers: tuple[str, ...] = ("vast", "runpod", "tensordock", "ec2")
    settings: dict[str, str] = field(default_factory=dict)  # extra SUBC_* for every function
    api_rate_limit: int = 20  # requests/s over the whole stage
    api_burst_limit: int = 40
    authorizer_cache_s: int = 300  # a disabled key may work this long after it is disabled
    image_retention_days: int = 30
    machine_age_limit_s: int = 6 * 3600
    spend_rate_limit_usd_per_hour: float = 10.0
    alarm_email: str | None = None

    @classmethod
    def from_context(cls, node: Node, layer_dir: Path, code_dir: Path) -> StackConfig:
        def get(key: str, default: Any) -> Any:
            value = node.try_get_context(key)
            return default if value is None else _parsed(value)

        base = cls(layer_dir=layer_dir, code_dir=code_dir)
        rates = {**base.schedule_rates_s, **get("schedule_rates", {})}
        unknown = set(rates) - set(d.SCHEDULES)
        if unknown:
            raise ValueError(f"schedule_rates names no scheduled function: {sorted(unknown)}")
        settings = get("settings", {})
        if not all(str(k).startswith("SUBC_") for k in settings):
            raise ValueError("settings takes SUBC_* variables only")
        return cls(
            layer_dir=layer_dir,
            code_dir=code_dir,
            schedule_rates_s={k: int(v) for k, v in rates.items()},
            providers=tuple(get("providers", list(base.providers))),
            settings={str(k): str(v) for k, v in settings.items()},
            api_rate_limit=int(get("api_rate_limit", base.api_rate_limit)),
            api_burst_limit=int(get("api_burst_limit", base.api_burst_limit)),
            authorizer_cache_s=int(get("authorizer_cache_s", base.authorizer_cache_s)),
            image_retention_days=int(get("image_retention_days", base.image_retention_days)),
            machine_age_limit_s=int(get("machine_age_limit_s", base.machine_age_limit_s)),
            spend_rate_limit_usd_per_hour=float(
                get("spend_rate_limit_usd_per_hour", base.spend_rate_limit_usd_per_hour)
            ),
            alarm_email=get("alarm_email", None),
        )
