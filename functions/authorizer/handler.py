"""API Gateway REQUEST authorizer: the ``x-api-key`` header → its tenant (the tenants table).

An unknown key is refused at the edge, before the API Lambda runs. API Gateway's contract: an
error whose message is exactly ``Unauthorized`` answers 401.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from subconscious.errors import Unauthorized
from subconscious.logic.auth import KEY_HEADER, allow_policy, authenticate
from subconscious.observability import logger
from subconscious.services import services


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        tenant_id = authenticate(services(), headers.get(KEY_HEADER))
    except Unauthorized:
        logger.info("authorizer refused a key")
        raise Unauthorized("Unauthorized") from None
    return allow_policy(tenant_id, str(event["methodArn"]))
