#include "runtime/step_inputs.h"

#include <algorithm>
#include <cstring>

namespace e3 {

void UploadArena::add(const void* src, size_t bytes, DType dt, Shape shape, Tensor* dst) {
  size_t offset = bytes_.size();
  bytes_.resize(offset + (bytes + 15) / 16 * 16, 0);
  if (bytes) std::memcpy(bytes_.data() + offset, src, bytes);
  pending_.push_back({offset, dt, std::move(shape), dst});
}

void UploadArena::add_step(const HostStep& s, int page_size, StepTensors& io, int max_kv_len, bool with_page_table) {
  int64_t T = int64_t(s.tokens.size()), S = int64_t(s.kv_len.size());
  std::vector<int32_t> token_seq(static_cast<size_t>(T)), slots(static_cast<size_t>(T));
  AttentionLayout& L = io.layout;
  L = AttentionLayout();
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
  add(s.tokens, &io.tokens);
  add(s.positions, &io.positions);
  add(s.q_start, &L.q_start);
  add(s.kv_len, &L.kv_len);
  if (with_page_table) add(s.page_table.data(), s.page_table.size() * 4, DType::I32, {S, s.max_pages}, &L.page_table);
  add(token_seq, &L.token_seq);
  add(slots, &L.slots);
  add(s.logit_rows, &io.logit_rows);
  if (!s.feedback.empty()) add(s.feedback, &io.feedback);
  if (!s.tree_mask.empty()) add(s.tree_mask.data(), size_t(T) * 8, DType::I64, {T}, &L.tree_mask);
  if (!s.tree_base.empty()) add(s.tree_base, &L.tree_base);
  size_t sp = s.sampling.size() * sizeof(SamplingParams);
  add(s.sampling.data(), sp, DType::U8, {int64_t(sp)}, &io.sampling);
}

void UploadArena::upload(Ops& ops) {
  size_t total = std::max<size_t>(bytes_.size(), 16);
  if (!arena_.defined() || arena_.nbytes() < total) arena_ = Tensor::empty(ops.device(), DType::U8, {int64_t(total)});
  if (!bytes_.empty()) ops.upload(arena_, bytes_.data(), bytes_.size());
  for (const Pending& p : pending_) *p.dst = Tensor(arena_.buffer(), p.offset, p.dt, p.shape);
  bytes_.clear();
  pending_.clear();
}

StepTensors UploadArena::upload_step(Ops& ops, const HostStep& s, int page_size, int max_kv_len) {
  StepTensors io;
  add_step(s, page_size, io, max_kv_len);
  upload(ops);
  return io;
}

}  // namespace e3
