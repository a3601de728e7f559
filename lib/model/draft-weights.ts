/**
 * The weight plan of an EAGLE-3 draft head (eagle3-reference.md §1.3): q|k|v and gate|up fused as
 * for the target, the per-feature fc_norm stacked as [3, Ht], and d2t turned into absolute target
 * ids (i + d2t[i], checked increasing and in range). Absent embed_tokens / lm_head are taken from
 * the target by the caller.
 */
import { open } from "node:fs/promises";
import { badCheckpoint, draftMismatch, unsupportedModel } from "../errors.js";
import type { DraftConfig } from "./draft-config.js";
import type { TensorEntry } from "./safetensors.js";
import { type TensorSource, type WeightPlan, WeightPlanner } from "./weight-plan.js";

export interface DraftPlan {
  plan: WeightPlan;
  /** Whether the draft brings its own embedding (else the target's is shared). */
  ownEmbedding: boolean;
  /** d2t as absolute target ids, or undefined when the draft vocabulary is the target's. */
  vocabMap?: Int32Array;
}

/** speculators name the layer layers.0.* where the others say midlayer.*; a few add "model.". */
export function normalizeDraftNames(src: TensorSource): TensorSource {
  const tensors = new Map<string, TensorEntry>();
  for (const [name, e] of src.tensors) {
    const n = name.replace(/^model\./, "").replace(/^layers\.0\./, "midlayer.");
    if (tensors.has(n)) throw badCheckpoint(`${src.dir}: tensors ${n} and ${name} are the same weight under two names`);
    tensors.set(n, { ...e, name: n });
  }
  return { dir: src.dir, tensors };
}

export async function planDraftWeights(cfg: DraftConfig, src: TensorSource): Promise<DraftPlan> {
  const p = new WeightPlanner(src);
  const H = cfg.hiddenSize, Ht = cfg.targetHiddenSize, D = cfg.headDim, I = cfg.intermediateSize;
  const q = cfg.numHeads * D, kv = cfg.numKvHeads * D;
  const ownEmbedding = p.has("embed_tokens.weight");
  if (ownEmbedding) p.add("embed", [["embed_tokens.weight", [cfg.vocabSize, H]]]);
  else if (H !== Ht)
    throw draftMismatch(`${src.dir}: the draft's hidden size ${H} differs from the target's ${Ht}, so it must ship embed_tokens.weight`);
  p.add("fc", [["fc.weight", [H, 3 * Ht]]]);
  if (cfg.fcBias) p.add("fcBias", [["fc.bias", [H]]]);
  if (cfg.normBeforeFc) p.add("inputNorm", [["input_norm.weight", [3 * Ht]]]);
  if (cfg.fcNorm) p.add("fcNorm", [0, 1, 2].map((i) => [`fc_norm.${i}.weight`, [Ht]] as [string, number[]]), [3, Ht]);
  p.add("hiddenNorm", [["midlayer.hidden_norm.weight", [H]]]);
  p.add("inputLayernorm", [["midlayer.input_layernorm.weight", [H]]]);
  p.add("qkv", [
    ["midlayer.self_attn.q_proj.weight", [q, 2 * H]],
    ["midlayer.self_attn.k_proj.weight", [kv, 2 * H]],
    ["midlayer.self_attn.v_proj.weight", [kv, 2 * H]],
  ]);
  p.add("o", [["midlayer.self_attn.o_proj.weight", [H, q]]]);
  p.add("postNorm", [["midlayer.post_attention_layernorm.weight", [H]]]);
  p.add("gateUp", [["midlayer.mlp.gate_proj.weight", [I, H]], ["midlayer.mlp.up_proj.weight", [I, H]]]);
  p.add("down", [["midlayer.mlp.down_proj.weight", [H, I]]]);
  p.add("finalNorm", [["norm.weight", [H]]]);
  if (!cfg.usesTargetLmHead) p.add("lmHead", [["lm_head.weight", [cfg.draftVocabSize, H]]]);
  p.use("t2d");  // training-only (§1.4)
  const d2t = p.use("d2t");
  let vocabMap: Int32Array | undefined;
  if (cfg.draftVocabSize !== cfg.vocabSize) {
    if (!d2t) throw badCheckpoint(`${src.dir}: draft_vocab_size ${cfg.draftVocabSize} ≠ vocab_size ${cfg.vocabSize} but there is no d2t tensor`);
    vocabMap = await readVocabMap(d2t, cfg);
  }
  const plan = p.finish();
  const stray = plan.unused.filter((n) => /\.(weight|bias)$/.test(n));
  if (stray.length) throw unsupportedModel(`${src.dir}: draft weight(s) this engine would ignore: ${stray.slice(0, 5).join(", ")}`);
  return { plan, ownEmbedding, vocabMap };
}

/** d2t holds offsets: target id = i + d2t[i]; they must be increasing and inside the target vocabulary. */
async function readVocabMap(e: TensorEntry, cfg: DraftConfig): Promise<Int32Array> {
  if (e.shape.length !== 1 || e.shape[0] !== cfg.draftVocabSize || (e.dtype !== "i64" && e.dtype !== "i32"))
    throw badCheckpoint(`${e.file}: d2t must be an integer vector of draft_vocab_size ${cfg.draftVocabSize}, found ${e.dtype}[${e.shape}]`);
  const buf = Buffer.alloc(e.byteLength);
  const fh = await open(e.file, "r");
  try {
    const { bytesRead } = await fh.read(buf, 0, e.byteLength, e.dataOffset);
    if (bytesRead !== e.byteLength) throw badCheckpoint(`${e.file}: tensor d2t is cut short`);
  } finally {
    await fh.close();
  }
  const map = new Int32Array(cfg.draftVocabSize);
  for (let i = 0; i < map.length; i++) {
    const off = e.dtype === "i64" ? Number(buf.readBigInt64LE(i * 8)) : buf.readInt32LE(i * 4);
    const id = i + off;
    if (id < 0 || id >= cfg.vocabSize || (i > 0 && id <= map[i - 1]))
      throw badCheckpoint(`${e.file}: d2t[${i}] = ${off} maps draft id ${i} to ${id}: target ids must increase within 0..${cfg.vocabSize - 1} (absolute ids instead of offsets?)`);
    map[i] = id;
  }
  return map;
}
