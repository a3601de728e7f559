/** `eagle3 bench`: measured speed, printed as a table and written as JSON with device, commit and date. */
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { IterationTimesSnapshot } from "../batch/iteration-times.js";
import { type KernelRow, benchKernels } from "../bench/kernel-bench.js";
import { benchTarget, type TargetBenchResult } from "../bench/target-bench.js";
import { PRESETS } from "../model/presets.js";
import { DATASETS, loadPrompts } from "../bench/datasets.js";
import { plotSpeculative } from "../bench/plot.js";
import { REPEATS, RUN_STEPS, type SpecBenchRow, benchSpeculative } from "../bench/spec-bench.js";
import { benchRounds, roundTable } from "../bench/round-bench.js";
import type { TargetConfig } from "../model/config.js";
import { native } from "../native.js";
import { type Parsed, UsageError, num, parse, speculationOf, str, treeOf } from "./args.js";

const HELP = `usage: eagle3 bench --model DIR --draft DIR [options]     baseline against EAGLE-3 on real prompts
       eagle3 bench --random PRESET [options]               the target's speed on random weights of a real shape

EAGLE-3 (--model/--draft):
  --dataset LIST       ${DATASETS.join(", ")} or FILE.jsonl, comma-separated (default mtbench)
  --prompts N          distinct prompts per dataset (default 256), reused in turn where a run needs more
  --run-steps N        decode steps a timed run lasts about: that many tokens' waves of batch-size
                       requests (default ${RUN_STEPS})
  --batch LIST         batch sizes (default 1,4,16,32)
  --max-tokens N       tokens per request (default 128)
  --repeats N          timed runs of each engine, alternating (default ${REPEATS})
  --temperature T      0 = greedy (default)
  --tree S,K,N         draft steps, top-k and draft tokens (default: chosen per batch size)
  --speculation MODE   auto (default: speculate where it measures faster) or always
  --device cuda|cpu  --tokenizer DIR  --max-context N
  --plot FILE.svg      speed-up and accepted length per dataset and batch size
Random weights (--random):
  --random PRESET      ${Object.keys(PRESETS).join(", ")}
  --batch LIST         decode batch sizes (default 1,8,32,64)
  --context N          context length for decode and verification (default 1024)
  --steps N            timed decode steps per batch size (default 64)
  --prefill N          prompt tokens for the prefill figure (default 2048)
  --reference FILE     JSON of {"transformersTokensPerSecond": x, ...} measured in the same run
  --kernels            also time each op alone: decode steps of batch 1, 8 and 32, verification of 16 and 64 tree tokens
  --layers N           cut the preset to N layers (profiling)
  --rounds             instead: speculative rounds with a random EAGLE-3 head against decode steps
                       (batches default 1,4,16,32; --steps N timed rounds, default 24; --tree S,K,N)
Both:
  --json FILE          write the result (device, commit, date included)`;

export async function run(argv: string[]): Promise<number> {
  const p = parse(argv, {
    random: { type: "string" }, batch: { type: "string" }, context: { type: "string" }, steps: { type: "string" },
    prefill: { type: "string" }, reference: { type: "string" }, json: { type: "string" }, kernels: { type: "boolean" },
    model: { type: "string" }, draft: { type: "string" }, dataset: { type: "string" }, prompts: { type: "string" },
    "max-tokens": { type: "string" }, "run-steps": { type: "string" }, temperature: { type: "string" }, tree: { type: "string" }, device: { type: "string" },
    tokenizer: { type: "string" }, "max-context": { type: "string" }, plot: { type: "string" }, layers: { type: "string" },
    speculation: { type: "string" }, rounds: { type: "boolean" }, repeats: { type: "string" },
  }, HELP);
  if (!p) return 0;
  if (str(p, "model") || str(p, "draft")) return runSpeculative(p);
  const preset = str(p, "random");
  if (!preset) throw new UsageError("give --model DIR --draft DIR, or --random PRESET", HELP);
  if (!PRESETS[preset]) throw new UsageError(`unknown preset "${preset}" (known: ${Object.keys(PRESETS).join(", ")})`, HELP);
  const config = { ...PRESETS[preset], numLayers: num(p, "layers") ?? PRESETS[preset].numLayers };
  const context = num(p, "context") ?? 1024;
  if (p.values.rounds) return runRounds(p, preset, config, context);
  const batches = list(p, "batch", "1,8,32,64");
  const result = await benchTarget({
    preset, config, batches, context, decodeSteps: num(p, "steps") ?? 64,
    verifyTokens: [8, 16, 32, 64], prefillTokens: num(p, "prefill") ?? 2048, seed: 0, log: (l) => console.error(l),
  });
  const shapes: Array<[number, number]> = [[1, 1], [8, 1], [32, 1], [1, 16], [1, 64]];  // [sequences, tokens each]
  const kernels = p.values.kernels ? shapes.flatMap(([seqs, perSeq]) => benchKernels(config, seqs, context, perSeq)) : undefined;
  if (kernels) console.log(kernelTable(kernels));
  const refFile = str(p, "reference");
  const reference = refFile ? JSON.parse(await readFile(refFile, "utf8")) : undefined;
  console.log(table(result, reference));
  const out = str(p, "json");
  if (out) {
    const record = { kind: "target", date: new Date().toISOString(), commit: commit(), node: process.version, ...result, reference, kernels };
    await writeFile(out, JSON.stringify(record, null, 2) + "\n");
  }
  return 0;
}

