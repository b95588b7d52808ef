#!/bin/bash
# A GPU machine without internet whose image has jax (CUDA), torch and orbax: flax 0.12.12, optax and
# ml_collections travel as wheels in .whl/, fetched beforehand where PyPI is reachable with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl flax==0.12.12 optax==0.2.8 ml_collections==1.1.0 peft
# Then: OUT=DIR bash benchmarks/gpu.sh --budget 150 (about 8 min: the step runs started within 150 s, then
# 90 + 90 + 120 s of LM comparisons); gpu.json, gpu.log, lm.log and the results JSON lines land in $OUT.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.txt"
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
python3 -m benchmarks.gpu --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu.log"
# Qwen2.5-1.5B in bf16, the same weights on both sides, PyTorch on the same GPU: greedy generation at batch 1 and 16
# (vs HF generate) and a LoRA SFT step (vs transformers + PEFT); each appends to benchmarks/results/*.jsonl.
for b in 1 16; do
  timeout 90 python3 -m benchmarks.lm_generate --size full --dtype bf16 --batch $b --prompt 256 --new 64 \
    2>&1 | tee -a "$OUT/lm.log"
done
timeout 120 python3 -m benchmarks.lm_train_step --size full --dtype bf16 --batch 4 --seq 512 --answer 64 \
  2>&1 | tee -a "$OUT/lm.log"
cp benchmarks/results/*.jsonl "$OUT/" 2>/dev/null
