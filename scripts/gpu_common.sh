# Shared by the scripts/gpu_*.sh training scripts (sourced, not run): the environment on a
# lent GPU machine, and what comes back from it.

# Faker and gguf travel as wheels in .whl/ (the GPU machine reaches no package index).
gpu_setup() {
  mkdir -p "$OUT" "$RUNS"
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
  fi
  export PYTHONPATH=src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
}

# One weights file per hypernetwork run in $OUT (the trip back carries a few files only),
# each run's last lines and monitor, and every log in $OUT/logs.tgz.
gpu_collect() {
  for r in "$@"; do
    cp "$RUNS/$r/ckpt/model.safetensors" "$OUT/$r.safetensors" 2>/dev/null
    tail -n 2 "$RUNS/$r.out"
    grep acc_single "$RUNS/$r/log.jsonl" | tail -n 1
  done
  tar czf "$OUT/logs.tgz" -C "$RUNS" --exclude='*.pt' --exclude='*.safetensors' .
  ls -la "$OUT"
}
