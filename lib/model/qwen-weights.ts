/** The weight plan of a dense Qwen2 / Qwen3 target (see qwen-architectures.md §1.3). */
import { unsupportedModel } from "../errors.js";
import type { Checkpoint } from "./checkpoint.js";
import type { TargetConfig } from "./config.js";
import { type WeightPlan, WeightPlanner } from "./weight-plan.js";

export function planQwenWeights(cfg: TargetConfig, ckpt: Checkpoint): WeightPlan {
  const p = new WeightPlanner(ckpt);
  const H = cfg.hiddenSize, D = cfg.headDim, I = cfg.intermediateSize, V = cfg.vocabSize;
  const q = cfg.numHeads * D, kv = cfg.numKvHeads * D;
  p.add("embed", [["model.embed_tokens.weight", [V, H]]]);
  p.add("finalNorm", [["model.norm.weight", [H]]]);
  // Tied models may still ship an lm_head copy; transformers ignores it, and so do we.
  if (!cfg.tieWordEmbeddings) p.add("lmHead", [["lm_head.weight", [V, H]]]);
  for (let i = 0; i < cfg.numLayers; i++) {
    const l = `model.layers.${i}.`;
    p.add(`layers.${i}.inputNorm`, [[`${l}input_layernorm.weight`, [H]]]);
    p.add(`layers.${i}.qkv`, [
      [`${l}self_attn.q_proj.weight`, [q, H]],
      [`${l}self_attn.k_proj.weight`, [kv, H]],
      [`${l}self_attn.v_proj.weight`, [kv, H]],
    ]);
    if (cfg.attentionBias)
      p.add(`layers.${i}.qkvBias`, [
        [`${l}self_attn.q_proj.bias`, [q]],
        [`${l}self_attn.k_proj.bias`, [kv]],
        [`${l}self_attn.v_proj.bias`, [kv]],
      ]);
    if (p.has(`${l}self_attn.o_proj.bias`))
      throw unsupportedModel(`${ckpt.dir}: ${l}self_attn.o_proj.bias (an o_proj bias) is not supported`);
    if (cfg.qkNorm) {
      p.add(`layers.${i}.qNorm`, [[`${l}self_attn.q_norm.weight`, [D]]]);
      p.add(`layers.${i}.kNorm`, [[`${l}self_attn.k_norm.weight`, [D]]]);
    }
    p.add(`layers.${i}.o`, [[`${l}self_attn.o_proj.weight`, [H, q]]]);
    p.add(`layers.${i}.postNorm`, [[`${l}post_attention_layernorm.weight`, [H]]]);
    p.add(`layers.${i}.gateUp`, [
      [`${l}mlp.gate_proj.weight`, [I, H]],
      [`${l}mlp.up_proj.weight`, [I, H]],
    ]);
    p.add(`layers.${i}.down`, [[`${l}mlp.down_proj.weight`, [H, I]]]);
  }
  return p.finish();
}
