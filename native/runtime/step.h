// One forward step as the TypeScript batch layer plans it (host memory), its validation, and the
// executor that uploads it in one copy, runs the model and samples.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/kv_cache.h"
#include "runtime/qwen_model.h"

namespace e3 {

struct HostStep {
  std::vector<int32_t> tokens, positions;  // [T]
  std::vector<int32_t> q_start;            // [S+1], q_start[0] = 0, q_start[S] = T
  std::vector<int32_t> kv_len;             // [S] context length after this step
  std::vector<int32_t> page_table;         // [S · max_pages]
  int max_pages = 0;
  std::vector<int64_t> tree_mask;          // [T] or empty (causal)
  std::vector<int32_t> logit_rows;         // [R]
  std::vector<SamplingParams> sampling;    // [R] or empty (no sampling)
  bool want_logits = false, want_hidden = false;
};

struct StepResult {
  std::vector<int32_t> tokens;  // [R] when sampling was asked for
  std::vector<float> logits;    // [R · V] when want_logits
  std::vector<float> hidden;    // [T · C·H] when want_hidden
};

struct ExecutorOptions {
  int max_tokens = 512;  // tokens per step
  int num_pages = 0, page_size = 16;
};

class Executor {
 public:
  Executor(Ops& ops, QwenConfig cfg, QwenWeights weights, const ExecutorOptions& opts);
  StepResult run(const HostStep& step);
  const QwenConfig& config() const { return model_.config(); }
  const KvCache& kv() const { return kv_; }

 private:
  void validate(const HostStep& s) const;
  Ops& ops_;
  QwenModel model_;
  KvCache kv_;
  Tensor logits_, hidden_, sampled_, arena_;  // arena_: the step's inputs, grown on demand
};

}  // namespace e3
