#include "kernels/sampling_filter.cuh"
#include "kernels/tree.cuh"
#include "runtime/rng.h"

namespace e3k {

namespace {

constexpr int kMaxCandidates = 1024;  // K + (S − 1)·K² with K ≤ 16 and S·K ≤ 64 stays below this

// Whether candidate u comes before candidate v: higher score, then lower index.
__device__ __forceinline__ bool ahead(const float* sc, int u, int v) { return sc[u] > sc[v] || (sc[u] == sc[v] && u < v); }

// In index order, the position of each of the n candidates among those whose rank (by `ahead`)
// is below k, or −1; one thread per candidate, the block's threads cover n.
__device__ __forceinline__ int keep_position(const float* sc, int n, int k, int i, int* flag) {
  int rank = 0;
  if (i < n)
    for (int u = 0; u < n; ++u) rank += ahead(sc, u, i);
  if (i < n) flag[i] = rank < k;
  __syncthreads();
  int pos = -1;
  if (i < n && flag[i]) {
    pos = 0;
    for (int u = 0; u < i; ++u) pos += flag[u];
  }
  return pos;
}

__global__ void tree_expand_kernel(TreeArgs t, int level, const float* probs, const int32_t* ids, int width,
                                   int32_t* tokens, int64_t* mask, int32_t* parent_rows, RowCopy states) {
  pdl_begin();
  __shared__ float sc[256];
  __shared__ int flag[256];
  __shared__ int from[16], keep[16], src_row[16];
  const int b = blockIdx.x, K = t.topk, C = t.candidates, i = threadIdx.x;
  float* score = t.score + int64_t(b) * C;
  int32_t* token = t.token + int64_t(b) * C;
  int32_t* parent = t.parent + int64_t(b) * C;
  int64_t* bits = t.mask + int64_t(b) * C;
  int32_t* live = t.live + int64_t(b) * K;
  if (i < K) from[i] = live[i];
  __syncthreads();
  const int base = level == 1 ? 0 : K + (level - 2) * K * K;
  if (level == 1) {
    if (i < K) {
      score[i] = probs[int64_t(b) * width + i];
      token[i] = ids[int64_t(b) * width + i];
      parent[i] = -1;
      keep[i] = i;
    }
  } else {
    const int n = K * K;
    if (i < n) {
      int a = i / K, c = i % K;
      int64_t row = (int64_t(b) * K + a) * width + c;
      sc[i] = score[from[a]] * probs[row];
      score[base + i] = sc[i];
      token[base + i] = ids[row];
      parent[base + i] = from[a];
    }
    __syncthreads();
    if (i < K) keep[i] = base + i;  // only NaN scores leave a position unfilled
    __syncthreads();
    int pos = keep_position(sc, n, K, i, flag);
    if (pos >= 0 && pos < K) keep[pos] = base + i;
  }
  __syncthreads();
  if (i < K) {
    int node = keep[i], a = level == 1 ? 0 : (node - base) / K;
    int64_t bit = int64_t(1) << ((level - 1) * K + i);
    int64_t m = level == 1 ? bit : bits[from[a]] | bit;
    bits[node] = m;
    live[i] = node;
    if (tokens) tokens[int64_t(b) * K + i] = token[node];
    if (mask) mask[int64_t(b) * K + i] = m;
    if (parent_rows && level > 1) parent_rows[int64_t(b) * K + i] = b * K + a;
    src_row[i] = b * K + a;
  }
  if (!states.dst) return;
  // The next draft step's recurrent states: each live node's parent's, 16 bytes a thread at a time.
  __syncthreads();
  const int64_t chunks = states.row_bytes / 16;
  for (int64_t c = i; c < K * chunks; c += blockDim.x) {
    const int j = int(c / chunks);
    const int64_t off = c % chunks;
    reinterpret_cast<uint4*>(states.dst)[(int64_t(b) * K + j) * chunks + off] =
        reinterpret_cast<const uint4*>(states.src)[int64_t(src_row[j]) * chunks + off];
  }
}

__global__ void tree_build_kernel(TreeArgs t, int n, const int32_t* roots, const int32_t* committed, int32_t* tokens,
                                  int32_t* positions, int64_t* mask, int32_t* parent) {
  pdl_begin();
  __shared__ float sc[kMaxCandidates];
  __shared__ int flag[kMaxCandidates];
  __shared__ int node_of[kMaxCandidates];
  const int b = blockIdx.x, K = t.topk, C = t.candidates, i = threadIdx.x;
  const int32_t* cparent = t.parent + int64_t(b) * C;
  if (i < C) sc[i] = t.score[int64_t(b) * C + i];
  __syncthreads();
  int pos = keep_position(sc, C, n - 1, i, flag);
  if (i < C) node_of[i] = pos >= 0 ? pos + 1 : -1;
  __syncthreads();
  const int L = committed[b];
  int32_t* tok = tokens + int64_t(b) * n;
  int32_t* ps = positions + int64_t(b) * n;
  int64_t* m = mask + int64_t(b) * n;
  int32_t* par = parent + int64_t(b) * n;
  if (i == 0) {
    tok[0] = roots[b];
    ps[0] = L;
    m[0] = 1;
    par[0] = -1;
  }
  if (pos >= 0 && pos + 1 < n) {
    int idx = pos + 1, p = cparent[i];
    int64_t bits = 1 | (int64_t(1) << idx);
    for (int a = p; a >= 0; a = cparent[a])
      if (node_of[a] > 0) bits |= int64_t(1) << node_of[a];
    tok[idx] = t.token[int64_t(b) * C + i];
    ps[idx] = L + (i < K ? 1 : 2 + (i - K) / (K * K));
    m[idx] = bits;
    par[idx] = p < 0 ? 0 : max(node_of[p], 0);
  }
}

__global__ void tree_accept_greedy_kernel(int batch, int n, int steps, const int32_t* tokens, const int32_t* parent,
                                          const int32_t* argmax, int32_t* path, int32_t* accepted, int32_t* bonus) {
  pdl_begin();
  int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const int32_t* tok = tokens + int64_t(b) * n;
  const int32_t* par = parent + int64_t(b) * n;
  const int32_t* am = argmax + int64_t(b) * n;
  int cur = 0, m = 0;
  for (;;) {
    int next = -1;
    for (int c = cur + 1; c < n && next < 0; ++c)
      if (par[c] == cur && tok[c] == am[cur]) next = c;
    if (next < 0 || m == steps) break;
    path[int64_t(b) * steps + m++] = next;
    cur = next;
  }
  accepted[b] = m;
  bonus[b] = am[cur];
}

// One block per sequence, walking its tree: at each node the filtered target row, the children's
// probabilities against one uniform (thread 0), and on a miss the residual draw over the row.
constexpr int kSampleThreads = 1024;

__global__ void __launch_bounds__(kSampleThreads) tree_accept_sampled_kernel(
    int n, int steps, const int32_t* tokens, const int32_t* parent, const float* logits, int V,
    const e3::SamplingParams* params, int32_t* path, int32_t* accepted, int32_t* bonus) {
  pdl_begin();
  __shared__ float scratch[32];
  __shared__ float prefix[kSampleThreads / 32];
  __shared__ int32_t rejected[64];
  __shared__ int s_next, s_rejected;
  const int b = blockIdx.x;
  const e3::SamplingParams sp = params[b];
  if (sp.temperature <= 0.0f) return;
  const int32_t* tok = tokens + int64_t(b) * n;
  const int32_t* par = parent + int64_t(b) * n;
  for (int cur = 0, m = 0;;) {
    const float* row = logits + (int64_t(b) * n + cur) * V;
    int arg;
    const float mx = row_argmax(row, V, &arg, scratch);
    const RowFilter f = make_filter(row, V, mx, sp, scratch);
    if (threadIdx.x == 0) {
      // The same lanes of the request's stream as the CPU reference: one per node, one for the bonus.
      const float u = e3::uniform01(sp.seed, sp.counter, uint32_t(2 * (m + 1)));
      float acc = 0.0f;
      int next = -1, nrej = 0;
      for (int c = cur + 1; c < n && next < 0; ++c) {
        if (par[c] != cur) continue;
        acc += f.kept(row[tok[c]]) / f.total;
        if (u < acc) next = c;
        else rejected[nrej++] = tok[c];
      }
      s_next = next;
      s_rejected = nrej;
    }
    __syncthreads();
    const int next = s_next, nrej = s_rejected;
    __syncthreads();
    if (next >= 0 && m < steps) {
      if (threadIdx.x == 0) path[int64_t(b) * steps + m] = next;
      ++m;
      cur = next;
      continue;
    }
    auto rejected_id = [&](int i) {
      for (int r = 0; r < nrej; ++r)
        if (rejected[r] == i) return true;
      return false;
    };
    const float u = e3::uniform01(sp.seed, sp.counter, uint32_t(2 * (m + 1) + 1));
    const int id = draw_filtered(f, row, V, u, rejected_id, arg, prefix);
    if (threadIdx.x == 0) {
      accepted[b] = m;
      bonus[b] = id;
    }
    return;
  }
}

__global__ void tree_commit_kernel(int batch, int n, int steps, const int32_t* tokens, const int32_t* path,
                                   const int32_t* accepted, const int32_t* bonus, int32_t* out_tokens,
                                   int32_t* feature_rows, int32_t* last_rows) {
  pdl_begin();
  int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  int m = min(max(accepted[b], 0), steps);
  const int32_t* p = path + int64_t(b) * steps;
  int32_t* out = out_tokens + int64_t(b) * (steps + 1);
  int32_t* rows = feature_rows + int64_t(b) * (steps + 1);
  for (int k = 0; k <= steps; ++k) {
    out[k] = k < m ? tokens[int64_t(b) * n + p[k]] : bonus[b];
    rows[k] = k <= m ? b * n + (k == 0 ? 0 : p[k - 1]) : rows[m];
  }
  last_rows[b] = b * (steps + 1) + m;
}

// Block (sequence, plane): the accepted entries move one after another, each row by the whole block.
__global__ void kv_compact_kernel(char* pool, int64_t slots, int64_t row_bytes, const int32_t* page_table, int pages,
                                  int page_size, int steps, const int32_t* committed, const int32_t* path,
                                  const int32_t* accepted) {
  pdl_begin();
  const int b = blockIdx.x;
  char* plane = pool + int64_t(blockIdx.y) * slots * row_bytes;
  const int L = committed[b], m = min(accepted[b], steps);
  const int32_t* pt = page_table + int64_t(b) * pages;
  for (int k = 1; k <= m; ++k) {
    int node = path[int64_t(b) * steps + k - 1];
    if (node == k) continue;
    int src = L + node, dst = L + k;
    const uint4* s = reinterpret_cast<const uint4*>(plane + (int64_t(pt[src / page_size]) * page_size + src % page_size) * row_bytes);
    uint4* d = reinterpret_cast<uint4*>(plane + (int64_t(pt[dst / page_size]) * page_size + dst % page_size) * row_bytes);
    for (int64_t j = threadIdx.x; j < row_bytes / 16; j += blockDim.x) d[j] = s[j];
    __syncthreads();
  }
}

}  // namespace

cudaError_t tree_expand(TreeArgs t, int batch, int level, const float* probs, const int32_t* ids, int width,
                        int32_t* tokens, int64_t* mask, int32_t* parent_rows, const RowCopy& states, cudaStream_t s) {
  if (states.dst && (level < 2 || states.row_bytes % 16)) return cudaErrorInvalidValue;
  return launch(tree_expand_kernel, dim3(batch), dim3(256), 0, s, t, level, probs, ids, width, tokens, mask, parent_rows,
                states);
}

cudaError_t tree_build(TreeArgs t, int batch, int n, const int32_t* roots, const int32_t* committed, int32_t* tokens,
                       int32_t* positions, int64_t* mask, int32_t* parent, cudaStream_t s) {
  if (t.candidates > kMaxCandidates) return cudaErrorInvalidValue;
  return launch(tree_build_kernel, dim3(batch), dim3((t.candidates + 31) / 32 * 32), 0, s, t, n, roots, committed,
                tokens, positions, mask, parent);
}

cudaError_t tree_accept_greedy(int batch, int n, int steps, const int32_t* tokens, const int32_t* parent,
                               const int32_t* argmax, int32_t* path, int32_t* accepted, int32_t* bonus, cudaStream_t s) {
  return launch(tree_accept_greedy_kernel, dim3((batch + 63) / 64), dim3(64), 0, s, batch, n, steps, tokens, parent,
                argmax, path, accepted, bonus);
}

cudaError_t tree_accept_sampled(int batch, int n, int steps, const int32_t* tokens, const int32_t* parent,
                                const float* logits, int vocab, const e3::SamplingParams* params, int32_t* path,
                                int32_t* accepted, int32_t* bonus, cudaStream_t s) {
  return launch(tree_accept_sampled_kernel, dim3(batch), dim3(kSampleThreads), 0, s, n, steps, tokens, parent, logits,
                vocab, params, path, accepted, bonus);
}

cudaError_t tree_commit(int batch, int n, int steps, const int32_t* tokens, const int32_t* path, const int32_t* accepted,
                        const int32_t* bonus, int32_t* out_tokens, int32_t* feature_rows, int32_t* last_rows,
                        cudaStream_t s) {
  return launch(tree_commit_kernel, dim3((batch + 63) / 64), dim3(64), 0, s, batch, n, steps, tokens, path, accepted,
                bonus, out_tokens, feature_rows, last_rows);
}

__global__ void tree_advance_kernel(int batch, const int32_t* committed, const int32_t* accepted, const int32_t* bonus,
                                    int32_t* next_committed, int32_t* next_roots) {
  pdl_begin();
  int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  next_committed[b] = committed[b] + accepted[b] + 1;
  next_roots[b] = bonus[b];
}

cudaError_t tree_advance(int batch, const int32_t* committed, const int32_t* accepted, const int32_t* bonus,
                         int32_t* next_committed, int32_t* next_roots, cudaStream_t s) {
  return launch(tree_advance_kernel, dim3((batch + 127) / 128), dim3(128), 0, s, batch, committed, accepted, bonus,
                next_committed, next_roots);
}

// Thread per (sequence, new token); token 0 also writes the sequence's context length.
// Block row y: step y's layout; each thread one (sequence, new token) of it.
__global__ void step_layouts_kernel(int batch, const int32_t* committed, const int32_t* page_table, int pages,
                                    int page_size, StepLayouts steps) {
  pdl_begin();
  const StepLayoutArgs& st = steps.step[blockIdx.y];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= batch * st.q) return;
  const int b = i / st.q, j = i % st.q, L = committed[b], ctx = L + st.first + j;
  if (j == 0) st.kv_len[b] = L + st.first + st.q;
  // The host checked the pages against its bound of L; a context past them (a bound broken) stays
  // within the sequence's own last page rather than writing outside the table.
  const int page = min(ctx / page_size, pages - 1);
  st.slots[i] = page_table[int64_t(b) * pages + page] * page_size + ctx % page_size;
  if (st.positions) st.positions[i] = L + st.pos_base + j * st.pos_step;
}

cudaError_t step_layouts(int batch, const int32_t* committed, const int32_t* page_table, int pages, int page_size,
                         const StepLayouts& steps, cudaStream_t s) {
  if (steps.count < 1 || steps.count > kMaxStepLayouts) return cudaErrorInvalidValue;
  int q = 1;
  for (int k = 0; k < steps.count; ++k) q = max(q, steps.step[k].q);
  return launch(step_layouts_kernel, dim3((batch * q + 127) / 128, steps.count), dim3(128), 0, s, batch, committed,
                page_table, pages, page_size, steps);
}

cudaError_t kv_compact(void* pool, int planes, int64_t slots, int64_t row_bytes, const int32_t* page_table, int pages,
                       int page_size, int batch, int steps, const int32_t* committed, const int32_t* path,
                       const int32_t* accepted, cudaStream_t s) {
  if (row_bytes % 16) return cudaErrorInvalidValue;
  return launch(kv_compact_kernel, dim3(batch, planes), dim3(128), 0, s, static_cast<char*>(pool), slots, row_bytes,
                page_table, pages, page_size, steps, committed, path, accepted);
}

}  // namespace e3k
