#include "runtime/step.h"

#include <cstring>

#include "runtime/error.h"

namespace e3 {

Executor::Executor(Ops& ops, QwenConfig cfg, QwenWeights weights, const ExecutorOptions& o)
    : ops_(ops), model_(ops, std::move(cfg), std::move(weights), o.max_tokens) {
  const QwenConfig& c = model_.config();
  kv_ = KvCache::allocate(ops.device(), ops.act_dtype(), c.layers, o.num_pages, o.page_size, c.kv_heads, c.head_dim);
  logits_ = Tensor::empty(ops.device(), DType::F32, {o.max_tokens, c.vocab});
  if (!c.capture_layers.empty())
    hidden_ = Tensor::empty(ops.device(), ops.act_dtype(), {o.max_tokens, int64_t(c.capture_layers.size()) * c.hidden});
  sampled_ = Tensor::empty(ops.device(), DType::I32, {o.max_tokens});
}

void Executor::validate(const HostStep& s) const {
  const QwenConfig& c = model_.config();
  size_t T = s.tokens.size(), S = s.kv_len.size(), R = s.logit_rows.size();
  E3_ARG(T >= 1 && int(T) <= model_.max_tokens(), "a step needs 1.." + std::to_string(model_.max_tokens()) +
                                                      " tokens, got " + std::to_string(T));
  E3_ARG(s.positions.size() == T, "positions must have one entry per token");
  E3_ARG(S >= 1 && s.q_start.size() == S + 1, "qStart must have one entry more than kvLen");
  E3_ARG(s.q_start[0] == 0 && size_t(s.q_start[S]) == T, "qStart must start at 0 and end at the token count");
  E3_ARG(s.max_pages >= 1 && s.page_table.size() == S * size_t(s.max_pages), "pageTable must be kvLen.length × maxPages");
  E3_ARG(s.tree_mask.empty() || s.tree_mask.size() == T, "treeMask must have one entry per token");
  for (size_t t = 0; t < T; ++t) {
    E3_ARG(s.tokens[t] >= 0 && s.tokens[t] < c.vocab, "token " + std::to_string(s.tokens[t]) + " at index " +
                                                         std::to_string(t) + " is outside the vocabulary of " +
                                                         std::to_string(c.vocab));
    E3_ARG(s.positions[t] >= 0, "negative position at index " + std::to_string(t));
  }
  for (size_t i = 0; i < S; ++i) {
    int q_len = s.q_start[i + 1] - s.q_start[i];
    std::string seq = "sequence " + std::to_string(i);
    E3_ARG(q_len >= 1, seq + " has no new tokens");
    E3_ARG(s.kv_len[i] >= q_len && s.kv_len[i] <= s.max_pages * kv_.page_size,
           seq + ": context length " + std::to_string(s.kv_len[i]) + " does not fit its " + std::to_string(q_len) +
               " new tokens and " + std::to_string(s.max_pages) + " pages of " + std::to_string(kv_.page_size));
    for (int p = 0; p < (s.kv_len[i] + kv_.page_size - 1) / kv_.page_size; ++p) {
      int page = s.page_table[i * size_t(s.max_pages) + size_t(p)];
      E3_ARG(page >= 0 && page < kv_.num_pages, seq + ": page " + std::to_string(page) + " outside the pool of " +
                                                    std::to_string(kv_.num_pages));
    }
    if (!s.tree_mask.empty()) {
      E3_ARG(q_len <= 64, seq + ": a tree mask covers at most 64 new tokens, got " + std::to_string(q_len));
      for (int j = 0; j < q_len; ++j) {
        uint64_t m = uint64_t(s.tree_mask[size_t(s.q_start[i] + j)]);
        E3_ARG((q_len == 64 || (m >> q_len) == 0) && ((m >> j) & 1u),
               seq + ": tree mask of new token " + std::to_string(j) + " must see itself and only its sequence");
      }
    }
  }
  for (size_t r = 0; r < R; ++r)
    E3_ARG(s.logit_rows[r] >= 0 && size_t(s.logit_rows[r]) < T, "logit row " + std::to_string(s.logit_rows[r]) +
                                                                    " is not a token of this step");
  E3_ARG(s.sampling.empty() || s.sampling.size() == R, "sampling needs one entry per logit row");
  E3_ARG(!s.want_hidden || hidden_.defined(), "hidden states were asked for but the model captures no layers");
}

// All integer inputs travel in one arena so a device step needs a single upload.
StepResult Executor::run(const HostStep& s) {
  validate(s);
  const QwenConfig& c = model_.config();
  int64_t T = int64_t(s.tokens.size()), S = int64_t(s.kv_len.size()), R = int64_t(s.logit_rows.size());
  std::vector<int32_t> token_seq(static_cast<size_t>(T)), slots(static_cast<size_t>(T));
  for (int64_t i = 0; i < S; ++i) {
    int q0 = s.q_start[size_t(i)], q_len = s.q_start[size_t(i) + 1] - q0, first = s.kv_len[size_t(i)] - q_len;
    for (int j = 0; j < q_len; ++j) {
      int ctx = first + j;
      token_seq[size_t(q0 + j)] = int32_t(i);
      slots[size_t(q0 + j)] = s.page_table[size_t(i * s.max_pages + ctx / kv_.page_size)] * kv_.page_size +
                              ctx % kv_.page_size;
    }
  }
  struct Part { const void* src; size_t bytes; DType dt; Shape shape; size_t offset; };
  std::vector<Part> parts = {
      {s.tokens.data(), size_t(T) * 4, DType::I32, {T}, 0},
      {s.positions.data(), size_t(T) * 4, DType::I32, {T}, 0},
      {s.q_start.data(), size_t(S + 1) * 4, DType::I32, {S + 1}, 0},
      {s.kv_len.data(), size_t(S) * 4, DType::I32, {S}, 0},
      {s.page_table.data(), s.page_table.size() * 4, DType::I32, {S, s.max_pages}, 0},
      {token_seq.data(), size_t(T) * 4, DType::I32, {T}, 0},
      {slots.data(), size_t(T) * 4, DType::I32, {T}, 0},
      {s.logit_rows.data(), size_t(R) * 4, DType::I32, {R}, 0},
      {s.tree_mask.data(), s.tree_mask.size() * 8, DType::I64, {int64_t(s.tree_mask.size())}, 0},
      {s.sampling.data(), s.sampling.size() * sizeof(SamplingParams), DType::U8,
       {int64_t(s.sampling.size() * sizeof(SamplingParams))}, 0},
  };
  size_t total = 0;
  for (Part& p : parts) {
    p.offset = total;
    total += (p.bytes + 15) / 16 * 16;
  }
  std::vector<char> host(total);
  for (const Part& p : parts)
    if (p.bytes) std::memcpy(host.data() + p.offset, p.src, p.bytes);
  if (!arena_.defined() || arena_.nbytes() < total) arena_ = Tensor::empty(ops_.device(), DType::U8, {int64_t(total)});
  copy_from_host(arena_, 0, host.data(), total);
  auto at = [&](size_t i) { return Tensor(arena_.buffer(), parts[i].offset, parts[i].dt, parts[i].shape); };

  StepTensors io;
  io.tokens = at(0);
  io.positions = at(1);
  AttentionLayout& L = io.layout;
  L.num_seqs = int(S);
  L.num_tokens = int(T);
  L.page_size = kv_.page_size;
  L.max_pages = s.max_pages;
  for (int64_t i = 0; i < S; ++i) {
    L.max_q_len = std::max(L.max_q_len, s.q_start[size_t(i) + 1] - s.q_start[size_t(i)]);
    L.max_kv_len = std::max(L.max_kv_len, s.kv_len[size_t(i)]);
  }
  L.q_start = at(2);
  L.kv_len = at(3);
  L.page_table = at(4);
  L.token_seq = at(5);
  L.slots = at(6);
  if (!s.tree_mask.empty()) L.tree_mask = at(8);
  io.logit_rows = at(7);
  io.logits = logits_.rows(0, R);
  if (hidden_.defined()) io.hidden = hidden_.rows(0, T);
  model_.forward(io, kv_);

  StepResult out;
  if (!s.sampling.empty()) {
    Tensor tok = sampled_.rows(0, R);
    ops_.sample(io.logits, at(9), tok);
    out.tokens.resize(size_t(R));
    copy_to_host(tok, 0, out.tokens.data(), size_t(R) * 4);
  }
  if (s.want_logits) {
    out.logits.resize(size_t(R * c.vocab));
    copy_to_host(io.logits, 0, out.logits.data(), out.logits.size() * 4);
  }
  if (s.want_hidden) {
    Tensor h = io.hidden;
    out.hidden.resize(size_t(h.numel()));
    if (h.dtype() == DType::F32) {
      copy_to_host(h, 0, out.hidden.data(), h.nbytes());
    } else {
      std::vector<uint16_t> raw(static_cast<size_t>(h.numel()));
      copy_to_host(h, 0, raw.data(), h.nbytes());
      convert_elements(raw.data(), h.dtype(), out.hidden.data(), DType::F32, raw.size());
    }
  }
  return out;
}

}  // namespace e3
