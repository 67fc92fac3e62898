#!/bin/sh
# One start for every marketplace. Flags (or nothing: the image's CMD) go to the worker, which
# also appends $COMMANDLINE_ARGS as automatic1111 does; anything else is a command to run:
#   Vast.ai     runtype "args": the flags, the credential in COMMANDLINE_ARGS
#   RunPod      args / dockerArgs: python launch.py FLAGS, the credential in COMMANDLINE_ARGS
#   TensorDock  docker run --env-file (COMMANDLINE_ARGS=...), no arguments
#   AWS EC2     docker run --env-file (COMMANDLINE_ARGS=--api-auth ...) IMAGE FLAGS
set -e
case "${1:-}" in
  "" | -*) exec python -m worker "$@" ;;
  *) exec "$@" ;;
esac
