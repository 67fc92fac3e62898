"""Subconscious Systems: batch text-to-image on rented GPUs, quoted against a deadline and budget.

The shared package every Lambda imports (shipped as a Lambda layer):
- ``models``: pydantic models of jobs, quotes, orders, tasks, offers, machines and runs;
- ``logic``: plain functions over models (what the handlers call);
- ``dal``: DynamoDB, S3, SQS and Step Functions behind small classes (the only boto3 users);
- ``market``: GPU providers behind one interface (the only provider-API users);
- ``render``: the automatic1111 client and PNG checks;
- ``planner``: pure quote and dispatch decisions.
"""
