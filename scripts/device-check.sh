#!/usr/bin/env bash
# One GPU-machine session's checks, in order of value: kernels against the CPU reference, the CUDA
# forward against transformers, then timings. Logs and results go to $OUT. Run through the device
# tool after `npm run build && scripts/device-stage.sh`, with carry [".device", "build/Release", "dist"]:
#   source .device/enter.sh && bash scripts/device-check.sh [presets...]
# SKIP_KERNELS, SKIP_MODEL, SKIP_HF leave those parts out; KERNELS=1 adds per-op timings to the bench.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
vitest() { node node_modules/vitest/vitest.mjs run "$@"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.free,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
# Each kernel family on its own, so a hang names itself.
[ -n "${SKIP_KERNELS:-}" ] || for t in rmsnorm graph linear qkv_rope attention embedding sampling topk scatter argmax tree; do
  timeout 120 bash -c "$(declare -f vitest); vitest --reporter=verbose test/gpu/kernels.test.ts -t $t" >> "$OUT/kernels.log" 2>&1
  echo "kernels $t rc=$?"
done
if [ -z "${SKIP_MODEL:-}" ]; then
  timeout 300 python3 test/fixtures/make_fixtures.py --qwen3-4b-layers 4 /tmp/q4b > "$OUT/q4b.log" 2>&1; echo "q4b rc=$?"
  E3_QWEN3_4B_DIR=/tmp/q4b/qwen3-4b-4l timeout 300 bash -c "$(declare -f vitest); vitest test/gpu/model.test.ts test/gpu/speculative.test.ts" > "$OUT/model.log" 2>&1; echo "model rc=$?"
fi
for preset in "${@:-qwen3-4b}"; do
  node -e "import('./dist/model/presets.js').then(m => console.log(JSON.stringify(m.PRESETS['$preset'])))" > /tmp/preset.json
  [ -z "${SKIP_HF:-}" ] && timeout 240 python3 bench/hf_decode.py /tmp/preset.json "$OUT/hf-$preset.json" > "$OUT/hf-$preset.log" 2>&1; echo "hf $preset rc=$?"
  ref=(); [ -s "$OUT/hf-$preset.json" ] && ref=(--reference "$OUT/hf-$preset.json")
  timeout 300 node bin/eagle3.js bench --random "$preset" ${KERNELS:+--kernels} "${ref[@]}" --json "$OUT/bench-$preset.json" > "$OUT/bench-$preset.log" 2>&1; echo "bench $preset rc=$?"
done
grep -hE "✓|×|FAIL|Tests |Error" "$OUT"/kernels.log "$OUT"/model.log 2>/dev/null | head -60
tail -n 20 "$OUT"/bench-*.log