async function runSpeculative(p: Parsed): Promise<number> {
  const model = str(p, "model"), draft = str(p, "draft");
  if (!model || !draft) throw new UsageError("--model and --draft go together", p.help);
  const datasets = (str(p, "dataset") ?? "mtbench").split(",");
  const batches = list(p, "batch", "1,4,16,32");
  const tree = treeOf(p);
  const repeats = num(p, "repeats") ?? REPEATS;
  if (!Number.isInteger(repeats) || repeats < 1) throw new UsageError(`--repeats must be a whole number of at least 1, got ${repeats}`, p.help);
  const runSteps = num(p, "run-steps") ?? RUN_STEPS;
  if (!Number.isInteger(runSteps) || runSteps < 1) throw new UsageError(`--run-steps must be a whole number of at least 1, got ${runSteps}`, p.help);
  const rows: SpecBenchRow[] = [];
  for (const dataset of datasets) {
    const prompts = await loadPrompts(dataset, num(p, "prompts") ?? 256);
    rows.push(...(await benchSpeculative({
      engine: {
        model, device: str(p, "device") as "cuda" | "cpu" | undefined, tokenizer: str(p, "tokenizer"),
        maxContext: num(p, "max-context"), tree,
        speculation: speculationOf(p),
      },
      draft, dataset, prompts, batches, maxTokens: num(p, "max-tokens") ?? 128, temperature: num(p, "temperature") ?? 0,
      repeats, runSteps, onProgress: (done, total, label) => process.stderr.write(`\r[${"#".repeat(done).padEnd(total)}] ${label}`.padEnd(60) + (done === total ? "\n" : "")),
    })));
  }
  console.log(speculativeTable(rows));
  const plot = str(p, "plot");
  if (plot) await writeFile(plot, plotSpeculative(rows, `EAGLE-3: ${model} + ${draft}`));
  const out = str(p, "json");
  if (out) {
    const device = str(p, "device") === "cpu" ? "cpu" : native().cudaStatus().gpus[0]?.name;
    const record = { kind: "speculative", date: new Date().toISOString(), commit: commit(), node: process.version, device, model, draft, rows };
    await writeFile(out, JSON.stringify(record, null, 2) + "\n");
  }
  return 0;
}

async function runRounds(p: Parsed, preset: string, config: TargetConfig, context: number): Promise<number> {
  const tree = treeOf(p);
  const rows = await benchRounds({
    preset, config, batches: list(p, "batch", "1,4,16,32"), context, rounds: num(p, "steps") ?? 24, tree, seed: 0,
    log: (l) => console.error(l),
  });
  console.log(roundTable(preset, rows));
  const out = str(p, "json");
  if (out) {
    const record = { kind: "rounds", date: new Date().toISOString(), commit: commit(), node: process.version, preset, device: native().cudaStatus().gpus[0]?.name, rows };
    await writeFile(out, JSON.stringify(record, null, 2) + "\n");
  }
  return 0;
}

function list(p: Parsed, name: string, def: string): number[] {
  const v = (str(p, name) ?? def).split(",").map(Number);
  if (v.some((b) => !Number.isInteger(b) || b < 1)) throw new UsageError(`--${name} takes positive integers`, p.help);
  return v;
}

