"""``python -m worker``: see :mod:`worker.server`."""

import sys

from worker.server import main

sys.exit(main())
