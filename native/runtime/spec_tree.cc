#include "runtime/spec_tree.h"

#include <algorithm>
#include <numeric>

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

void Candidates::start(const float* probs, const int32_t* ids, int k) {
  nodes.clear();
  live.clear();
  for (int j = 0; j < k; ++j) {
    live.push_back(int(nodes.size()));
    nodes.push_back({ids[j], probs[j], -1, 1});
  }
}

void Candidates::expand(const float* probs, const int32_t* ids, int k) {
  std::vector<int> level;
  for (size_t a = 0; a < live.size(); ++a) {
    const Node& parent = nodes[size_t(live[a])];
    for (int c = 0; c < k; ++c) {
      level.push_back(int(nodes.size()));
      nodes.push_back({ids[a * k + c], parent.score * probs[a * k + c], live[a], parent.depth + 1});
    }
  }
  std::stable_sort(level.begin(), level.end(), [&](int x, int y) { return nodes[size_t(x)].score > nodes[size_t(y)].score; });
  level.resize(std::min<size_t>(level.size(), size_t(k)));
  std::sort(level.begin(), level.end());
  live = level;
}

Tree build_tree(const Candidates& c, int32_t root, int n) {
  // Score order with ties broken by flat index is a linear extension of the tree (a child never
  // outscores its parent and comes later), so any prefix of it is closed under ancestors.
  std::vector<int> order(c.nodes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return c.nodes[size_t(x)].score > c.nodes[size_t(y)].score; });
  order.resize(std::min<size_t>(order.size(), size_t(n - 1)));
  std::sort(order.begin(), order.end());
  std::vector<int> node_of(c.nodes.size(), -1);
  Tree t;
  t.tokens.push_back(root);
  t.parent.push_back(-1);
  t.depth.push_back(0);
  t.mask.push_back(1);
  for (int flat : order) {
    const Candidates::Node& cn = c.nodes[size_t(flat)];
    int p = cn.parent < 0 ? 0 : node_of[size_t(cn.parent)];
    E3_CHECK(p >= 0, Internal, "draft tree lost a parent");
    int idx = int(t.tokens.size());
    node_of[size_t(flat)] = idx;
    t.tokens.push_back(cn.token);
    t.parent.push_back(p);
    t.depth.push_back(cn.depth);
    t.mask.push_back(t.mask[size_t(p)] | (int64_t(1) << idx));
  }
  return t;
}

Acceptance accept_greedy(const Tree& t, const int32_t* target_argmax) {
  Acceptance a{{}, 0};
  int cur = 0, n = int(t.tokens.size());
  for (;;) {
    int next = -1;
    for (int c = cur + 1; c < n && next < 0; ++c)
      if (t.parent[size_t(c)] == cur && t.tokens[size_t(c)] == target_argmax[cur]) next = c;
    if (next < 0) break;
    a.path.push_back(next);
    cur = next;
  }
  a.bonus = target_argmax[cur];
  return a;
}

}  // namespace e3
