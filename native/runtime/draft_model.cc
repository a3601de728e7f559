#include "runtime/draft_model.h"

#include <cmath>

#include "runtime/error.h"

namespace e3 {

DraftModel::DraftModel(Ops& ops, DraftConfig cfg, DraftWeights weights, int max_tokens)
    : ops_(ops), cfg_(cfg), w_(std::move(weights)), max_tokens_(max_tokens) {
  check_weights();
  Device dev = ops.device();
  DType a = ops.act_dtype();
  int64_t T = max_tokens, H = cfg_.hidden;
  feat_ = Tensor::empty(dev, a, {T, 3 * int64_t(cfg_.target_hidden)});
  h_ = Tensor::empty(dev, a, {T, H});
  a_ = Tensor::empty(dev, a, {T, 2 * H});
  qkv_ = Tensor::empty(dev, a, {T, int64_t(cfg_.heads + 2 * cfg_.kv_heads) * cfg_.head_dim});
  q_ = Tensor::empty(dev, a, {T, cfg_.heads, cfg_.head_dim});
  attn_ = Tensor::empty(dev, a, {T, cfg_.heads, cfg_.head_dim});
  proj_ = Tensor::empty(dev, a, {T, H});
  y_ = Tensor::empty(dev, a, {T, H});
  gate_up_ = Tensor::empty(dev, a, {T, 2 * int64_t(cfg_.intermediate)});
  act_ = Tensor::empty(dev, a, {T, cfg_.intermediate});
  normed_ = Tensor::empty(dev, a, {T, H});
  last_ = Tensor::empty(dev, a, {T, H});
}

void DraftModel::check_weights() const {
  const DraftConfig& c = cfg_;
  E3_ARG(c.hidden > 0 && c.target_hidden > 0 && c.heads > 0 && c.kv_heads > 0 && c.heads % c.kv_heads == 0 &&
             c.head_dim > 0 && c.intermediate > 0 && c.vocab > 0 && c.draft_vocab > 0 && c.draft_vocab <= c.vocab &&
             c.rotary_dim > 0 && c.rotary_dim <= c.head_dim,
         "inconsistent draft dimensions");
  int64_t H = c.hidden, Ht = c.target_hidden, D = c.head_dim;
  auto need = [&](const Tensor& t, const Shape& s, const char* name) {
    E3_ARG(t.defined(), std::string("draft weight ") + name + " is missing");
    expect_shape(t, s, name);
    E3_ARG(t.device() == ops_.device(), std::string("draft weight ") + name + " is on the wrong device");
  };
  need(w_.embed, {c.vocab, H}, "embed_tokens");
  need(w_.fc, {H, 3 * Ht}, "fc");
  if (w_.fc_bias.defined()) need(w_.fc_bias, {H}, "fc.bias");
  if (c.norm_before_fc) need(w_.input_norm, {3 * Ht}, "input_norm");
  if (c.fc_norm) need(w_.fc_norm, {3, Ht}, "fc_norm");
  need(w_.hidden_norm, {H}, "hidden_norm");
  need(w_.input_layernorm, {H}, "input_layernorm");
  need(w_.qkv, {(c.heads + 2 * c.kv_heads) * D, 2 * H}, "qkv_proj");
  need(w_.o, {H, c.heads * D}, "o_proj");
  need(w_.post_norm, {H}, "post_attention_layernorm");
  need(w_.gate_up, {2 * int64_t(c.intermediate), H}, "gate_up_proj");
  need(w_.down, {H, c.intermediate}, "down_proj");
  need(w_.final_norm, {H}, "norm");
  need(w_.lm_head, {c.draft_vocab, H}, "lm_head");
  if (c.draft_vocab != c.vocab) {
    need(w_.vocab_map, {c.draft_vocab}, "d2t");
    expect_dtype(w_.vocab_map, DType::I32, "d2t");
  }
  if (w_.rope_inv_freq.defined()) check_rope(rope(), D, ops_.device());
}

void DraftModel::forward(const DraftStep& io, const KvCache& kv) {
  const DraftConfig& c = cfg_;
  int64_t T = io.tokens.numel(), R = io.logit_rows.numel(), H = c.hidden;
  E3_ARG(T > 0 && T <= max_tokens_ && R <= T, "a draft step of " + std::to_string(T) + " tokens; the draft takes 1.." +
                                                  std::to_string(max_tokens_));
  E3_ARG(io.features.defined() != io.recurrent.defined(), "a draft step takes either target features or draft states");
  E3_ARG(!io.all_rows || R == T, "a draft step computing every row's logits has as many logit rows as tokens");
  Tensor h = h_.rows(0, T), a = a_.rows(0, T),
         qkv = qkv_.rows(0, T), q = q_.rows(0, T), attn = attn_.rows(0, T), proj = proj_.rows(0, T), y = y_.rows(0, T),
         gate_up = gate_up_.rows(0, T), act = act_.rows(0, T), normed = normed_.rows(0, T);

  if (io.features.defined()) {
    Tensor f = io.features;
    if (c.norm_before_fc || c.fc_norm) {
      Tensor nf = feat_.rows(0, T);
      if (c.fc_norm) ops_.rmsnorm(f, w_.fc_norm, c.eps, nf);
      else ops_.rmsnorm(f, w_.input_norm, c.eps, nf);
      f = nf;
    }
    ops_.linear(f, w_.fc, w_.fc_bias.defined() ? &w_.fc_bias : nullptr, h);
  } else {
    h = io.recurrent;
  }
  // a = [input_layernorm(embed[tokens]) ; hidden_norm(h)], embedding half first (§2.3 step 2), each
  // norm gathering or writing its half in place. The residual stream starts as h itself (or its
  // norm), updated in place.
  ops_.rmsnorm(w_.embed, w_.input_layernorm, c.eps, a, {io.tokens, 0});
  ops_.rmsnorm(h, w_.hidden_norm, c.eps, a, {Tensor(), H});
  if (c.norm_before_residual) ops_.rmsnorm(h, w_.hidden_norm, c.eps, h);
  Tensor residual = h;

  ops_.linear(a, w_.qkv, nullptr, qkv);
  ops_.rope_attention({qkv, nullptr, nullptr, c.eps, io.positions, rope()}, io.layout, q, kv.k[0], kv.v[0],
                      1.0f / std::sqrt(float(c.head_dim)), attn);
  ops_.linear(attn.view({T, int64_t(c.heads) * c.head_dim}), w_.o, nullptr, proj);
  ops_.add_rmsnorm(residual, proj, w_.post_norm, c.eps, y);  // residual = h1
  ops_.linear(y, w_.gate_up, nullptr, gate_up);
  ops_.swiglu_linear(gate_up, w_.down, act, proj);
  if (c.feed_post_norm) {
    ops_.add_rmsnorm(residual, proj, w_.final_norm, c.eps, normed);  // residual = h2
    ops_.copy_columns(normed, io.state_out, 0);
  } else {
    // residual = h2, also written as the state the next step continues from (no copy after)
    ops_.add_rmsnorm(residual, proj, w_.final_norm, c.eps, normed, ResidualCapture{io.state_out, Tensor(), {0}});
  }
  if (R == 0) return;
  Tensor src = c.apply_final_norm ? normed : residual, out = src;
  if (!io.all_rows) {
    out = last_.rows(0, R);
    ops_.gather_rows(src, io.logit_rows, out);
  }
  ops_.linear(out, w_.lm_head, nullptr, io.logits);
}

}  // namespace e3
