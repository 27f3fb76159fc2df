#!/usr/bin/env bash
# Train hypernetwork variants on a lent GPU, side by side: the embedded base model is so
# small that one training process leaves the GPU mostly idle, so three share it.
# Each run fits its step count to BUDGET seconds (reverie train hypernet --max-seconds).
# Usage (on the GPU machine, from the repository root; Faker travels as a wheel in .whl/):
#   BUDGET=450 OUT=/some/dir bash scripts/gpu_hypernet.sh
# Afterwards, on the CPU: reverie train hypernet --out DIR --init DIR ... or evaluate with
# reverie bench qa after copying a run's ckpt/model.safetensors into a hypernet folder.
set -u
BUDGET=${BUDGET:-450}
OUT=${OUT:-runs/gpu}
RUNS=${RUNS:-/tmp/gpu-runs}
mkdir -p "$OUT" "$RUNS"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
HN=src/reverie/assets/default/hypernet
run() {
  name=$1; shift
  python3 -m reverie.cli train hypernet --out "$RUNS/$name" --device "${DEVICE:-cuda}" --max-seconds "$BUDGET" \
    --steps 1000000 --eval-every 1000000 "$@" >"$RUNS/$name.out" 2>&1
  echo "$name exit $?"
}
# Continue the shipped hypernetwork's last stage with 4x the documents per step.
run cont --init $HN --docs-per-step 32 --group-sizes 1,2,4,8 --shared 1 --lr 3e-4 --seed 3 &
# Same start, single documents only: how far injection alone goes with more data.
run single --init $HN --docs-per-step 32 --lr 3e-4 --seed 4 &
# Stage 1 from scratch with 4x the documents per step.
run scratch --docs-per-step 32 --lr 1e-3 --seed 5 &
wait
for r in cont single scratch; do
  cp "$RUNS/$r/ckpt/model.safetensors" "$OUT/$r.safetensors" 2>/dev/null
  tail -n 3 "$RUNS/$r.out"
done
tar czf "$OUT/logs.tgz" -C "$RUNS" --exclude='*.pt' --exclude='*.safetensors' .
ls -la "$OUT"
