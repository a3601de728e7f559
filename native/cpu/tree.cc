// Reference of the draft-tree ops: plain loops over one sequence at a time, in the order the
// CUDA kernels must reproduce exactly (ties broken by the lower flat index everywhere).
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"
#include "runtime/sampling_filter.h"
#include "runtime/spec_tree.h"

namespace e3 {

namespace {

// Indices [0, n) ordered by score (higher first, ties: lower index); the first k of them, in index order.
std::vector<int> best(const float* score, int n, int k) {
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return score[x] > score[y]; });
  order.resize(size_t(std::min(n, k)));
  std::sort(order.begin(), order.end());
  return order;
}

int depth_of(int flat, int K) { return flat < K ? 1 : 2 + (flat - K) / (K * K); }

}  // namespace

void CpuOps::tree_expand(const TreeState& t, int level, const Tensor& probs, const Tensor& ids, const Tensor& tokens,
                         const Tensor& mask, const Tensor& parent_rows, const RowGather& states) {
  int64_t B = check_tree_expand(Device::CPU, t, level, probs, ids, tokens, mask, parent_rows, states);
  const int K = t.topk, C = tree_candidates(t.steps, t.topk);
  const int64_t W = probs.dim(1);
  for (int64_t b = 0; b < B; ++b) {
    float* score = t.score.ptr<float>() + b * C;
    int32_t* token = t.token.ptr<int32_t>() + b * C;
    int32_t* parent = t.parent.ptr<int32_t>() + b * C;
    int64_t* bits = t.mask.ptr<int64_t>() + b * C;
    int32_t* live = t.live.ptr<int32_t>() + b * K;
    std::vector<int32_t> from(live, live + K);  // the previous level's live nodes
    if (level == 1) {
      for (int j = 0; j < K; ++j) {
        score[j] = probs.ptr<float>()[b * W + j];
        token[j] = ids.ptr<int32_t>()[b * W + j];
        parent[j] = -1;
        live[j] = j;
      }
    } else {
      const int base = K + (level - 2) * K * K;
      for (int a = 0; a < K; ++a)
        for (int c = 0; c < K; ++c) {
          int64_t row = (b * K + a) * W + c;
          score[base + a * K + c] = score[from[size_t(a)]] * probs.ptr<float>()[row];
          token[base + a * K + c] = ids.ptr<int32_t>()[row];
          parent[base + a * K + c] = from[size_t(a)];
        }
      std::vector<int> keep = best(score + base, K * K, K);
      for (int j = 0; j < K; ++j) live[j] = base + keep[size_t(j)];
    }
    for (int j = 0; j < K; ++j) {
      int node = live[j], a = level == 1 ? 0 : (node - (K + (level - 2) * K * K)) / K;
      int64_t bit = int64_t(1) << ((level - 1) * K + j);
      bits[node] = level == 1 ? bit : bits[from[size_t(a)]] | bit;
      if (tokens.defined()) tokens.ptr<int32_t>()[b * K + j] = token[node];
      if (mask.defined()) mask.ptr<int64_t>()[b * K + j] = bits[node];
      if (parent_rows.defined() && level > 1) parent_rows.ptr<int32_t>()[b * K + j] = int32_t(b * K + a);
      if (states.dst.defined()) {
        const size_t row = states.dst.nbytes() / size_t(states.dst.dim(0));
        std::memcpy(static_cast<char*>(states.dst.data()) + (b * K + j) * row,
                    static_cast<const char*>(states.src.data()) + (b * K + a) * row, row);
      }
    }
  }
}

