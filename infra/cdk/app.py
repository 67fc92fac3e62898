"""The CDK app's entry (``cdk.json`` runs it; so does ``make synth``).

    python -m infra.cdk.app      # synthesise into cdk.out/, cdk-nag (AwsSolutions) checks it

The layer folder is the only thing read from the environment, here and nowhere else:
``SUBC_LAYER_DIR`` (default ``build/layer``, built with pip for Lambda's platform when missing or
older than its sources). Tests pass a small stub folder instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.cdk import assets
from infra.cdk.config import ROOT, StackConfig
from infra.cdk.stack import STACK_NAME, SubconsciousStack

# Feature flags this stack relies on (given to App here, so that a direct run and the CDK CLI,
# which reads cdk.json, synthesise the same template).
FEATURE_FLAGS = {
    # access-log delivery through a bucket policy, not ACLs (the buckets enforce owner)
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
}


def new_app(outdir: str | None = None) -> App:
    return App(context=FEATURE_FLAGS, outdir=outdir)


def build(app: App, config: StackConfig) -> SubconsciousStack:
    stack = SubconsciousStack(app, STACK_NAME, config=config)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stack


def main() -> None:
    layer_dir = os.environ.get("SUBC_LAYER_DIR")
    if layer_dir is None:
        layer = ROOT / "build" / "layer"
        assets.ensure_layer(layer)
    else:
        layer = Path(layer_dir)
    code = assets.stage_functions(ROOT / "build" / "functions")
    # the CDK CLI names its output folder (CDK_OUTDIR); a direct run writes cdk.out/
    app = new_app(None if os.environ.get("CDK_OUTDIR") else str(ROOT / "cdk.out"))
    build(app, StackConfig.from_context(app.node, layer, code))
    assembly = app.synth()  # raises when cdk-nag reports an unacknowledged error
    unacknowledged = nag_violations(Path(assembly.directory))
    for line in unacknowledged:
        print(line, file=sys.stderr)
    if unacknowledged:
        raise SystemExit(f"{len(unacknowledged)} unacknowledged cdk-nag finding(s)")


def nag_violations(outdir: Path) -> list[str]:
    """Every finding cdk-nag left unacknowledged, warnings included (synth fails on errors
    only)."""
    report = outdir / "validation-report.json"
    if not report.exists():
        return []
    plugins = json.loads(report.read_text()).get("pluginReports", [])
    return [
        f"{v['severity']} {v['ruleName']} at {c['constructPath']}"
        for plugin in plugins
        for v in plugin.get("violations", [])
        for c in v.get("violatingConstructs", [])
    ]


if __name__ == "__main__":
    main()
