"""The render run's Lambda steps. Step Functions passes ``{"run_id": ..., ...}``; the error a
step raises is what the state machine's Catch sees (the class name is the error name)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from subconscious.logic import render_run
from subconscious.observability import logger
from subconscious.services import services


class StepInput(BaseModel):
    run_id: str
    ready_timeout_s: int = 900
    slice_s: int = 600
    error: Any = None
    teardown_error: Any = None


@logger.inject_lambda_context(clear_state=True)
def provision(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = StepInput.model_validate(event)
    logger.append_keys(run_id=step.run_id)
    return render_run.provision(services(), step.run_id)


@logger.inject_lambda_context(clear_state=True)
def wait_ready(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = StepInput.model_validate(event)
    logger.append_keys(run_id=step.run_id)
    return render_run.wait_ready(services(), step.run_id, step.ready_timeout_s)


@logger.inject_lambda_context(clear_state=True)
def render(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = StepInput.model_validate(event)
    logger.append_keys(run_id=step.run_id)
    result = render_run.render_slice(services(), step.run_id, step.slice_s)
    return {"more": result.more, "images": result.images, "reason": result.reason}


@logger.inject_lambda_context(clear_state=True)
def teardown(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = StepInput.model_validate(event)
    logger.append_keys(run_id=step.run_id)
    return render_run.teardown(services(), step.run_id)


@logger.inject_lambda_context(clear_state=True)
def record(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = StepInput.model_validate(event)
    logger.append_keys(run_id=step.run_id)
    return render_run.record(services(), step.run_id, step.error, step.teardown_error)
