#include "runtime/qwen_model.h"

#include <algorithm>
#include <cmath>

#include "runtime/error.h"

namespace e3 {

QwenModel::QwenModel(Ops& ops, QwenConfig cfg, QwenWeights weights, int max_tokens, int max_rows)
    : ops_(ops), cfg_(std::move(cfg)), w_(std::move(weights)), max_tokens_(max_tokens), max_rows_(std::min(max_rows, max_tokens)) {
  E3_ARG(max_tokens > 0, "max_tokens must be positive");
  check_weights();
  Device dev = ops.device();
  DType a = ops.act_dtype();
  int64_t T = max_tokens, H = cfg_.hidden, D = cfg_.head_dim;
  x_ = Tensor::empty(dev, a, {T, H});
  normed_ = Tensor::empty(dev, a, {T, H});
  qkv_ = Tensor::empty(dev, a, {T, (cfg_.heads + 2 * cfg_.kv_heads) * D});
  q_ = Tensor::empty(dev, a, {T, cfg_.heads, D});
  attn_ = Tensor::empty(dev, a, {T, cfg_.heads, D});
  proj_ = Tensor::empty(dev, a, {T, H});
  gate_up_ = Tensor::empty(dev, a, {T, 2 * int64_t(cfg_.intermediate)});
  act_ = Tensor::empty(dev, a, {T, cfg_.intermediate});
  last_ = Tensor::empty(dev, a, {max_rows_, H});
  capture_cols_.resize(size_t(cfg_.layers));
  for (size_t i = 0; i < cfg_.capture_layers.size(); ++i)
    capture_cols_[size_t(cfg_.capture_layers[i])].push_back(int64_t(i) * H);
}

void QwenModel::check_weights() const {
  const QwenConfig& c = cfg_;
  E3_ARG(c.hidden > 0 && c.layers > 0 && c.heads > 0 && c.kv_heads > 0 && c.heads % c.kv_heads == 0 &&
             c.head_dim > 0 && c.intermediate > 0 && c.vocab > 0 && c.rotary_dim > 0 && c.rotary_dim <= c.head_dim,
         "inconsistent model dimensions");
  E3_ARG(int(w_.layers.size()) == c.layers, "expected weights for " + std::to_string(c.layers) + " layers, got " +
                                                std::to_string(w_.layers.size()));
  for (int l : c.capture_layers)
    E3_ARG(l >= 0 && l < c.layers, "capture layer " + std::to_string(l) + " outside 0.." + std::to_string(c.layers - 1));
  int64_t H = c.hidden, D = c.head_dim, QKV = (c.heads + 2 * c.kv_heads) * D;
  auto need = [&](const Tensor& t, const Shape& s, const std::string& name) {
    E3_ARG(t.defined(), "missing weight " + name);
    expect_shape(t, s, name.c_str());
    E3_ARG(t.device() == ops_.device(), name + " is on " + device_name(t.device()) + ", the model runs on " +
                                            device_name(ops_.device()));
  };
  need(w_.embed, {c.vocab, H}, "embed_tokens");
  need(w_.final_norm, {H}, "norm");
  need(w_.lm_head, {c.vocab, H}, "lm_head");
  for (int i = 0; i < c.layers; ++i) {
    const QwenLayerWeights& L = w_.layers[size_t(i)];
    std::string p = "layers." + std::to_string(i) + ".";
    need(L.input_norm, {H}, p + "input_layernorm");
    need(L.qkv, {QKV, H}, p + "qkv_proj");
    if (c.qkv_bias) need(L.qkv_bias, {QKV}, p + "qkv_bias");
    if (c.qk_norm) {
      need(L.q_norm, {D}, p + "q_norm");
      need(L.k_norm, {D}, p + "k_norm");
    }
    need(L.o, {H, c.heads * D}, p + "o_proj");
    need(L.post_norm, {H}, p + "post_attention_layernorm");
    need(L.gate_up, {2 * int64_t(c.intermediate), H}, p + "gate_up_proj");
    need(L.down, {H, c.intermediate}, p + "down_proj");
  }
}

void QwenModel::forward(const StepTensors& io, const KvCache& kv) {
  const QwenConfig& c = cfg_;
  int64_t T = io.tokens.numel(), R = io.logit_rows.numel();
  E3_ARG(T > 0 && T <= max_tokens_, "a step of " + std::to_string(T) + " tokens; this model takes 1.." +
                                        std::to_string(max_tokens_));
  E3_ARG(R <= T && R <= max_rows_, "more logit rows than tokens or than the model computes per step");
  E3_ARG(int(kv.k.size()) == c.layers, "KV cache has the wrong number of layers");
  Tensor x = x_.rows(0, T), normed = normed_.rows(0, T), qkv = qkv_.rows(0, T), q = q_.rows(0, T),
         attn = attn_.rows(0, T), proj = proj_.rows(0, T), gate_up = gate_up_.rows(0, T), act = act_.rows(0, T);
  float scale = 1.0f / std::sqrt(float(c.head_dim));
  // The output of `layer` (the residual after the next add) goes to its columns of the features.
  auto capture = [&](int layer) { return ResidualCapture{io.hidden, io.hidden_rows, capture_cols_[size_t(layer)]}; };

  ops_.embedding(io.tokens, w_.embed, x);
  for (int l = 0; l < c.layers; ++l) {
    const QwenLayerWeights& L = w_.layers[size_t(l)];
    if (l == 0) {
      ops_.rmsnorm(x, L.input_norm, c.eps, normed);
    } else {
      ops_.add_rmsnorm(x, proj, L.input_norm, c.eps, normed, capture(l - 1));  // x is now layer l-1's output
    }
    ops_.linear(normed, L.qkv, c.qkv_bias ? &L.qkv_bias : nullptr, qkv);
    ops_.rope_attention({qkv, c.qk_norm ? &L.q_norm : nullptr, c.qk_norm ? &L.k_norm : nullptr, c.eps, io.positions,
                         Rope{c.rotary_dim, c.rope_theta, Tensor(), 1.0f}},
                        io.layout, q, kv.k[size_t(l)], kv.v[size_t(l)], scale, attn);
    ops_.linear(attn.view({T, int64_t(c.heads) * c.head_dim}), L.o, nullptr, proj);
    ops_.add_rmsnorm(x, proj, L.post_norm, c.eps, normed);
    ops_.linear(normed, L.gate_up, nullptr, gate_up);
    ops_.swiglu_linear(gate_up, L.down, act, proj);
  }
  ops_.add_rmsnorm(x, proj, w_.final_norm, c.eps, normed, capture(c.layers - 1));
  if (R == 0) return;
  Tensor last = last_.rows(0, R);
  ops_.gather_rows(normed, io.logit_rows, last);
  ops_.linear(last, w_.lm_head, nullptr, io.logits);
}

}  // namespace e3
