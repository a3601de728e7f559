// The inputs of one or more steps on the device: every integer array of the host plans packed
// into one arena and uploaded with a single copy. Shared by the target executor, its graphs, the
// draft and the speculative rounds.
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
  // [T] or empty: token t is the one the previous step sampled in row feedback[t] (a step launched
  // before that one's tokens were read back); `tokens` then only holds placeholders.
  std::vector<int32_t> feedback;
  bool want_logits = false, want_hidden = false, want_timing = false;
};

class UploadArena {
 public:
  // Queues a copy of host bytes; *dst becomes their device view at upload(), so dst must
  // outlive that call.
  void add(const void* src, size_t bytes, DType dt, Shape shape, Tensor* dst);
  void add(const std::vector<int32_t>& v, Tensor* dst) { add(v.data(), v.size() * 4, DType::I32, {int64_t(v.size())}, dst); }
  // Queues a step's inputs (cache slots derived from its page tables) into io's input views
  // (outputs stay undefined). max_kv_len, when given, replaces the layout's bound (graphs serve
  // a range of lengths). Without with_page_table the caller binds io.layout.page_table to a
  // table it shares between steps.
  void add_step(const HostStep& s, int page_size, StepTensors& io, int max_kv_len = -1, bool with_page_table = true);
  // Everything queued in one copy, into an arena grown on demand (the same arena, at the same
  // address, for the same sizes). The views stay valid until the next upload.
  void upload(Ops& ops);

  // One step queued and uploaded.
  StepTensors upload_step(Ops& ops, const HostStep& s, int page_size, int max_kv_len = -1);

 private:
  struct Pending {
    size_t offset;
    DType dt;
    Shape shape;
    Tensor* dst;
  };
  Tensor arena_;
  std::vector<char> bytes_;
  std::vector<Pending> pending_;
};

}  // namespace e3
