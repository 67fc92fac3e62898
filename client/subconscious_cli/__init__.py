"""Customer client for the Subconscious text-to-image ordering API.

:mod:`subconscious_cli.client` is the library (quote, order, watch, download, or all of it in
:meth:`Client.run`); the ``subconscious`` command in :mod:`subconscious_cli.main` is a thin
shell over it; :mod:`subconscious_cli.models` types the API's answers.
"""

from subconscious_cli.client import ApiError, Client, OutsideTerms
from subconscious_cli.models import OrderOut, QuoteOption, QuoteOut, RunResult
from subconscious_cli.version import __version__

__all__ = [
    "ApiError",
    "Client",
    "OrderOut",
    "OutsideTerms",
    "QuoteOption",
    "QuoteOut",
    "RunResult",
    "__version__",
]
