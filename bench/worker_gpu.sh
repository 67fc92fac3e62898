#!/usr/bin/env bash
# The worker benchmark on a lent GPU machine (no network, no diffusers, no model weights).
#
# Carry `.whl` (diffusers and importlib_metadata wheels, see worker/README.md), then:
#   bash bench/worker_gpu.sh [bench.worker options...]
# Results: $OUT/$NAME.json (rewritten after every measurement) and $OUT/$NAME.log, NAME=worker
# unless set (two runs in one call keep both).
# Default set on an H100: SD 1.5 512² and SDXL 1024² at batch 16/8/1, eager a1111-style and
# lean paths, SD 1.5 batch 16 compiled; about 5-6 minutes (SDXL's compile is skipped by the
# --budget-s default of 360 s unless time is left; run it alone with
#   bash bench/worker_gpu.sh --models sdxl --batches 8 --paths a1111,lean,compiled --compile sdxl:8).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error DIFFUSERS_VERBOSITY=error
OUT="${OUT:-/tmp/worker-bench}"
NAME="${NAME:-worker}"
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
python3 -m bench.worker --device cuda --out "$OUT/$NAME.json" "$@" 2>&1 | tee "$OUT/$NAME.log"
