#!/usr/bin/env bash
# The GPU check as one command for the device machine (it has torch, transformers, peft and accelerate, but
# not trl or datasets): installs the wheels carried in .whl/ (see benchmarks/gpu/README.md), then runs
# check.py into $OUT. Extra arguments go to check.py (--dry-run runs it here, on the CPU, without wheels).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -d .whl ] && command -v nvidia-smi >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PYTHON=${PYTHON:-python3}
exec "$PYTHON" benchmarks/gpu/check.py --out "${OUT:-runs/gpu_check}" "$@"
