"""The AWS CDK app: one thin stack composed of one construct per capability.

Everything it deploys is named in ``infra/definitions.py`` (the local stack reads the same file).
``python -m infra.cdk.app`` synthesises offline into ``cdk.out/``; ``make synth`` also builds the
Lambda layer and runs cdk-nag and cfn-lint.
"""

from __future__ import annotations

import os

# jsii runs on the machine's Node 20; its end-of-life banner says nothing about our template.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
