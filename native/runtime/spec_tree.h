// Host-side tree logic of one speculative round (eagle3-reference.md §3–4), for one sequence:
// candidate bookkeeping during expansion, reranking into the verified tree, and acceptance.
// Small arrays only (K ≤ 16, N ≤ 64); the forwards themselves run on the backend.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/sampling_params.h"

namespace e3 {

struct TreeShape {
  int steps;        // S: draft tokens along the deepest path
  int topk;         // K: branching factor and live branches per level
  int draft_tokens; // N: verified nodes including the root
};
void check_tree_shape(const TreeShape& s);  // throws ERR_INVALID_ARGUMENT

// Every candidate drafted in one round, in sglang's flat order: level 1 (K), then each later
// level's K×K children of the previous level's K live slots.
struct Candidates {
  struct Node {
    int32_t token;
    float score;   // product of draft probabilities along the path
    int parent;    // index into nodes, -1 = the root
    int depth;     // 1-based level
  };
  std::vector<Node> nodes;
  std::vector<int> live;  // nodes expanded by the next draft step, K of them

  // Level 1 from the draft's top-K after the last extend.
  void start(const float* probs, const int32_t* ids, int k);
  // One expansion step: probs/ids [K, K] are the top-K of each live slot; keeps the best K.
  void expand(const float* probs, const int32_t* ids, int k);
};

struct Tree {
  std::vector<int32_t> tokens;   // [N], node 0 = the root
  std::vector<int> parent;       // [N], -1 for the root
  std::vector<int> depth;        // [N]
  std::vector<int64_t> mask;     // [N], bit j = sees node j (ancestors and itself)
};

// The best N−1 candidates by score (ties: lower flat index), in flat order so parents precede
// children, under the root token.
Tree build_tree(const Candidates& c, int32_t root, int n);

// Accepted nodes after the root, and the bonus token.
struct Acceptance {
  std::vector<int> path;  // node indices accepted after the root, in order
  int32_t bonus;
};

// Greedy: follow the children whose token equals the target's argmax at their parent.
Acceptance accept_greedy(const Tree& t, const int32_t* target_argmax);

// Tree speculative sampling with deterministic drafts (q = 1): at each node, one uniform draws
// among the children by the target's probabilities; on a miss the tried children are removed
// and the bonus is drawn from what remains. Output follows the target distribution exactly.
// probs(node) gives the node's filtered target distribution over the vocabulary.
template <class Probs>
Acceptance accept_sampled(const Tree& t, const SamplingParams& sp, int vocab, Probs&& probs);

}  // namespace e3

#include "runtime/spec_tree_sampling.h"
