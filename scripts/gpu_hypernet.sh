#!/usr/bin/env bash
# Train hypernetwork variants on a lent GPU, side by side: the embedded base model is so
# small that one training process leaves the GPU mostly idle, so three share it.
# Each run fits its step count to BUDGET seconds (reverie train hypernet --max-seconds).
# Usage (on the GPU machine, from the repository root; Faker travels as a wheel in .whl/,
# carried with runs/gpu/more):
#   BUDGET=450 OUT=/some/dir bash scripts/gpu_hypernet.sh
# Afterwards, on the CPU: reverie train hypernet --out DIR --init DIR ... or evaluate with
# reverie bench qa after copying a run's ckpt/model.safetensors into a hypernet folder.
set -u
BUDGET=${BUDGET:-450}
OUT=${OUT:-runs/gpu}
RUNS=${RUNS:-/tmp/gpu-runs}
source scripts/gpu_common.sh
gpu_setup
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
HN=src/reverie/assets/default/hypernet
run() {
  name=$1; shift
  python3 -m reverie.cli train hypernet --out "$RUNS/$name" --device "${DEVICE:-cuda}" --max-seconds "$BUDGET" \
    --steps 1000000 --eval-every 1000000 "$@" >"$RUNS/$name.out" 2>&1
  echo "$name exit $?"
}
# Session 2 (the first session's runs are in README's history): continue from the best
# single-document run of the first session (MORE: its ckpt folder, carried to the GPU machine)
# with composition groups for the whole budget, three ways, and the shipped one once more.
MORE=${MORE:-runs/gpu/more}
MIX=${MIX:-runs/gpu2/mix}
if [ "${STAGE:-1}" = 1 ]; then
  NAMES="comp2 mix mixloc shipped2"
  run comp2 --init "$MORE" --docs-per-step 32 --group-sizes 1,2,4,8 --shared 1 --lr 3e-4 --seed 11 &
  run mix --init "$MORE" --docs-per-step 32 --group-sizes 1,1,1,2,4,8 --shared 1 --lr 3e-4 --seed 12 &
  run mixloc --init "$MORE" --docs-per-step 32 --group-sizes 1,1,1,2,4,8 --shared 1 --lr 3e-4 --local 3 --seed 13 &
  run shipped2 --init $HN --docs-per-step 32 --group-sizes 1,1,2,4,8 --shared 1 --lr 3e-4 --seed 14 &
else
  # Stage 2: stage 1's best composition run (shipped2) again, a second seed and learning
  # rate, and stage 1's best single-document run (mix, carried) with composition groups.
  NAMES="s2a s2b s2c s2d"
  run s2a --init $HN --docs-per-step 32 --group-sizes 1,1,2,4,8 --shared 1 --lr 3e-4 --seed 14 &
  run s2b --init $HN --docs-per-step 32 --group-sizes 1,1,2,4,8 --shared 1 --lr 5e-4 --seed 15 &
  run s2c --init "$MIX" --docs-per-step 32 --group-sizes 1,2,4,8 --shared 1 --lr 3e-4 --seed 16 &
  run s2d --init "$MIX" --docs-per-step 32 --group-sizes 1,1,2,4,8 --shared 1 --lr 2e-4 --seed 17 &
fi
wait
gpu_collect $NAMES
