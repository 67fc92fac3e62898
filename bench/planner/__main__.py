import sys

from bench.planner.report import main

sys.exit(main())
