// accept_sampled (declared in spec_tree.h), kept in a header because it is a template.
#pragma once
#include <vector>

#include "runtime/rng.h"

namespace e3 {

template <class Probs>
Acceptance accept_sampled(const Tree& t, const SamplingParams& sp, int vocab, Probs&& probs) {
  Acceptance a{{}, 0};
  int cur = 0;
  int n = int(t.tokens.size());
  for (;;) {
    const float* p = probs(cur);
    // Lane of the request's stream: one uniform per verified node, a second for the bonus.
    float u = uniform01(sp.seed, sp.counter, uint32_t(2 * (a.path.size() + 1)));
    double acc = 0;
    std::vector<int32_t> rejected;
    int next = -1;
    for (int c = cur + 1; c < n && next < 0; ++c) {
      if (t.parent[size_t(c)] != cur) continue;
      acc += p[t.tokens[size_t(c)]];
      if (u < acc) next = c;
      else rejected.push_back(t.tokens[size_t(c)]);
    }
    if (next >= 0) {
      a.path.push_back(next);
      cur = next;
      continue;
    }
    // Residual distribution: p without the rejected children, renormalised.
    double total = 0;
    for (int v = 0; v < vocab; ++v) total += p[v];
    for (int32_t r : rejected) total -= p[r];
    double target = double(uniform01(sp.seed, sp.counter, uint32_t(2 * (a.path.size() + 1) + 1))) * total, run = 0;
    int32_t last = -1;
    for (int v = 0; v < vocab; ++v) {
      bool removed = false;
      for (int32_t r : rejected) removed |= r == v;
      if (removed || p[v] <= 0) continue;
      last = v;
      if ((run += p[v]) > target) {
        a.bonus = v;
        return a;
      }
    }
    a.bonus = last;
    return a;
  }
}

}  // namespace e3
