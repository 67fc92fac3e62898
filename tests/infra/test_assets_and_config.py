"""The code assets (no Docker: pip wheels for Lambda's platform) and the deployer's context."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aws_cdk import App

from infra import definitions as d
from infra.cdk import assets
from infra.cdk.config import StackConfig
from infra.cdk.schedules import rate

DEV_ONLY = {"aws-cdk-lib", "constructs", "cdk-nag", "cfn-lint", "jsii", "moto", "pytest", "mypy"}


def _requirement_names(path: Path) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {line.split("==")[0].split("[")[0].lower() for line in lines if line}


def test_the_layer_installs_requirements_txt_alone_and_it_holds_no_dev_tool() -> None:
    command = assets.pip_command(Path("/tmp/layer/python"))
    assert command[command.index("--requirement") + 1] == str(assets.REQUIREMENTS)
    assert _requirement_names(assets.REQUIREMENTS).isdisjoint(DEV_ONLY)
    assert not any(a.startswith("-r") for a in assets.REQUIREMENTS.read_text().split())


def test_the_layer_is_built_for_lambdas_platform_from_wheels_only() -> None:
    command = assets.pip_command(Path("/tmp/layer/python"))
    option = {command[i]: command[i + 1] for i in range(len(command) - 1)}
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    # d.LAMBDA_ARCHITECTURE == arm64; Lambda's python3.12 (Amazon Linux 2023) runs both
    assert platforms == ["manylinux_2_28_aarch64", "manylinux2014_aarch64"]
    assert option["--python-version"] == d.LAMBDA_RUNTIME.removeprefix("python") == "3.12"
    assert option["--implementation"] == "cp"
    assert "--only-binary=:all:" in command


def test_the_functions_asset_holds_the_functions_package_only(tmp_path: Path) -> None:
    staged = assets.stage_functions(tmp_path / "functions-asset")
    assert sorted(p.name for p in staged.iterdir()) == ["functions"]
    assert (staged / "functions" / "api" / "handler.py").exists()
    # the web console ships beside the API handler that serves it
    assert (staged / "functions" / "api" / "console" / "index.html").exists()
    assert not list(staged.rglob("__pycache__"))


def test_a_layer_is_rebuilt_when_a_source_is_newer_than_its_stamp(tmp_path: Path) -> None:
    assert not assets.is_fresh(tmp_path)
    stamp = tmp_path / assets.STAMP
    stamp.write_text("{}")
    newest = max(p.stat().st_mtime for p in assets._sources())
    os.utime(stamp, (newest + 10, newest + 10))
    assert assets.is_fresh(tmp_path)
    os.utime(stamp, (newest - 10, newest - 10))
    assert not assets.is_fresh(tmp_path)


def test_context_tunes_rates_limits_and_settings() -> None:
    app = App(
        context={
            "schedule_rates": '{"subc-dispatch": 120}',
            "machine_age_limit_s": "7200",
            "providers": '["vast"]',
            "settings": {"SUBC_MAX_LIVE_RUNS": 3},
            "alarm_email": "ops@example.com",
        }
    )
    config = StackConfig.from_context(app.node, Path("layer"), Path("code"))
    assert config.schedule_rates_s == {**d.SCHEDULES, "subc-dispatch": 120}
    assert config.machine_age_limit_s == 7200
    assert config.providers == ("vast",)
    assert config.settings == {"SUBC_MAX_LIVE_RUNS": "3"}
    assert config.alarm_email == "ops@example.com"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"schedule_rates": {"subc-api": 60}}, "names no scheduled function"),
        ({"settings": {"PATH": "/"}}, "SUBC_"),
    ],
)
def test_context_mistakes_are_refused(context: dict[str, object], message: str) -> None:
    app = App(context=context)
    with pytest.raises(ValueError, match=message):
        StackConfig.from_context(app.node, Path("layer"), Path("code"))


@pytest.mark.parametrize("seconds", [30, 90])
def test_eventbridge_rates_are_whole_minutes(seconds: int) -> None:
    with pytest.raises(ValueError, match="whole minutes"):
        rate(seconds)
