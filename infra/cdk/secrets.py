"""Secrets: provider API keys and the machine-credential key, one JSON secret."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra import definitions as d
from infra.cdk.nag import acknowledge
from subconscious.settings import SECRET_FIELDS

GENERATED = "machine_auth_secret"  # ours: generated at deploy; the others the deployer sets


class Secrets(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        template = {field: "" for field in SECRET_FIELDS if field != GENERATED}
        self.provider_keys = secretsmanager.Secret(
            self,
            "ProviderKeys",
            secret_name=d.PROVIDER_SECRET,
            description="Provider API keys (set by the deployer) and the key from which each "
            "render run's machine credential is derived (generated). JSON; keys are "
            "subconscious.settings.SECRET_FIELDS.",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps(template),
                generate_string_key=GENERATED,
                password_length=48,
                exclude_punctuation=True,
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.provider_keys,
            "AwsSolutions-SMG4",
            "The provider keys are issued by Vast.ai, RunPod and TensorDock; no rotation "
            "Lambda can mint new ones. Rotate them at the provider and put the new value.",
        )
