#!/usr/bin/env bash
# Every benchmark the README quotes for the embedded default model, one after another (never
# two at once: several report latency ratios). Each command's stdout goes to OUT/NAME.json,
# its progress to OUT/NAME.err, a copy of results/ after it to OUT/NAME.res/, and its wall
# time to OUT/chain.log. About 70 minutes on 2 cores (bench stream alone: 30).
# Usage: OUT=runs/bench_all bash scripts/bench_all.sh
set -u
OUT=${OUT:-runs/bench_all}
REVERIE=${REVERIE:-.venv/bin/reverie}
mkdir -p "$OUT"
run() {
  name=$1; shift
  echo "== $name $(date +%T)" >>"$OUT/chain.log"
  start=$(date +%s)
  "$REVERIE" "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"
  echo "$name exit $? wall $(( $(date +%s) - start )) s" >>"$OUT/chain.log"
  mkdir -p "$OUT/$name.res" && cp results/* "$OUT/$name.res/" 2>/dev/null
}
run eval_base eval base --json --seed 0
run qa0 bench qa --json --seed 0 --n-people 60 --n-cd 10 --cd-steps 300
run qa1 bench qa --json --seed 1 --n-people 60 --n-cd 0
run long bench long --json --seed 0 --n-per-length 48 --needle-trials 2
run seq bench sequential --T 1000 --seed 0 --no-guard
run seq_bank bench sequential --T 1000 --seed 0 --no-guard --strategy bank
run seq_guard bench sequential --T 1000 --seed 0 --strategy bank
run policy bench policy --json --seed 0 --seeds 10 --sleep-nights 6
run stream bench stream --json --seed 0
run qa200 bench qa --json --seed 0 --n-people 200 --n-cd 0
echo "== done $(date +%T)" >>"$OUT/chain.log"
