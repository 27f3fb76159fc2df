#!/usr/bin/env bash
# The needle stages on a lent GPU (issue 4), one call:
#  1. (only with BASE_STAGE=1) a base-model needle stage from the shipped weights (reverie
#     train base --init --needle-from 0), exported over the working copy's assets/default
#     (the shipped hypernetwork is copied aside first). The shipped base model already went
#     through one (it reads the needle in context), so by default this is skipped;
#  2. four continuations of the shipped hypernetwork on that base, side by side, with
#     needle haystacks among their single documents (--p-needle), each fitted to BUDGET s.
# Usage (on the GPU machine, from the repository root; Faker travels as a wheel in .whl/):
#   BUDGET=450 OUT=/some/dir bash scripts/gpu_needle.sh
# or on another base model folder (carried): NEEDLE_BASE=runs/some_model BUDGET=450 ...
# What comes back: each hypernetwork run's weights, logs.tgz (and the new base's weights and
# manifest with BASE_STAGE=1). On the CPU: put them together in a model folder and run
# reverie bench long --model DIR and reverie bench qa --model DIR.
set -u
BUDGET=${BUDGET:-300}
OUT=${OUT:-runs/gpu_needle}
RUNS=${RUNS:-/tmp/gpu-runs}
source scripts/gpu_common.sh
gpu_setup
ASSETS=src/reverie/assets/default
rm -rf /tmp/hn_shipped && cp -r $ASSETS/hypernet /tmp/hn_shipped
MODEL=${NEEDLE_BASE:-$ASSETS}
if [ -n "${BASE_STAGE:-}" ] && [ -z "${NEEDLE_BASE:-}" ]; then
  python3 -m reverie.cli train base --out "$RUNS/base" --init $ASSETS --steps "${BASE_STEPS:-2500}" --needle-from 0 \
    --p-needle "${P_NEEDLE:-0.3}" --lr-needle "${LR_NEEDLE:-5e-4}" --device cuda --export >"$RUNS/base.out" 2>&1
  echo "base exit $?"
  grep needle_ctx "$RUNS/base/log.jsonl" | python3 -c "import json,sys; [print({k: r[k] for k in ('step', 'ctx', 'closed', 'needle_ctx')}) for r in map(json.loads, sys.stdin)]"
  cp $ASSETS/model.safetensors "$OUT/base_model.safetensors"
  cp $ASSETS/manifest.json "$OUT/base_manifest.json"
fi
run() {
  name=$1; shift
  python3 -m reverie.cli train hypernet --model "$MODEL" --out "$RUNS/$name" --device cuda --max-seconds "$BUDGET" \
    --steps 1000000 --eval-every 1000000 --init /tmp/hn_shipped --docs-per-step 32 --shared 1 "$@" >"$RUNS/$name.out" 2>&1
  echo "$name exit $?"
}
NAMES="n3 n5 n5s n5hi"
run n3 --group-sizes 1,1,2,4,8 --p-needle 0.3 --lr 2e-4 --seed 21 &
run n5 --group-sizes 1,1,2,4,8 --p-needle 0.5 --lr 2e-4 --seed 22 &
run n5s --group-sizes 1 --p-needle 0.5 --lr 2e-4 --seed 23 &
run n5hi --group-sizes 1,1,2,4,8 --p-needle 0.5 --lr 4e-4 --seed 24 &
wait
gpu_collect $NAMES