void CpuOps::tree_build(const TreeState& t, const Tensor& roots, const Tensor& committed, const Tensor& tokens,
                        const Tensor& positions, const Tensor& mask, const Tensor& parent) {
  int64_t N = check_tree_build(Device::CPU, t, roots, committed, tokens, positions, mask, parent);
  int64_t B = roots.numel();
  const int K = t.topk, C = tree_candidates(t.steps, t.topk);
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* cparent = t.parent.ptr<int32_t>() + b * C;
    // Score order is a linear extension of each tree (a child never outscores its parent and
    // comes later), so the best N − 1 are closed under ancestors.
    std::vector<int> keep = best(t.score.ptr<float>() + b * C, C, int(N - 1));
    std::vector<int> node_of(static_cast<size_t>(C), -1);
    int32_t* tok = tokens.ptr<int32_t>() + b * N;
    int32_t* pos = positions.ptr<int32_t>() + b * N;
    int64_t* m = mask.ptr<int64_t>() + b * N;
    int32_t* par = parent.ptr<int32_t>() + b * N;
    int32_t L = committed.ptr<int32_t>()[b];
    tok[0] = roots.ptr<int32_t>()[b];
    pos[0] = L;
    m[0] = 1;
    par[0] = -1;
    for (size_t i = 0; i < keep.size(); ++i) {
      int flat = keep[i], idx = int(i) + 1;
      node_of[size_t(flat)] = idx;
      int p = cparent[flat] < 0 ? 0 : node_of[size_t(cparent[flat])];
      E3_CHECK(p >= 0, Internal, "draft tree lost a parent");
      tok[idx] = t.token.ptr<int32_t>()[b * C + flat];
      pos[idx] = L + depth_of(flat, K);
      m[idx] = m[p] | (int64_t(1) << idx);
      par[idx] = p;
    }
  }
}

void CpuOps::tree_accept_greedy(const Tensor& tokens, const Tensor& parent, const Tensor& argmax, const Tensor& path,
                                const Tensor& accepted, const Tensor& bonus) {
  int64_t B = check_tree_accept(Device::CPU, tokens, parent, argmax, path, accepted, bonus);
  int64_t N = tokens.numel() / B, S = path.dim(1);
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* tok = tokens.ptr<int32_t>() + b * N;
    const int32_t* par = parent.ptr<int32_t>() + b * N;
    const int32_t* am = argmax.ptr<int32_t>() + b * N;
    int cur = 0, m = 0;
    for (;;) {
      int next = -1;
      for (int c = cur + 1; c < N && next < 0; ++c)
        if (par[c] == cur && tok[c] == am[cur]) next = c;
      if (next < 0 || m == S) break;
      path.ptr<int32_t>()[b * S + m++] = next;
      cur = next;
    }
    accepted.ptr<int32_t>()[b] = m;
    bonus.ptr<int32_t>()[b] = am[cur];
  }
}

void CpuOps::tree_accept_sampled(const Tensor& tokens, const Tensor& parent, const Tensor& logits, const Tensor& params,
                                 const Tensor& path, const Tensor& accepted, const Tensor& bonus) {
  int64_t B = check_tree_accept_sampled(Device::CPU, tokens, parent, logits, params, path, accepted, bonus);
  int64_t N = tokens.numel() / B, S = path.dim(1), V = logits.dim(1);
  const SamplingParams* sp = static_cast<const SamplingParams*>(params.data());
  std::vector<float> probs;
  for (int64_t b = 0; b < B; ++b) {
    if (sp[b].temperature <= 0) continue;
    Tree t;
    t.tokens.assign(tokens.ptr<int32_t>() + b * N, tokens.ptr<int32_t>() + (b + 1) * N);
    t.parent.assign(parent.ptr<int32_t>() + b * N, parent.ptr<int32_t>() + (b + 1) * N);
    Acceptance a = accept_sampled(t, sp[b], int(V), [&](int node) {
      return filtered_probs(logits.ptr<float>() + (b * N + node) * V, V, sp[b], probs);
    });
    E3_CHECK(int64_t(a.path.size()) <= S, Internal, "tree_accept_sampled: a path deeper than the tree");
    std::copy(a.path.begin(), a.path.end(), path.ptr<int32_t>() + b * S);
    accepted.ptr<int32_t>()[b] = int32_t(a.path.size());
    bonus.ptr<int32_t>()[b] = a.bonus;
  }
}

