// The EAGLE-3 draft head (eagle3-reference.md §2), written once against Ops: fc over the target's
// three fused features (or the previous draft step's state), one Llama-style decoder layer on
// [input_layernorm(embedding) ; hidden_norm(hidden)], its own paged KV cache, and logits over the
// draft vocabulary.
#pragma once
#include "runtime/kv_cache.h"
#include "runtime/ops.h"

namespace e3 {

struct DraftConfig {
  int hidden = 0, target_hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0;
  int vocab = 0, draft_vocab = 0;
  float eps = 1e-6f, rope_theta = 10000.0f;
  float rope_scale = 1.0f;            // of cos and sin (yarn's attention factor)
  int rotary_dim = 0;
  bool norm_before_residual = false;  // residual = hidden_norm(h)
  bool norm_before_fc = false;        // one RMSNorm over the 3·Ht features (input_norm)
  bool fc_norm = false;               // an RMSNorm per feature (fc_norm.0/1/2)
  bool apply_final_norm = true;       // logits from norm(h2) rather than h2
  bool feed_post_norm = false;        // the next step gets norm(h2) rather than h2
};

struct DraftWeights {
  Tensor embed;                       // [V, H]: the draft's own, or the target's
  Tensor fc, fc_bias;                 // [H, 3·Ht], optional [H]
  Tensor input_norm;                  // [3·Ht] with norm_before_fc
  Tensor fc_norm;                     // [3, Ht] with fc_norm
  Tensor hidden_norm, input_layernorm, post_norm, final_norm;  // [H]
  Tensor qkv;                         // [(nh + 2·nkv)·hd, 2H]
  Tensor o;                           // [H, nh·hd]
  Tensor gate_up;                     // [2I, H]
  Tensor down;                        // [H, I]
  Tensor lm_head;                     // [Vd, H]
  Tensor vocab_map;                   // i32 [Vd]: target id of each draft id (undefined when Vd = V)
  Tensor rope_inv_freq;               // f32 [rotary_dim / 2]: a scaled RoPE's (undefined: from rope_theta)
};

// One draft forward over T tokens. Exactly one of features / recurrent is defined.
struct DraftStep {
  Tensor tokens, positions;           // i32 [T], target-vocabulary ids
  AttentionLayout layout;
  Tensor features;                    // act [T, 3·Ht]: target features (fc applies)
  Tensor recurrent;                   // act [T, H]: previous draft states (no fc); used up as the residual
  Tensor logit_rows;                  // i32 [R]
  bool all_rows = false;              // logit_rows is 0..T−1 (the gather is skipped)
  Tensor logits;                      // f32 [R, Vd]
  Tensor state_out;                   // act [T, H]: the state the next draft step continues from
};

class DraftModel {
 public:
  DraftModel(Ops& ops, DraftConfig cfg, DraftWeights weights, int max_tokens);
  const DraftConfig& config() const { return cfg_; }
  const DraftWeights& weights() const { return w_; }
  int max_tokens() const { return max_tokens_; }
  void forward(const DraftStep& io, const KvCache& kv);

 private:
  void check_weights() const;
  // The draft's own RoPE: its theta, or its scaled table (linear, llama3, yarn) and cos/sin factor.
  Rope rope() const { return Rope{cfg_.rotary_dim, cfg_.rope_theta, w_.rope_inv_freq, cfg_.rope_scale}; }
  Ops& ops_;
  DraftConfig cfg_;
  DraftWeights w_;
  int max_tokens_;
  Tensor feat_, h_, a_, qkv_, q_, attn_, proj_, y_, gate_up_, act_, normed_, last_;
};

}  // namespace e3
