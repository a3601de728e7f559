// The dense Qwen2 / Qwen3 decoder, written once against Ops: the CPU reference and the CUDA path
// run this same sequence of operations.
#pragma once
#include <vector>

#include "runtime/kv_cache.h"
#include "runtime/ops.h"

namespace e3 {

struct QwenConfig {
  int hidden = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0, vocab = 0;
  float eps = 1e-6f, rope_theta = 10000.0f;
  int rotary_dim = 0;
  bool qk_norm = false;   // Qwen3
  bool qkv_bias = false;  // Qwen2
  std::vector<int> capture_layers;  // hidden states after these layers (0-based), concatenated in order
};

struct QwenLayerWeights {
  Tensor input_norm, qkv, qkv_bias, q_norm, k_norm, o, post_norm, gate_up, down;
};

struct QwenWeights {
  Tensor embed, final_norm, lm_head;  // lm_head may share embed's buffer (tied)
  std::vector<QwenLayerWeights> layers;
};

// One forward's inputs and outputs, on the backend's device. T tokens, R logit rows.
struct StepTensors {
  Tensor tokens, positions;  // i32 [T]
  AttentionLayout layout;
  Tensor logit_rows;         // i32 [R]: which tokens' logits to compute
  Tensor sampling;           // u8 [R · 32]: SamplingParams of each row (empty: no sampling)
  Tensor logits;             // f32 [R, V]
  Tensor hidden;             // act [T, C·H] for C capture layers (undefined when C = 0)
  Tensor hidden_rows;        // i32 [T]: the row of `hidden` each token's states go to (undefined: row t)
  Tensor feedback;           // i32 [T] or undefined: see HostStep::feedback
};

class QwenModel {
 public:
  QwenModel(Ops& ops, QwenConfig cfg, QwenWeights weights, int max_tokens, int max_rows);
  const QwenConfig& config() const { return cfg_; }
  int max_tokens() const { return max_tokens_; }
  void forward(const StepTensors& io, const KvCache& kv);

 private:
  void check_weights() const;
  Ops& ops_;
  QwenConfig cfg_;
  QwenWeights w_;
  int max_tokens_, max_rows_;
  std::vector<std::vector<int64_t>> capture_cols_;  // per layer: its columns of the captured states
  Tensor x_, normed_, qkv_, q_, attn_, proj_, gate_up_, act_, last_;  // workspace, max_tokens rows
};

}  // namespace e3
