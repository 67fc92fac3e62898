"""Step Functions: start a render run, ask whether one still runs."""

from __future__ import annotations

import json
from typing import Any

from subconscious import aws


class RunExecutions:
    def __init__(self, state_machine_arn: str, client: Any = None) -> None:
        self.arn = state_machine_arn
        self._sfn = client or aws.client("stepfunctions")

    def start(self, run_id: str, payload: dict[str, Any]) -> str:
        """Named after the run, so a retried start cannot create a second execution."""
        try:
            response = self._sfn.start_execution(
                stateMachineArn=self.arn, name=run_id, input=json.dumps(payload)
            )
        except self._sfn.exceptions.ExecutionAlreadyExists:
            return self.arn_for(run_id)
        return str(response["executionArn"])

    def is_running(self, execution_arn: str) -> bool:
        """False also for an execution that never started (a tick that died before starting)."""
        try:
            status = self._sfn.describe_execution(executionArn=execution_arn)["status"]
        except self._sfn.exceptions.ExecutionDoesNotExist:
            return False
        return bool(status == "RUNNING")

    def arn_for(self, run_id: str) -> str:
        return execution_arn(self.arn, run_id)


def execution_arn(state_machine_arn: str, run_id: str) -> str:
    """An execution's ARN follows from its state machine and name: known before it starts."""
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{run_id}"
