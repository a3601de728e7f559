/** `eagle3 bench`: measured speed, printed as a table and written as JSON with device, commit and date. */
import { execFileSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { benchTarget, type TargetBenchResult } from "../bench/target-bench.js";
import { PRESETS } from "../model/presets.js";
import { UsageError, num, parse, str } from "./args.js";

const HELP = `usage: eagle3 bench --random PRESET [options]

  --random PRESET      random bf16 weights of a real shape: ${Object.keys(PRESETS).join(", ")}
  --batch LIST         decode batch sizes (default 1,8,32,64)
  --context N          context length for decode and verification (default 1024)
  --steps N            timed decode steps per batch size (default 64)
  --prefill N          prompt tokens for the prefill figure (default 2048)
  --reference FILE     JSON of {"transformersTokensPerSecond": x, ...} measured in the same run
  --json FILE          write the result (device, commit, date included)`;

export async function run(argv: string[]): Promise<number> {
  const p = parse(argv, {
    random: { type: "string" }, batch: { type: "string" }, context: { type: "string" }, steps: { type: "string" },
    prefill: { type: "string" }, reference: { type: "string" }, json: { type: "string" },
  }, HELP);
  if (!p) return 0;
  const preset = str(p, "random");
  if (!preset) throw new UsageError("--random PRESET is required", HELP);
  const config = PRESETS[preset];
  if (!config) throw new UsageError(`unknown preset "${preset}" (known: ${Object.keys(PRESETS).join(", ")})`, HELP);
  const batches = (str(p, "batch") ?? "1,8,32,64").split(",").map(Number);
  if (batches.some((b) => !Number.isInteger(b) || b < 1)) throw new UsageError("--batch takes positive integers", HELP);
  const result = await benchTarget({
    preset, config, batches, context: num(p, "context") ?? 1024, decodeSteps: num(p, "steps") ?? 64,
    verifyTokens: [8, 16, 32, 64], prefillTokens: num(p, "prefill") ?? 2048, seed: 0, log: (l) => console.error(l),
  });
  const refFile = str(p, "reference");
  const reference = refFile ? JSON.parse(await readFile(refFile, "utf8")) : undefined;
  console.log(table(result, reference));
  const out = str(p, "json");
  if (out) {
    const record = { kind: "target", date: new Date().toISOString(), commit: commit(), node: process.version, ...result, reference };
    await writeFile(out, JSON.stringify(record, null, 2) + "\n");
  }
  return 0;
}

function commit(): string {
  if (process.env.EAGLE3_COMMIT) return process.env.EAGLE3_COMMIT;
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
}

export function table(r: TargetBenchResult, reference?: Record<string, number>): string {
  const lines = [
    `${r.preset} on ${r.device}: weights ${r.weightGiB} GiB, copy ${r.copyBandwidthGBs} GB/s, GEMM peak ${r.gemmPeakTflops} TFLOP/s, peak memory ${r.peakMemoryGiB} GiB`,
    "",
    "| batch | context | tok/s | ms/step | device ms | roofline tok/s | of roofline |",
    "|---:|---:|---:|---:|---:|---:|---:|",
    ...r.decode.map((d) => `| ${d.batch} | ${d.context} | ${d.tokensPerSecond} | ${d.stepMs} | ${d.deviceMs} | ${d.rooflineTokensPerSecond} | ${(d.fractionOfRoofline * 100).toFixed(1)}% |`),
    "",
    `verification (batch 1): ${r.verify.map((v) => `${v.tokens} tokens ${v.relativeToOne}×`).join(", ")}`,
    `prefill ${r.prefill.tokens} tokens: ${r.prefill.tokensPerSecond} tok/s, ${r.prefill.tflops} TFLOP/s = ${(r.prefill.fractionOfGemmPeak * 100).toFixed(1)}% of GEMM peak`,
  ];
  if (reference?.transformersTokensPerSecond)
    lines.push(`transformers (same shape, same run): ${reference.transformersTokensPerSecond} tok/s at batch 1`);
  return lines.join("\n");
}
