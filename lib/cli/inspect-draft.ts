/**
 * `eagle3 inspect DRAFT --target DIR`: an EAGLE-3 head read as it would be loaded beside that
 * target (config resolved and checked against the target's, weights planned, no weights read),
 * and what was found: flavour, shapes, feature layers, norms, RoPE, vocabulary mapping.
 */
import { basename } from "node:path";
import { Eagle3Error } from "../errors.js";
import { readTargetConfig } from "../model/config.js";
import { openDraftTensors } from "../model/draft.js";
import { type DraftConfig, readDraftConfig } from "../model/draft-config.js";
import { planDraftWeights } from "../model/draft-weights.js";
import { count, tallyTensors } from "./format.js";

export async function inspectDraft(dir: string, targetDir: string): Promise<{ report: Record<string, unknown>; problem?: Eagle3Error }> {
  const report: Record<string, unknown> = { dir, target: targetDir };
  try {
    const { config: target } = await readTargetConfig(targetDir);
    const { config, ignoredFields } = await readDraftConfig(dir, target, { strict: false });
    report.draft = config;
    if (ignoredFields.length) report.unknownConfigFields = ignoredFields;
    const src = await openDraftTensors(dir);
    const { parameters, bytes, dtypes } = tallyTensors(src.tensors.values());
    const files = new Set([...src.tensors.values()].map((t) => basename(t.file)));
    report.checkpoint = { files: [...files].sort(), tensors: src.tensors.size, parameters, bytes, dtypes };
    if (ignoredFields.length) await readDraftConfig(dir, target, { strict: true });  // throws, naming the fields
    const plan = await planDraftWeights(config, src);
    report.load = {
      ok: true, deviceBytes: plan.plan.bytes, ownEmbedding: plan.ownEmbedding, usesTargetLmHead: config.usesTargetLmHead,
      vocabMap: plan.vocabMap ? `${config.draftVocabSize} draft ids onto the target's ${config.vocabSize}` : "none (the target's vocabulary)",
      unusedTensors: plan.plan.unused,
    };
    return { report };
  } catch (err) {
    if (!(err instanceof Eagle3Error)) throw err;
    report.load = { ok: false, code: err.code, message: err.message };
    return { report, problem: err };
  }
}

export function printDraft(r: Record<string, unknown>): void {
  const c = r.draft as DraftConfig | undefined;
  const k = r.checkpoint as Record<string, unknown> | undefined;
  const l = r.load as Record<string, unknown>;
  console.log(`draft       ${r.dir} (for ${r.target})`);
  if (c) {
    console.log(`flavour     ${c.flavour} (${c.architectures.join(", ")}): hidden ${c.hiddenSize} over target features of ${c.targetHiddenSize}, ` +
      `heads ${c.numHeads}/${c.numKvHeads} × ${c.headDim}, MLP ${c.intermediateSize}`);
    console.log(`vocabulary  ${c.draftVocabSize} draft of ${c.vocabSize}${c.usesTargetLmHead ? " (the target's lm_head)" : ""}`);
    console.log(`features    target layers ${c.auxLayers.join(", ")} (${c.auxLayersSource}, read as ${c.auxConvention})`);
    const norms = [c.normBeforeFc && "one over the features", c.fcNorm && "one per feature", c.normBeforeResidual && "residual after hidden_norm",
      !c.normOutput.applyFinalNorm && "no final norm", c.normOutput.feedPostNorm && "next step fed the normed state"].filter(Boolean);
    console.log(`norms       ${norms.length ? norms.join(", ") : "as the reference"}${c.fcBias ? "; fc bias" : ""}`);
    console.log(`rope        θ ${c.ropeTheta}${c.ropeScaling ? `, ${c.ropeScaling.type} scaling ×${c.ropeScaling.factor}` : ""}, context ${c.maxPositionEmbeddings}`);
  }
  if (r.unknownConfigFields) console.log(`unknown     config fields: ${(r.unknownConfigFields as string[]).join(", ")}`);
  if (k) {
    console.log(`weights     ${k.tensors} tensors, ${count(k.parameters as number)} parameters, ${count(k.bytes as number)}B, ` +
      `dtypes ${Object.entries(k.dtypes as object).map(([d, n]) => `${d}×${n}`).join(" ")} in ${(k.files as string[]).join(", ")}`);
  }
  if (l.ok) {
    console.log(`loads       yes: ${count(l.deviceBytes as number)}B on the device; embedding ${l.ownEmbedding ? "its own" : "the target's"}; ` +
      `vocabulary map ${l.vocabMap}`);
  } else {
    console.log(`loads       no: ${l.code}: ${l.message}`);
  }
}