void CpuOps::tree_commit(const Tensor& tokens, const Tensor& path, const Tensor& accepted, const Tensor& bonus,
                         const Tensor& out_tokens, const Tensor& feature_rows, const Tensor& last_rows) {
  int64_t B = check_tree_commit(Device::CPU, tokens, path, accepted, bonus, out_tokens, feature_rows, last_rows);
  int64_t N = tokens.numel() / B, S = path.dim(1);
  for (int64_t b = 0; b < B; ++b) {
    int m = accepted.ptr<int32_t>()[b];
    E3_ARG(m >= 0 && m <= S, "tree_commit: " + std::to_string(m) + " accepted tokens in a path of " + std::to_string(S));
    const int32_t* p = path.ptr<int32_t>() + b * S;
    int32_t* out = out_tokens.ptr<int32_t>() + b * (S + 1);
    int32_t* rows = feature_rows.ptr<int32_t>() + b * (S + 1);
    for (int k = 0; k <= S; ++k) {
      out[k] = k < m ? tokens.ptr<int32_t>()[b * N + p[k]] : bonus.ptr<int32_t>()[b];
      rows[k] = k <= m ? int32_t(b * N + (k == 0 ? 0 : p[k - 1])) : rows[m];
    }
    last_rows.ptr<int32_t>()[b] = int32_t(b * (S + 1) + m);
  }
}

void CpuOps::kv_compact(const Tensor& pool, const Tensor& page_table, int page_size, const Tensor& committed,
                        const Tensor& path, const Tensor& accepted) {
  int64_t B = check_kv_compact(Device::CPU, pool, page_table, page_size, committed, path, accepted);
  int64_t planes = pool.dim(0), slots = pool.dim(1), P = page_table.dim(1), S = path.dim(1);
  size_t row = pool.nbytes() / size_t(planes * slots);
  for (int64_t b = 0; b < B; ++b) {
    int L = committed.ptr<int32_t>()[b], m = accepted.ptr<int32_t>()[b];
    auto slot = [&](int ctx) {
      E3_ARG(ctx / page_size < P, "kv_compact: context " + std::to_string(ctx) + " past the page table");
      int64_t s = int64_t(page_table.ptr<int32_t>()[b * P + ctx / page_size]) * page_size + ctx % page_size;
      E3_ARG(s >= 0 && s < slots, "kv_compact: slot " + std::to_string(s) + " outside the pool");
      return s;
    };
    for (int k = 1; k <= m && k <= S; ++k) {
      int node = path.ptr<int32_t>()[b * S + k - 1];
      if (node == k) continue;
      int64_t src = slot(L + node), dst = slot(L + k);
      for (int64_t pl = 0; pl < planes; ++pl)
        std::memcpy(pool.ptr<char>() + (pl * slots + dst) * row, pool.ptr<char>() + (pl * slots + src) * row, row);
    }
  }
}

void CpuOps::tree_advance(const Tensor& committed, const Tensor& accepted, const Tensor& bonus,
                          const Tensor& next_committed, const Tensor& next_roots) {
  int64_t B = check_tree_advance(Device::CPU, committed, accepted, bonus, next_committed, next_roots);
  for (int64_t b = 0; b < B; ++b) {
    next_committed.ptr<int32_t>()[b] = committed.ptr<int32_t>()[b] + accepted.ptr<int32_t>()[b] + 1;
    next_roots.ptr<int32_t>()[b] = bonus.ptr<int32_t>()[b];
  }
}

void CpuOps::step_layouts(const Tensor& committed, const Tensor& page_table, int page_size, const std::vector<StepLayout>& steps) {
  const int64_t P = page_table.dim(1);
  for (const StepLayout& st : steps) {
    const int64_t B = check_step_layout(Device::CPU, committed, page_table, page_size, st);
    for (int64_t b = 0; b < B; ++b) {
      int L = committed.ptr<int32_t>()[b];
      st.kv_len.ptr<int32_t>()[b] = L + st.first + st.q;
      for (int j = 0; j < st.q; ++j) {
        int ctx = L + st.first + j;
        E3_ARG(ctx >= 0 && ctx / page_size < P, "step_layout: context " + std::to_string(ctx) + " of sequence " +
                                                    std::to_string(b) + " past its " + std::to_string(P) + " pages");
        st.slots.ptr<int32_t>()[b * st.q + j] = page_table.ptr<int32_t>()[b * P + ctx / page_size] * page_size + ctx % page_size;
        if (st.positions.defined()) st.positions.ptr<int32_t>()[b * st.q + j] = L + st.pos_base + j * st.pos_step;
      }
    }
  }
}

}  // namespace e3
