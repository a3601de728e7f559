// Tree shapes of a speculative round (eagle3-reference.md §3–4), the checks the backends' tree
// ops share, and the host side of sampled acceptance. Small arrays only (K ≤ 16, N ≤ 64); the
// trees themselves are built on the backend (Ops::tree_*).
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/ops.h"
#include "runtime/sampling_params.h"

namespace e3 {

struct TreeShape {
  int steps;        // S: draft tokens along the deepest path
  int topk;         // K: branching factor and live branches per level
  int draft_tokens; // N: verified nodes including the root
};
void check_tree_shape(const TreeShape& s);  // throws ERR_INVALID_ARGUMENT

// Candidates per sequence: K + (S − 1)·K².
int tree_candidates(int steps, int topk);
// Argument checks of the tree ops, shared by the backends (all tensors on `d`); they return the
// batch size B, and tree_build's check the verified nodes N.
int64_t check_tree_expand(Device d, const TreeState& t, int level, const Tensor& probs, const Tensor& ids,
                          const Tensor& tokens, const Tensor& mask, const Tensor& parent_rows, const RowGather& states);
int64_t check_tree_build(Device d, const TreeState& t, const Tensor& roots, const Tensor& committed,
                         const Tensor& tokens, const Tensor& positions, const Tensor& mask, const Tensor& parent);
int64_t check_tree_accept(Device d, const Tensor& tokens, const Tensor& parent, const Tensor& argmax,
                          const Tensor& path, const Tensor& accepted, const Tensor& bonus);
// Returns B; the vocabulary is logits.dim(1).
int64_t check_tree_accept_sampled(Device d, const Tensor& tokens, const Tensor& parent, const Tensor& logits,
                                  const Tensor& params, const Tensor& path, const Tensor& accepted, const Tensor& bonus);
int64_t check_tree_commit(Device d, const Tensor& tokens, const Tensor& path, const Tensor& accepted,
                          const Tensor& bonus, const Tensor& out_tokens, const Tensor& feature_rows,
                          const Tensor& last_rows);
int64_t check_kv_compact(Device d, const Tensor& pool, const Tensor& page_table, int page_size,
                         const Tensor& committed, const Tensor& path, const Tensor& accepted);
int64_t check_tree_advance(Device d, const Tensor& committed, const Tensor& accepted, const Tensor& bonus,
                           const Tensor& next_committed, const Tensor& next_roots);
int64_t check_step_layout(Device d, const Tensor& committed, const Tensor& page_table, int page_size, const StepLayout& step);
// Context positions a round writes past a sequence's committed tokens: the verified tree, the
// draft's scratch for S − 1 levels, and the draft extend's S + 1 padded tokens.
int tree_scratch(const TreeShape& s);

// One verified tree on the host (sampled acceptance): node 0 is the root.
struct Tree {
  std::vector<int32_t> tokens;   // [N]
  std::vector<int> parent;       // [N], -1 for the root
};

// Accepted nodes after the root, and the bonus token.
struct Acceptance {
  std::vector<int> path;  // node indices accepted after the root, in order
  int32_t bonus;
};

// Tree speculative sampling with deterministic drafts (q = 1): at each node, one uniform draws
// among the children by the target's probabilities; on a miss the tried children are removed
// and the bonus is drawn from what remains. Output follows the target distribution exactly.
// probs(node) gives the node's filtered target distribution over the vocabulary.
template <class Probs>
Acceptance accept_sampled(const Tree& t, const SamplingParams& sp, int vocab, Probs&& probs);

}  // namespace e3

#include "runtime/spec_tree_sampling.h"
