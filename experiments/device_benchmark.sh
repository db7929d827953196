#!/usr/bin/env bash
# The accelerator rows of docs/speed.md, in one command on a GPU machine whose
# Python has JAX with its CUDA plugin (and PyTorch for the baseline rows):
#
#     OUT=runs/device bash experiments/device_benchmark.sh
#
# Writes $OUT/benchmark.json (experiments/benchmark.py's document), $OUT/log and $OUT/gpu.txt.
set -u -o pipefail
OUT=${OUT:-runs/device}
PY=${PY:-python3}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import jax, flax, optax, sys; print(sys.version.split()[0], 'jax', jax.__version__,
  'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
export PYTHONUNBUFFERED=1
"$PY" experiments/benchmark.py \
  --clients="${CLIENTS:-5,20,100,1000}" \
  --modes=engine_seq,engine_vmap,python_loop,single_client \
  --repeats="${REPEATS:-3}" --sweep_runs="${SWEEP_RUNS:-4,8}" --sweep_rounds=5 \
  --torch_device=cuda --torch_python="$PY" --noprofile \
  --json="$OUT/benchmark.json" 2>&1 | grep -v "^ \|^[{}]$" | tee "$OUT/log"