export function speculativeTable(rows: SpecBenchRow[]): string {
  return [
    "| dataset | batch | baseline tok/s (spread of runs) | EAGLE-3 tok/s | speed-up [range over runs] (of ideal) | accepted length | acceptance by position | ms per round: draft / verify / accept (profiled) | device / host ms per iteration | baseline step ms | policy: tokens per sequence per ms, with joins (share of time in joins) |",
    "|---|---:|---:|---:|---:|---:|---|---|---|---:|---|",
    ...rows.map((r) => `| ${r.dataset} | ${r.batch} | ${r.baselineTokensPerSecond} (${(100 * r.baselineSpread).toFixed(1)}%) | ${r.eagleTokensPerSecond} | ${r.speedup}× [${r.speedupRange[0]}–${r.speedupRange[1]}] (${r.ofIdeal === null ? "—" : `${Math.round(100 * r.ofIdeal)}%`}) | ${r.meanAcceptedLength} | ` +
      `${r.acceptanceByPosition.map((x) => x.toFixed(2)).join(" ")} | ${r.phases.draftMs} / ${r.phases.verifyMs} / ${r.phases.acceptMs} | ` +
      `${r.phases.deviceMs} / ${r.phases.hostMs} | ${r.phases.baselineStepMs} | ` +
      `${(r.choices ?? []).map((c) => `${c.best ? "**" : ""}${c.choice} ${c.effectiveRate.toFixed(3)}${c.best ? "**" : ""}${c.joinShare ? ` (${(100 * c.joinShare).toFixed(0)}%)` : ""}`).join(", ")} |`),
    "",
    "| dataset | batch | baseline: iterations × mean ms (mean tokens) [graph captures] | EAGLE-3: iterations × mean ms (mean tokens) [graph captures] |",
    "|---|---:|---|---|",
    ...rows.map((r) => `| ${r.dataset} | ${r.batch} | ${iterationTimes(r.iterationTimes.baseline)} | ${iterationTimes(r.iterationTimes.eagle)} |`),
  ].join("\n");
}

function iterationTimes(t: IterationTimesSnapshot): string {
  return Object.entries(t).map(([kind, k]) =>
    `${kind} ${k.count} × ${(k.ms / k.count).toFixed(3)} (${Math.round(k.tokens / k.count)} tok)${k.captures ? ` [${k.captures} captures: ${k.captureMs.toFixed(1)} ms]` : ""}`).join(", ");
}

/** The commit results name: EAGLE3_COMMIT, else the one dist was built from (scripts/stamp-commit.mjs). */
function commit(): string {
  if (process.env.EAGLE3_COMMIT) return process.env.EAGLE3_COMMIT;
  try {
    return readFileSync(fileURLToPath(new URL("../commit.txt", import.meta.url)), "utf8").trim();
  } catch {
    return "unknown";  // dist not built from a git checkout
  }
}

export function table(r: TargetBenchResult, reference?: Record<string, number>): string {
  const lines = [
    `${r.preset} on ${r.device}: weights ${r.weightGiB} GiB, copy ${r.copyBandwidthGBs} GB/s, GEMM peak ${r.gemmPeakTflops} TFLOP/s, peak memory ${r.peakMemoryGiB} GiB`,
    "",
    "| batch | context | tok/s, steps one at a time | ms/step | native call ms | device ms | tok/s, pipelined (ms/step) | roofline tok/s | of roofline: one at a time / pipelined |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...r.decode.map((d) => `| ${d.batch} | ${d.context} | ${d.tokensPerSecond} | ${d.stepMs} | ${d.callMs} | ${d.deviceMs} | ` +
      `${d.pipelinedTokensPerSecond} (${d.pipelinedStepMs}) | ${d.rooflineTokensPerSecond} | ` +
      `${(d.fractionOfRoofline * 100).toFixed(1)}% / ${(d.pipelinedFractionOfRoofline * 100).toFixed(1)}% |`),
    "",
    `verification (batch 1): ${r.verify.map((v) => `${v.tokens} tokens ${v.relativeToOne}×`).join(", ")}`,
    `prefill ${r.prefill.tokens} tokens: ${r.prefill.tokensPerSecond} tok/s, ${r.prefill.tflops} TFLOP/s = ${(r.prefill.fractionOfGemmPeak * 100).toFixed(1)}% of GEMM peak`,
  ];
  if (reference?.transformersTokensPerSecond)
    lines.push(`transformers (same shape, same run): ${reference.transformersTokensPerSecond} tok/s at batch 1`);
  return lines.join("\n");
}

function kernelTable(rows: KernelRow[]): string {
  return ["| op | shape | µs | GB/s | per step |", "|---|---|---:|---:|---:|",
    ...rows.map((r) => `| ${r.op} | ${r.shape} | ${r.us} | ${r.gbPerS} | ${r.perStep} |`)].join("\n");
}
