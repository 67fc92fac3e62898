"""The AWS stack, synthesised once per test session (jsii starts Node: seconds, not millis).

The layer is a stub folder here (``make synth`` builds the real one with pip for Lambda's
platform); the functions' asset is staged as ``make synth`` stages it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.cdk import assets
from infra.cdk.app import build, nag_violations, new_app
from infra.cdk.config import StackConfig
from infra.cdk.stack import STACK_NAME, SubconsciousStack


@dataclass(frozen=True)
class Synth:
    stack: SubconsciousStack
    template: dict[str, Any]  # the synthesised CloudFormation template
    outdir: Path

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.template["Resources"].items() if r["Type"] == kind}

    def logical_id_of_function(self, name: str) -> str:
        (logical,) = (
            k
            for k, r in self.resources("AWS::Lambda::Function").items()
            if r["Properties"]["FunctionName"] == name
        )
        return logical


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    root = tmp_path_factory.mktemp("cdk")
    layer = root / "layer"
    (layer / "python" / "subconscious").mkdir(parents=True)
    (layer / "python" / "subconscious" / "__init__.py").write_text("")
    code = assets.stage_functions(root / "functions")
    app = new_app(str(root / "cdk.out"))
    stack = build(app, StackConfig(layer_dir=layer, code_dir=code))
    app.synth()  # cdk-nag runs here; an unacknowledged error raises
    outdir = root / "cdk.out"
    template = json.loads((outdir / f"{STACK_NAME}.template.json").read_text())
    return Synth(stack=stack, template=template, outdir=outdir)


@pytest.fixture(scope="session")
def nag_report(synth: Synth) -> list[str]:
    return nag_violations(synth.outdir)
