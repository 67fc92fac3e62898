"""automatic1111's launcher name, so ``python launch.py FLAGS`` (RunPod's start command) starts
the worker: the image copies this file next to the ``worker`` package."""

import sys

from worker.cli import main

if __name__ == "__main__":
    sys.exit(main())
