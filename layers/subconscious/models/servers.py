"""What the settings say about servers: which server our images run (``WorkerKind``) and the
automatic1111 servers an operator set up by hand (``StaticServer``).

The settings, the planner (``planner/workers.py``) and the static adapter (``market/static.py``)
all read these; here they sit below all three, so settings.py imports no layer above models.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, SecretStr


class WorkerKind(StrEnum):
    AUTOMATIC1111 = "automatic1111"
    LEAN = "lean"


class StaticServer(BaseModel):
    url: str
    gpu: str
    gpu_memory_gb: int = 24
    # What an hour of this server is worth to the planner (0 for a customer's own server).
    usd_per_hour: Decimal = Decimal(0)
    api_auth: SecretStr | None = None  # "user:password" of its --api-auth, if it has one
