#include "runtime/spec_tree.h"

#include <algorithm>

#include "runtime/error.h"

namespace e3 {

void check_tree_shape(const TreeShape& s) {
  E3_ARG(s.steps >= 1 && s.topk >= 1 && s.topk <= 16, "tree: steps must be >= 1 and topk 1..16");
  E3_ARG(s.draft_tokens >= 2 && s.draft_tokens <= 64, "tree: draftTokens (with the root) must be 2..64");
  int64_t candidates = s.topk + int64_t(s.steps - 1) * s.topk * s.topk;
  E3_ARG(s.draft_tokens - 1 <= candidates, "tree: " + std::to_string(s.draft_tokens - 1) +
                                               " draft tokens from only " + std::to_string(candidates) + " candidates");
  E3_ARG(int64_t(s.steps) * s.topk <= 64, "tree: steps × topk must be at most 64 (the draft's tree mask)");
}

int tree_candidates(int steps, int topk) { return topk + (steps - 1) * topk * topk; }

int tree_scratch(const TreeShape& s) { return std::max({s.draft_tokens, (s.steps - 1) * s.topk + 1, s.steps + 1}); }

namespace {

void on(Device d, const Tensor& t, DType dt, const char* what) {
  E3_ARG(t.defined() && t.device() == d, std::string(what) + ": expected a tensor on the op's device, got " +
                                             (t.defined() ? t.describe() : std::string("nothing")));
  expect_dtype(t, dt, what);
}

int64_t check_tree_state(Device d, const TreeState& t) {
  check_tree_shape({t.steps, t.topk, 2});
  int64_t B = t.score.defined() ? t.score.dim(0) : 0, C = tree_candidates(t.steps, t.topk);
  E3_ARG(B >= 1, "tree: no sequences");
  on(d, t.score, DType::F32, "tree score");
  on(d, t.token, DType::I32, "tree token");
  on(d, t.parent, DType::I32, "tree parent");
  on(d, t.mask, DType::I64, "tree mask");
  on(d, t.live, DType::I32, "tree live");
  for (const Tensor* x : {&t.score, &t.token, &t.parent, &t.mask}) expect_shape(*x, {B, C}, "tree candidates");
  expect_shape(t.live, {B, t.topk}, "tree live");
  return B;
}

void optional(Device d, const Tensor& t, DType dt, int64_t n, const char* what) {
  if (!t.defined()) return;
  on(d, t, dt, what);
  E3_ARG(t.numel() == n, std::string(what) + ": expected " + std::to_string(n) + " elements, got " + t.describe());
}

}  // namespace

int64_t check_tree_expand(Device d, const TreeState& t, int level, const Tensor& probs, const Tensor& ids,
                          const Tensor& tokens, const Tensor& mask, const Tensor& parent_rows, const RowGather& states) {
  int64_t B = check_tree_state(d, t), K = t.topk;
  E3_ARG(level >= 1 && level <= t.steps, "tree_expand: level " + std::to_string(level) + " of a tree of " +
                                             std::to_string(t.steps) + " steps");
  on(d, probs, DType::F32, "tree_expand probs");
  on(d, ids, DType::I32, "tree_expand ids");
  int64_t rows = level == 1 ? B : B * K;
  E3_ARG(probs.rank() == 2 && probs.dim(0) == rows && probs.dim(1) >= K && ids.rank() == 2 &&
             ids.dim(0) == rows && ids.dim(1) == probs.dim(1),
         "tree_expand: probs/ids must be [" + std::to_string(rows) + ", >= " + std::to_string(K) + "], got " +
             probs.describe() + " and " + ids.describe());
  optional(d, tokens, DType::I32, B * K, "tree_expand tokens");
  optional(d, mask, DType::I64, B * K, "tree_expand mask");
  optional(d, parent_rows, DType::I32, B * K, "tree_expand parentRows");
  if (states.src.defined() || states.dst.defined()) {
    E3_ARG(level > 1 && parent_rows.defined() && states.src.defined() && states.dst.defined() &&
               states.src.device() == d && states.dst.device() == d && states.src.dtype() == states.dst.dtype() &&
               states.src.dim(0) >= B * K && states.dst.dim(0) == B * K &&
               states.src.nbytes() / states.src.dim(0) == states.dst.nbytes() / states.dst.dim(0),
           "tree_expand states: from level 2 with parentRows, src [>= " + std::to_string(B * K) + ", n] into dst [" +
               std::to_string(B * K) + ", n] on the ops' device, got " +
               (states.src.defined() ? states.src.describe() : std::string("nothing")) + " and " +
               (states.dst.defined() ? states.dst.describe() : std::string("nothing")));
  }
  return B;
}

int64_t check_tree_build(Device d, const TreeState& t, const Tensor& roots, const Tensor& committed,
                         const Tensor& tokens, const Tensor& positions, const Tensor& mask, const Tensor& parent) {
  int64_t B = check_tree_state(d, t);
  on(d, roots, DType::I32, "tree_build roots");
  on(d, committed, DType::I32, "tree_build committed");
  expect_shape(roots, {B}, "tree_build roots");
  expect_shape(committed, {B}, "tree_build committed");
  on(d, tokens, DType::I32, "tree_build tokens");
  int64_t N = tokens.numel() / B;
  E3_ARG(tokens.numel() == B * N && N >= 2 && N <= 64 && N - 1 <= tree_candidates(t.steps, t.topk),
         "tree_build: tokens " + tokens.describe() + " is not B × N with 2 <= N <= 64 and N − 1 candidates");
  on(d, positions, DType::I32, "tree_build positions");
  on(d, mask, DType::I64, "tree_build mask");
  on(d, parent, DType::I32, "tree_build parent");
  for (const Tensor* x : {&positions, &mask, &parent})
    E3_ARG(x->numel() == B * N, "tree_build: " + x->describe() + " must hold B × N = " + std::to_string(B * N));
  return N;
}

int64_t check_tree_accept(Device d, const Tensor& tokens, const Tensor& parent, const Tensor& argmax,
                          const Tensor& path, const Tensor& accepted, const Tensor& bonus) {
  on(d, accepted, DType::I32, "tree_accept accepted");
  on(d, bonus, DType::I32, "tree_accept bonus");
  on(d, path, DType::I32, "tree_accept path");
  int64_t B = accepted.numel();
  E3_ARG(B >= 1 && bonus.numel() == B && path.rank() == 2 && path.dim(0) == B && path.dim(1) >= 1,
         "tree_accept: path [B, S], accepted [B] and bonus [B], got " + path.describe() + ", " + accepted.describe() +
             ", " + bonus.describe());
  on(d, tokens, DType::I32, "tree_accept tokens");
  on(d, parent, DType::I32, "tree_accept parent");
  on(d, argmax, DType::I32, "tree_accept argmax");
  int64_t N = tokens.numel() / B;
  E3_ARG(N >= 1 && N <= 64 && tokens.numel() == B * N && parent.numel() == B * N && argmax.numel() == B * N,
         "tree_accept: tokens, parent and argmax must be B × N with N <= 64");
  return B;
}

int64_t check_tree_accept_sampled(Device d, const Tensor& tokens, const Tensor& parent, const Tensor& logits,
                                  const Tensor& params, const Tensor& path, const Tensor& accepted, const Tensor& bonus) {
  int64_t B = check_tree_accept(d, tokens, parent, tokens, path, accepted, bonus), N = tokens.numel() / B;
  on(d, logits, DType::F32, "tree_accept_sampled logits");
  E3_ARG(logits.rank() == 2 && logits.dim(0) == B * N, "tree_accept_sampled: logits must be [B·N, V], got " + logits.describe());
  E3_ARG(params.defined() && params.device() == d && params.nbytes() == size_t(B) * sizeof(SamplingParams),
         "tree_accept_sampled: params must hold " + std::to_string(B) + " SamplingParams");
  return B;
}

int64_t check_tree_commit(Device d, const Tensor& tokens, const Tensor& path, const Tensor& accepted,
                          const Tensor& bonus, const Tensor& out_tokens, const Tensor& feature_rows,
                          const Tensor& last_rows) {
  on(d, accepted, DType::I32, "tree_commit accepted");
  on(d, bonus, DType::I32, "tree_commit bonus");
  on(d, path, DType::I32, "tree_commit path");
  on(d, tokens, DType::I32, "tree_commit tokens");
  int64_t B = accepted.numel();
  E3_ARG(B >= 1 && bonus.numel() == B && path.rank() == 2 && path.dim(0) == B && tokens.numel() % B == 0,
         "tree_commit: path [B, S], accepted [B], bonus [B] and tokens [B·N]");
  int64_t S = path.dim(1);
  on(d, out_tokens, DType::I32, "tree_commit outTokens");
  on(d, feature_rows, DType::I32, "tree_commit featureRows");
  on(d, last_rows, DType::I32, "tree_commit lastRows");
  E3_ARG(out_tokens.numel() == B * (S + 1) && feature_rows.numel() == B * (S + 1) && last_rows.numel() == B,
         "tree_commit: outTokens and featureRows [B, S + 1], lastRows [B]");
  return B;
}

int64_t check_kv_compact(Device d, const Tensor& pool, const Tensor& page_table, int page_size,
                         const Tensor& committed, const Tensor& path, const Tensor& accepted) {
  E3_ARG(pool.defined() && pool.device() == d && pool.rank() >= 2 && pool.dim(0) % 2 == 0,
         "kv_compact: pool must be [2 · layers, slots, …], got " + (pool.defined() ? pool.describe() : std::string("nothing")));
  on(d, page_table, DType::I32, "kv_compact pageTable");
  on(d, committed, DType::I32, "kv_compact committed");
  on(d, path, DType::I32, "kv_compact path");
  on(d, accepted, DType::I32, "kv_compact accepted");
  int64_t B = committed.numel();
  E3_ARG(B >= 1 && page_table.rank() == 2 && page_table.dim(0) == B && path.rank() == 2 && path.dim(0) == B &&
             accepted.numel() == B && page_size >= 1,
         "kv_compact: pageTable [B, pages], committed [B], path [B, S], accepted [B]");
  return B;
}

int64_t check_tree_advance(Device d, const Tensor& committed, const Tensor& accepted, const Tensor& bonus,
                           const Tensor& next_committed, const Tensor& next_roots) {
  for (auto [t, what] : {std::pair{&committed, "committed"}, {&accepted, "accepted"}, {&bonus, "bonus"},
                         {&next_committed, "nextCommitted"}, {&next_roots, "nextRoots"}})
    on(d, *t, DType::I32, (std::string("tree_advance ") + what).c_str());
  int64_t B = committed.numel();
  E3_ARG(B >= 1 && accepted.numel() == B && bonus.numel() == B && next_committed.numel() == B && next_roots.numel() == B,
         "tree_advance: committed, accepted, bonus, nextCommitted and nextRoots must all be [B]");
  return B;
}

int64_t check_step_layout(Device d, const Tensor& committed, const Tensor& page_table, int page_size, const StepLayout& step) {
  on(d, committed, DType::I32, "step_layout committed");
  on(d, page_table, DType::I32, "step_layout pageTable");
  on(d, step.kv_len, DType::I32, "step_layout kvLen");
  on(d, step.slots, DType::I32, "step_layout slots");
  int64_t B = committed.numel(), q = step.q;
  E3_ARG(B >= 1 && q >= 1 && page_size >= 1 && page_table.rank() == 2 && page_table.dim(0) == B &&
             step.kv_len.numel() == B && step.slots.numel() == B * q,
         "step_layout: committed [B], pageTable [B, pages], kvLen [B] and slots [B·q] with q >= 1");
  if (step.positions.defined()) {
    on(d, step.positions, DType::I32, "step_layout positions");
    E3_ARG(step.positions.numel() == B * q, "step_layout: positions must be [B·q]");
  }
  return B;
}

}  // namespace e3
