#!/usr/bin/env bash
# The worker benchmark on a lent GPU machine (no network, no diffusers, no model weights).
#
# Carry `.whl` (diffusers and importlib_metadata wheels, see worker/README.md), then:
#   [PATHS=a1111,lean,compiled] [NAME=worker] bash bench/worker_gpu.sh [bench.worker options...]
# Each path runs in its own process (cuDNN's algorithm cache is process-wide), adding its
# results to $OUT/$NAME.json (rewritten after every measurement); the log is $OUT/$NAME.log.
# Choose paths with PATHS, not --paths; --budget-s counts per process.
# Default set on an H100: SD 1.5 512² and SDXL 1024² at batch 16/8/1, eager a1111-style and
# lean paths, SD 1.5 batch 16 compiled; about 6-7 minutes (SDXL's compile is skipped by the
# --budget-s default of 360 s unless time is left; run it alone with
#   bash bench/worker_gpu.sh --models sdxl --batches 8 --compile sdxl:8).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error DIFFUSERS_VERBOSITY=error
OUT="${OUT:-/tmp/worker-bench}"
NAME="${NAME:-worker}"
PATHS="${PATHS:-a1111,lean,compiled}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if ! python3 -c "import diffusers" 2>/dev/null; then
  ls .whl/*.whl >/dev/null  # fails loudly when .whl was not carried
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -c "import diffusers, torch, transformers; print('diffusers', diffusers.__version__, \
'transformers', transformers.__version__, 'torch', torch.__version__, torch.cuda.is_available())"
# One process per path (PATHS, not --paths): cuDNN's algorithm cache is process-wide, so a path
# run after another in one process reuses the algorithms the first one chose.
rm -f "$OUT/$NAME.json" "$OUT/$NAME.log"
for path in ${PATHS//,/ }; do
  python3 -m bench.worker "$@" --device cuda --out "$OUT/$NAME.json" --append --paths "$path" 2>&1 \
    | tee -a "$OUT/$NAME.log"
done
