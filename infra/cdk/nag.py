"""cdk-nag (AwsSolutions) findings this stack accepts, each with its reason, recorded on the
construct it concerns (``Validations.of(...).acknowledge``, cdk-nag 3)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """``rule`` as cdk-nag names it (``AwsSolutions-IAM5[Resource::...]``)."""
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{PACK}::{rule}", reason=reason))
