#!/usr/bin/env bash
# Needle stage of the hypernetwork on a lent GPU: four continuations of the shipped
# hypernetwork side by side, on a base model that has had the needle stage
# (reverie train base --needle-from; its exported folder carried to the GPU machine as
# BASE), each with needle haystacks among its single documents (--p-needle).
# Usage (on the GPU machine, from the repository root; Faker travels as a wheel in .whl/):
#   BASE=runs/needle_model BUDGET=450 OUT=/some/dir bash scripts/gpu_needle.sh
# Afterwards, on the CPU: copy a run's weights into BASE/hypernet with its config
# (reverie.hypernet.store.save_hypernet) and run reverie bench long --model BASE.
set -u
BUDGET=${BUDGET:-450}
OUT=${OUT:-runs/gpu_needle}
RUNS=${RUNS:-/tmp/gpu-runs}
BASE=${BASE:-runs/needle_model}
mkdir -p "$OUT" "$RUNS"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
HN=src/reverie/assets/default/hypernet
run() {
  name=$1; shift
  python3 -m reverie.cli train hypernet --model "$BASE" --out "$RUNS/$name" --device cuda --max-seconds "$BUDGET" \
    --steps 1000000 --eval-every 1000000 --init $HN --docs-per-step 32 --shared 1 "$@" >"$RUNS/$name.out" 2>&1
  echo "$name exit $?"
}
NAMES="n3 n5 n5s n5hi"
run n3 --group-sizes 1,1,2,4,8 --p-needle 0.3 --lr 2e-4 --seed 21 &
run n5 --group-sizes 1,1,2,4,8 --p-needle 0.5 --lr 2e-4 --seed 22 &
run n5s --group-sizes 1 --p-needle 0.5 --lr 2e-4 --seed 23 &
run n5hi --group-sizes 1,1,2,4,8 --p-needle 0.5 --lr 4e-4 --seed 24 &
wait
for r in $NAMES; do
  cp "$RUNS/$r/ckpt/model.safetensors" "$OUT/$r.safetensors" 2>/dev/null
  tail -n 2 "$RUNS/$r.out"
  grep acc_single "$RUNS/$r/log.jsonl" | tail -n 1
done
tar czf "$OUT/logs.tgz" -C "$RUNS" --exclude='*.pt' --exclude='*.safetensors' .
ls -la "$OUT"
