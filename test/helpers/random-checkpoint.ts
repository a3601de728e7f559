/**
 * Writes random checkpoints in real Hugging Face / SpecForge layout for end-to-end tests: a Qwen3
 * target with the full 151,936-token vocabulary (so the real tokenizer drives it) and an EAGLE-3
 * head with a 32,000-token draft vocabulary.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randn, rng, toBf16Bits } from "./tensors.js";

type Tensor = { name: string; shape: number[]; dtype: "BF16" | "I64" | "BOOL"; data: Buffer };

function bf16(name: string, shape: number[], r: () => number, std: number, mean = 0): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = randn(n, r, std);
  const out = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) out.writeUInt16LE(toBf16Bits(v[i] + mean), i * 2);
  return { name, shape, dtype: "BF16", data: out };
}

async function save(path: string, tensors: Tensor[]): Promise<void> {
  const header: Record<string, unknown> = {};
  let end = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [end, end + t.data.length] };
    end += t.data.length;
  }
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  await writeFile(path, Buffer.concat([len, h, ...tensors.map((t) => t.data)]));
}

export async function writeRandomPair(dir: string, seed = 1): Promise<{ target: string; draft: string }> {
  const r = rng(seed);
  const V = 151936, H = 32, L = 4, I = 64, heads = 2, kv = 1, hd = 16, Vd = 32000;
  const target = join(dir, "target"), draft = join(dir, "draft");
  await mkdir(target, { recursive: true });
  await mkdir(draft, { recursive: true });
  await writeFile(join(target, "config.json"), JSON.stringify({
    architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", hidden_size: H, intermediate_size: I, num_hidden_layers: L,
    num_attention_heads: heads, num_key_value_heads: kv, head_dim: hd, vocab_size: V, max_position_embeddings: 4096,
    rms_norm_eps: 1e-6, rope_theta: 1e6, tie_word_embeddings: true, hidden_act: "silu", attention_bias: false,
    bos_token_id: 151643, eos_token_id: 151645, torch_dtype: "bfloat16",
  }));
  const t: Tensor[] = [bf16("model.embed_tokens.weight", [V, H], r, 0.5), bf16("model.norm.weight", [H], r, 0.1, 1)];
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}.`;
    t.push(bf16(`${p}input_layernorm.weight`, [H], r, 0.1, 1), bf16(`${p}post_attention_layernorm.weight`, [H], r, 0.1, 1),
      bf16(`${p}self_attn.q_proj.weight`, [heads * hd, H], r, 0.1), bf16(`${p}self_attn.k_proj.weight`, [kv * hd, H], r, 0.1),
      bf16(`${p}self_attn.v_proj.weight`, [kv * hd, H], r, 0.1), bf16(`${p}self_attn.o_proj.weight`, [H, heads * hd], r, 0.1),
      bf16(`${p}self_attn.q_norm.weight`, [hd], r, 0.1, 1), bf16(`${p}self_attn.k_norm.weight`, [hd], r, 0.1, 1),
      bf16(`${p}mlp.gate_proj.weight`, [I, H], r, 0.1), bf16(`${p}mlp.up_proj.weight`, [I, H], r, 0.1),
      bf16(`${p}mlp.down_proj.weight`, [H, I], r, 0.1));
  }
  await save(join(target, "model.safetensors"), t);

  await writeFile(join(draft, "config.json"), JSON.stringify({
    architectures: ["LlamaForCausalLMEagle3"], model_type: "llama", hidden_size: H, intermediate_size: I, num_attention_heads: heads,
    num_key_value_heads: kv, head_dim: hd, num_hidden_layers: 1, hidden_act: "silu", rms_norm_eps: 1e-6, rope_theta: 1e6,
    max_position_embeddings: 4096, vocab_size: V, draft_vocab_size: Vd, tie_word_embeddings: false, torch_dtype: "bfloat16",
    eagle_config: { eagle_aux_hidden_state_layer_ids: [0, 1, 2] },
  }));
  const m = "midlayer.";
  const d: Tensor[] = [
    bf16("fc.weight", [H, 3 * H], r, 0.1), bf16(`${m}hidden_norm.weight`, [H], r, 0.1, 1), bf16(`${m}input_layernorm.weight`, [H], r, 0.1, 1),
    bf16(`${m}self_attn.q_proj.weight`, [heads * hd, 2 * H], r, 0.1), bf16(`${m}self_attn.k_proj.weight`, [kv * hd, 2 * H], r, 0.1),
    bf16(`${m}self_attn.v_proj.weight`, [kv * hd, 2 * H], r, 0.1), bf16(`${m}self_attn.o_proj.weight`, [H, heads * hd], r, 0.1),
    bf16(`${m}post_attention_layernorm.weight`, [H], r, 0.1, 1), bf16(`${m}mlp.gate_proj.weight`, [I, H], r, 0.1),
    bf16(`${m}mlp.up_proj.weight`, [I, H], r, 0.1), bf16(`${m}mlp.down_proj.weight`, [H, I], r, 0.1),
    bf16("norm.weight", [H], r, 0.1, 1), bf16("lm_head.weight", [Vd, H], r, 0.5),
  ];
  // Draft vocabulary: every ~4.7th target id, as offsets (§1.4).
  const d2t = Buffer.alloc(Vd * 8), t2d = Buffer.alloc(V);
  for (let i = 0; i < Vd; i++) {
    const id = Math.floor((i * V) / Vd);
    d2t.writeBigInt64LE(BigInt(id - i), i * 8);
    t2d[id] = 1;
  }
  d.push({ name: "d2t", shape: [Vd], dtype: "I64", data: d2t }, { name: "t2d", shape: [V], dtype: "BOOL", data: t2d });
  await save(join(draft, "model.safetensors"), d);
  return { target, draft };
}
