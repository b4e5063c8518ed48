#!/usr/bin/env bash
# Model-only throughput on a lent GPU machine, in one prepared command (about 3-5 minutes on an
# H200). That machine has Python 3.12, torch (CUDA), numpy and opencv, but no av and no ray:
# gpu_bench.py imports vidcolor.model only. Run it from the repository root:
#
#     bash benchmarks/gpu.sh                 # results under $OUT when set, else benchmarks/
#     bash benchmarks/gpu.sh --weights PATH  # extra arguments go to both gpu_bench.py calls
#
# Step 1 times fp16 + channels_last forwards (and Colorizer.predict from numpy, and CUDA-graph
# replay) at the working sizes of a 1080p source, batches 8/16/32. Step 2 compares
# torch.compile at one size, under its own time limit so a slow compile cannot lose step 1.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
DEST="${OUT:-benchmarks}"
mkdir -p "$DEST"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'

# Without shipped weights: random models of the CPU recipe's shape (32x7) and the paper's (64x8);
# speed does not depend on the weight values.
ARCH=(--arch 32x7,64x8)

echo "== step 1: eager fp16 + channels_last, predict, CUDA graphs"
"$PY" benchmarks/gpu_bench.py "${ARCH[@]}" --graphs --out "$DEST/gpu_results.json" "$@"
rc1=$?

echo "== step 2: torch.compile (one size, batch 16; limit 240 s)"
timeout 240 "$PY" benchmarks/gpu_bench.py "${ARCH[@]}" --short-sides 256 --batches 16 --compile \
    --out "$DEST/gpu_results_compile.json" "$@"
rc2=$?
[ $rc2 -eq 124 ] && echo "torch.compile step stopped at its time limit"

exit $rc1
