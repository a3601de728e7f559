/** `eagle3 inspect DIR`: what a checkpoint is and whether it will load (the coded error if not). */
import { Eagle3Error } from "../errors.js";
import { openCheckpoint } from "../model/checkpoint.js";
import { readTargetConfig } from "../model/config.js";
import { planQwenWeights } from "../model/qwen-weights.js";
import { UsageError, parse } from "./args.js";
import { count, tallyTensors } from "./format.js";
import { inspectDraft, printDraft } from "./inspect-draft.js";

const HELP = `usage: eagle3 inspect DIR [--json]
       eagle3 inspect DRAFT_DIR --target DIR [--json]

Reads DIR's config.json and safetensors headers (no weights) and reports the architecture, shapes,
dtypes, shards, parameters and bytes, and whether eagle3-node will load it. With --target, DIR is
an EAGLE-3 draft head read as it would be loaded beside that target: its flavour, shapes, the
target layers it takes features from, norms, RoPE and vocabulary mapping, checked against the
target. Exits 1 with the coded error when it will not load.`;

export async function run(argv: string[]): Promise<number> {
  const p = parse(argv, { json: { type: "boolean" }, target: { type: "string" } }, HELP, true);
  if (!p) return 0;
  if (p.positionals.length !== 1) throw new UsageError("give exactly one checkpoint directory", HELP);
  const dir = p.positionals[0];
  if (typeof p.values.target === "string") {
    const { report, problem } = await inspectDraft(dir, p.values.target);
    if (p.values.json) console.log(JSON.stringify(report, null, 2));
    else printDraft(report);
    return problem ? 1 : 0;
  }
  const report: Record<string, unknown> = { dir };
  let problem: Eagle3Error | undefined;
  try {
    const { config, ignoredFields } = await readTargetConfig(dir, { strict: false });
    report.config = config;
    if (ignoredFields.length) report.unknownConfigFields = ignoredFields;
    const ckpt = await openCheckpoint(dir);
    const { parameters, dtypes } = tallyTensors(ckpt.tensors.values());
    report.checkpoint = {
      format: ckpt.format, sharded: ckpt.sharded, files: ckpt.files.map((f) => f.path), tensors: ckpt.tensors.size,
      parameters, bytes: ckpt.totalBytes, dtypes,
    };
    if (ignoredFields.length) await readTargetConfig(dir, { strict: true });  // throws, naming the fields
    const plan = planQwenWeights(config, ckpt);
    report.load = { ok: true, deviceBytes: plan.bytes, unusedTensors: plan.unused };
  } catch (err) {
    if (!(err instanceof Eagle3Error)) throw err;
    problem = err;
    report.load = { ok: false, code: err.code, message: err.message };
  }
  if (p.values.json) console.log(JSON.stringify(report, null, 2));
  else print(report);
  return problem ? 1 : 0;
}

function print(r: Record<string, unknown>): void {
  const c = r.config as Record<string, unknown> | undefined;
  const k = r.checkpoint as Record<string, unknown> | undefined;
  const l = r.load as Record<string, unknown>;
  console.log(`checkpoint  ${r.dir}`);
  if (c) {
    console.log(`model       ${(c.architectures as string[]).join(", ")} (${c.arch}): ${c.numLayers} layers, hidden ${c.hiddenSize}, ` +
      `heads ${c.numHeads}/${c.numKvHeads} × ${c.headDim}, MLP ${c.intermediateSize}, vocab ${c.vocabSize}`);
    console.log(`            rope θ ${c.ropeTheta}, context ${c.maxPositionEmbeddings}, tied ${c.tieWordEmbeddings}, ` +
      `qkv bias ${c.attentionBias}, q/k norm ${c.qkNorm}, dtype ${c.dtype ?? "unspecified"}`);
  }
  if (r.unknownConfigFields) console.log(`unknown     config fields: ${(r.unknownConfigFields as string[]).join(", ")}`);
  if (k) {
    console.log(`weights     ${k.tensors} tensors, ${count(k.parameters as number)} parameters, ${count(k.bytes as number)}B, ` +
      `dtypes ${Object.entries(k.dtypes as object).map(([d, n]) => `${d}×${n}`).join(" ")}`);
    console.log(`files       ${(k.files as string[]).length} ${k.sharded ? "shards" : "file"} (${k.format})`);
  }
  if (l.ok) console.log(`loads       yes: ${count(l.deviceBytes as number)}B on the device`);
  else console.log(`loads       no: ${l.code}: ${l.message}`);
}
