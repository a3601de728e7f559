#include "runtime/step_inputs.h"

#include <algorithm>
#include <cstring>

namespace e3 {

StepTensors StepUploader::upload(Ops& ops, const HostStep& s, int page_size, int max_kv_len) {
  int64_t T = int64_t(s.tokens.size()), S = int64_t(s.kv_len.size()), R = int64_t(s.logit_rows.size());
  std::vector<int32_t> token_seq(static_cast<size_t>(T)), slots(static_cast<size_t>(T));
  StepTensors io;
  AttentionLayout& L = io.layout;
  L.num_seqs = int(S);
  L.num_tokens = int(T);
  L.page_size = page_size;
  L.max_pages = s.max_pages;
  for (int64_t i = 0; i < S; ++i) {
    int q0 = s.q_start[size_t(i)], q_len = s.q_start[size_t(i) + 1] - q0, first = s.kv_len[size_t(i)] - q_len;
    L.max_q_len = std::max(L.max_q_len, q_len);
    L.max_kv_len = std::max(L.max_kv_len, s.kv_len[size_t(i)]);
    for (int j = 0; j < q_len; ++j) {
      int ctx = first + j;
      token_seq[size_t(q0 + j)] = int32_t(i);
      slots[size_t(q0 + j)] = s.page_table[size_t(i * s.max_pages + ctx / page_size)] * page_size + ctx % page_size;
    }
  }
  if (max_kv_len >= 0) L.max_kv_len = max_kv_len;
  struct Src { const void* p; size_t bytes; DType dt; Shape shape; Tensor* dst; };
  Tensor tree_mask, tree_base;
  Src srcs[] = {
      {s.tokens.data(), size_t(T) * 4, DType::I32, {T}, &io.tokens},
      {s.positions.data(), size_t(T) * 4, DType::I32, {T}, &io.positions},
      {s.q_start.data(), size_t(S + 1) * 4, DType::I32, {S + 1}, &L.q_start},
      {s.kv_len.data(), size_t(S) * 4, DType::I32, {S}, &L.kv_len},
      {s.page_table.data(), s.page_table.size() * 4, DType::I32, {S, s.max_pages}, &L.page_table},
      {token_seq.data(), size_t(T) * 4, DType::I32, {T}, &L.token_seq},
      {slots.data(), size_t(T) * 4, DType::I32, {T}, &L.slots},
      {s.logit_rows.data(), size_t(R) * 4, DType::I32, {R}, &io.logit_rows},
      {s.tree_mask.data(), s.tree_mask.size() * 8, DType::I64, {int64_t(s.tree_mask.size())}, &tree_mask},
      {s.tree_base.data(), s.tree_base.size() * 4, DType::I32, {int64_t(s.tree_base.size())}, &tree_base},
      {s.sampling.data(), s.sampling.size() * sizeof(SamplingParams), DType::U8,
       {int64_t(s.sampling.size() * sizeof(SamplingParams))}, &io.sampling},
  };
  std::vector<size_t> offsets;
  size_t total = 0;
  for (const Src& x : srcs) {
    offsets.push_back(total);
    total += (x.bytes + 15) / 16 * 16;
  }
  std::vector<char> bytes(total, 0);
  for (size_t i = 0; i < std::size(srcs); ++i)
    if (srcs[i].bytes) std::memcpy(bytes.data() + offsets[i], srcs[i].p, srcs[i].bytes);
  if (!arena_.defined() || arena_.nbytes() < total) arena_ = Tensor::empty(ops.device(), DType::U8, {int64_t(total)});
  ops.upload(arena_, bytes.data(), total);
  for (size_t i = 0; i < std::size(srcs); ++i) *srcs[i].dst = Tensor(arena_.buffer(), offsets[i], srcs[i].dt, srcs[i].shape);
  if (!s.tree_mask.empty()) L.tree_mask = tree_mask;
  if (!s.tree_base.empty()) L.tree_base = tree_base;
  return io;
}

}  // namespace e3
