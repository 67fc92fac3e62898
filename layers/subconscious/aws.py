"""boto3 clients, built on first use and cached (never at import: cold start matters).

Only the ``dal`` modules call these. ``AWS_ENDPOINT_URL`` (read by botocore itself) points every
client at the local stack's moto server.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _config() -> Any:
    from botocore.config import Config

    # A render step stores with 8 upload threads; the local stack runs several render steps
    # in one process over shared clients: botocore's default pool of 10 would churn.
    return Config(
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=3,
        read_timeout=20,
        max_pool_connections=32,
    )


@cache
def client(service: str) -> Any:
    import boto3  # imported here: handlers that never touch AWS skip its ~160 ms import

    config = _config()
    if service == "s3":
        from botocore.config import Config

        # SigV4 presigned links (botocore would sign SigV2 in us-east-1; AWS deprecated it)
        config = config.merge(Config(signature_version="s3v4"))
    return boto3.session.Session().client(service, config=config)


@cache
def table(name: str) -> Any:
    import boto3

    return boto3.session.Session().resource("dynamodb", config=_config()).Table(name)


def reset() -> None:
    """Forget cached clients (tests that switch endpoints or moto contexts)."""
    client.cache_clear()
    table.cache_clear()
