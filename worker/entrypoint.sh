#!/bin/sh
# One start for every marketplace. Flags (or nothing: the image's CMD) go to the worker, which
# also appends $COMMANDLINE_ARGS as automatic1111 does; anything else is a command to run:
#   Vast.ai     runtype "args": the flags, the credential in COMMANDLINE_ARGS
#   RunPod      dockerArgs: bash -c 'exec python launch.py FLAGS --api-auth "$A1111_AUTH"'
#   TensorDock  docker run --env-file (COMMANDLINE_ARGS=...), no arguments
set -e
case "${1:-}" in
  "" | -*) exec python -m worker "$@" ;;
  *) exec "$@" ;;
esac
