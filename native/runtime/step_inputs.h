// The inputs of one step on the device: every integer array of a HostStep packed into one arena,
// uploaded with a single copy. Shared by the target executor, its graphs and the draft.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/qwen_model.h"

namespace e3 {

struct HostStep {
  std::vector<int32_t> tokens, positions;  // [T]
  std::vector<int32_t> q_start;            // [S+1], q_start[0] = 0, q_start[S] = T
  std::vector<int32_t> kv_len;             // [S] context length after this step
  std::vector<int32_t> page_table;         // [S · max_pages]
  int max_pages = 0;
  std::vector<int64_t> tree_mask;          // [T] or empty (causal)
  std::vector<int32_t> tree_base;          // [S] or empty: context index of mask bit 0 (native callers only)
  std::vector<int32_t> logit_rows;         // [R]
  std::vector<SamplingParams> sampling;    // [R] or empty (no sampling)
  bool want_logits = false, want_hidden = false, want_timing = false;
};

class StepUploader {
 public:
  // Packs `s` (cache slots derived from its page tables) and uploads it into this uploader's arena,
  // grown on demand. Returns the input views (outputs undefined); they stay valid until the next
  // upload. max_kv_len, when given, replaces the layout's bound (graphs serve a range of lengths).
  StepTensors upload(Ops& ops, const HostStep& s, int page_size, int max_kv_len = -1);

 private:
  Tensor arena_;
};

}  // namespace e3
