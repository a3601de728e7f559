/** The native weight layout of a dense Qwen2 / Qwen3 target (see qwen-architectures.md §1.3). */
import { unsupportedModel } from "../errors.js";
import type { Checkpoint } from "./checkpoint.js";
import type { TargetConfig } from "./config.js";
import { type WeightPlan, WeightPlanner } from "./weight-plan.js";

/** One native weight: the checkpoint tensors stacked (along rows) to make it. */
export interface QwenWeightSpec {
  key: string;
  parts: Array<[name: string, shape: number[]]>;
  /** Kind of values for random initialisation. */
  kind: "matrix" | "norm" | "bias";
}

export function qwenWeightSpecs(cfg: TargetConfig): QwenWeightSpec[] {
  if (cfg.oBias) throw unsupportedModel("attention_bias on a Qwen3 model (an o_proj bias) is not supported");
  const H = cfg.hiddenSize, D = cfg.headDim, I = cfg.intermediateSize, V = cfg.vocabSize;
  const q = cfg.numHeads * D, kv = cfg.numKvHeads * D;
  const specs: QwenWeightSpec[] = [
    { key: "embed", parts: [["model.embed_tokens.weight", [V, H]]], kind: "matrix" },
    { key: "finalNorm", parts: [["model.norm.weight", [H]]], kind: "norm" },
  ];
  // Tied models may still ship an lm_head copy; transformers ignores it, and so do we.
  if (!cfg.tieWordEmbeddings) specs.push({ key: "lmHead", parts: [["lm_head.weight", [V, H]]], kind: "matrix" });
  for (let i = 0; i < cfg.numLayers; i++) {
    const l = `model.layers.${i}.`, k = `layers.${i}.`;
    specs.push({ key: `${k}inputNorm`, parts: [[`${l}input_layernorm.weight`, [H]]], kind: "norm" });
    specs.push({
      key: `${k}qkv`,
      parts: [[`${l}self_attn.q_proj.weight`, [q, H]], [`${l}self_attn.k_proj.weight`, [kv, H]], [`${l}self_attn.v_proj.weight`, [kv, H]]],
      kind: "matrix",
    });
    if (cfg.attentionBias)
      specs.push({
        key: `${k}qkvBias`,
        parts: [[`${l}self_attn.q_proj.bias`, [q]], [`${l}self_attn.k_proj.bias`, [kv]], [`${l}self_attn.v_proj.bias`, [kv]]],
        kind: "bias",
      });
    if (cfg.qkNorm) {
      specs.push({ key: `${k}qNorm`, parts: [[`${l}self_attn.q_norm.weight`, [D]]], kind: "norm" });
      specs.push({ key: `${k}kNorm`, parts: [[`${l}self_attn.k_norm.weight`, [D]]], kind: "norm" });
    }
    specs.push({ key: `${k}o`, parts: [[`${l}self_attn.o_proj.weight`, [H, q]]], kind: "matrix" });
    specs.push({ key: `${k}postNorm`, parts: [[`${l}post_attention_layernorm.weight`, [H]]], kind: "norm" });
    specs.push({ key: `${k}gateUp`, parts: [[`${l}mlp.gate_proj.weight`, [I, H]], [`${l}mlp.up_proj.weight`, [I, H]]], kind: "matrix" });
    specs.push({ key: `${k}down`, parts: [[`${l}mlp.down_proj.weight`, [H, I]]], kind: "matrix" });
  }
  return specs;
}

/** Maps the specs onto a checkpoint's tensors, checking presence, shape and dtype of each. */
export function planQwenWeights(cfg: TargetConfig, ckpt: Checkpoint): WeightPlan {
  const p = new WeightPlanner(ckpt);
  for (const s of qwenWeightSpecs(cfg)) p.add(s.key, s.parts);
  const plan = p.finish();
  // A weight nobody reads means a model this engine does not implement (old RoPE buffers are fine).
  const stray = plan.unused.filter((n) => /\.(weight|bias)$/.test(n) && !(cfg.tieWordEmbeddings && n === "lm_head.weight"));
  if (stray.length)
    throw unsupportedModel(`${ckpt.dir}: ${stray.length} weight(s) this engine would ignore, e.g. ${stray.slice(0, 5).join(", ")}`);
  return plan;
}
