#!/bin/bash
# A GPU machine without internet whose image has jax (CUDA), torch and orbax: flax 0.12.12, optax and
# ml_collections travel as wheels in .whl/, fetched beforehand where PyPI is reachable with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl flax==0.12.12 optax==0.2.8 ml_collections==1.1.0
# Then: OUT=DIR bash benchmarks/gpu.sh [--budget S]; gpu.json and gpu.log land in $OUT.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.txt"
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
python3 -m benchmarks.gpu --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu.log"
