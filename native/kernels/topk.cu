#include <algorithm>

#include "kernels/topk.cuh"
#include "kernels/device.cuh"

namespace e3k {

namespace {

constexpr int kThreads = 512;

// Whether (v, i) comes before (w, j) in the order of selection: larger value, then lower id.
__device__ __forceinline__ bool before(float v, int i, float w, int j) { return v > w || (v == w && i < j); }

// The warp's first element in that order, in every lane.
__device__ __forceinline__ void warp_best(float& best, int& best_i) {
#pragma unroll
  for (int o = 16; o; o >>= 1) {
    float v = __shfl_xor_sync(0xffffffffu, best, o);
    int i = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (before(v, i, best, best_i)) {
      best = v;
      best_i = i;
    }
  }
}

// The block's first (value, id) in that order among every thread's candidate: written out as pick j
// of the row (probability under the row's softmax, id through the draft map), and left in
// s_val[0] / s_idx[0] for the whole block. Ends with a barrier.
__device__ __forceinline__ void block_pick(float best, int best_i, int vocab, int k, int j, float mx, float sum,
                                           const int32_t* map, float* probs, int32_t* ids, float* s_val, int* s_idx) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  warp_best(best, best_i);
  if (lane == 0) {
    s_val[warp] = best;
    s_idx[warp] = best_i;
  }
  __syncthreads();
  if (warp == 0) {
    best = lane < kThreads / 32 ? s_val[lane] : -INFINITY;
    best_i = lane < kThreads / 32 ? s_idx[lane] : vocab;
    warp_best(best, best_i);
    if (lane == 0) {
      s_val[0] = best;
      s_idx[0] = best_i;
      probs[int64_t(blockIdx.x) * k + j] = __expf(best - mx) / sum;
      ids[int64_t(blockIdx.x) * k + j] = map ? map[best_i] : best_i;
    }
  }
  __syncthreads();
}

// One block per row; k rounds of a block-wide arg-max over the elements after the previous pick.
__global__ void __launch_bounds__(kThreads) topk_kernel(const float* logits, int vocab, int k, const int32_t* map,
                                                        float* probs, int32_t* ids) {
  pdl_begin();
  __shared__ float scratch[32];
  __shared__ float s_val[kThreads / 32];
  __shared__ int s_idx[kThreads / 32];
  const float* row = logits + int64_t(blockIdx.x) * vocab;
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, row[i]);
  mx = block_max(mx, scratch);
  float sum = 0.0f;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) sum += __expf(row[i] - mx);
  sum = block_sum(sum, scratch);
  float prev_v = INFINITY;
  int prev_i = -1;
  for (int j = 0; j < k; ++j) {
    float best = -INFINITY;
    int best_i = vocab;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
      float v = row[i];
      if (before(prev_v, prev_i, v, i) && before(v, i, best, best_i)) {
        best = v;
        best_i = i;
      }
    }
    block_pick(best, best_i, vocab, k, j, mx, sum, map, probs, ids, s_val, s_idx);
    prev_v = s_val[0];
    prev_i = s_idx[0];
    __syncthreads();
  }
}

// Pops the head of a sorted list held in registers, the tail filled with the sentinel.
template <int K>
__device__ __forceinline__ void pop_head(float (&val)[K], int (&idx)[K], int vocab) {
#pragma unroll
  for (int t = 0; t + 1 < K; ++t) {
    val[t] = val[t + 1];
    idx[t] = idx[t + 1];
  }
  val[K - 1] = -INFINITY;
  idx[K - 1] = vocab;
}

// The warp's first k of its lanes' sorted lists, in order, into (out_val, out_idx)[0..k) of lane 0.
template <int K>
__device__ __forceinline__ void warp_merge(float (&val)[K], int (&idx)[K], int vocab, int k, float* out_val, int* out_idx) {
  for (int j = 0; j < k; ++j) {
    float best = val[0];
    int best_i = idx[0];
    warp_best(best, best_i);
    if (idx[0] == best_i) pop_head(val, idx, vocab);  // ids are unique: one lane (or only sentinels)
    if ((threadIdx.x & 31) == 0) {
      out_val[j] = best;
      out_idx[j] = best_i;
    }
  }
}

// Inserts (v, i) into a thread's sorted list if it comes before the list's last.
template <int K>
__device__ __forceinline__ void insert(float (&val)[K], int (&idx)[K], float v, int i) {
  if (!before(v, i, val[K - 1], idx[K - 1])) return;
#pragma unroll
  for (int j = 0; j < K; ++j)
    if (before(v, i, val[j], idx[j])) {
      const float tv = val[j];
      const int ti = idx[j];
      val[j] = v;
      idx[j] = i;
      v = tv;
      i = ti;
    }
}

// The block's first k of its threads' lists, in order, into (out_val, out_idx): each warp merges
// its lanes' lists with shuffles, then warp 0 the warps' lists. Ends with a barrier.
template <int K, int W>
__device__ __forceinline__ void block_merge(float (&val)[K], int (&idx)[K], int vocab, int k, float (&w_val)[W][K],
                                            int (&w_idx)[W][K], float* out_val, int* out_idx) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  warp_merge(val, idx, vocab, k, w_val[warp], w_idx[warp]);
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int t = 0; t < K; ++t) {  // lane w: warp w's list
      const bool has = lane < W && t < k;
      val[t] = has ? w_val[lane][t] : -INFINITY;
      idx[t] = has ? w_idx[lane][t] : vocab;
    }
    warp_merge(val, idx, vocab, k, out_val, out_idx);
  }
  __syncthreads();
}

// The same for k ≤ K in one pass over the row, split over gridDim.y parts (blocks) so that a draft
// step's few rows keep more than a few SMs busy: each thread keeps its own best K (a sorted list in
// registers) and an online softmax sum, its loads batched; the block merges its threads' lists
// (block_merge). With several parts each block leaves its list and (max, sum) in `partials`, and
// the row's last block to arrive merges them, its (max, sum) combined in a fixed order: results do
// not depend on the order of arrival. (topk_kernel reads the row k + 2 times.)
constexpr int kPartThreads = 256, kBatch = 8;
// A part's record in `partials`: its K values, K ids, max and sum.
constexpr int part_record(int K) { return 2 * K + 2; }

template <int K>
__global__ void __launch_bounds__(kPartThreads) topk_part_kernel(const float* logits, int vocab, int k, const int32_t* map,
                                                                 float* probs, int32_t* ids, float* partials,
                                                                 unsigned* arrivals) {
  pdl_begin();
  constexpr int W = kPartThreads / 32, P = part_record(K);
  __shared__ float scratch[32];
  __shared__ float w_val[W][K], r_val[K];
  __shared__ int w_idx[W][K], r_idx[K];
  __shared__ float row_max, row_sum;
  __shared__ bool last;
  const int row = blockIdx.x, part = blockIdx.y, parts = gridDim.y;
  const int begin = int(int64_t(vocab) * part / parts), end = int(int64_t(vocab) * (part + 1) / parts);
  const float* x = logits + int64_t(row) * vocab;
  float val[K];
  int idx[K];
  auto clear = [&] {
#pragma unroll
    for (int j = 0; j < K; ++j) {
      val[j] = -INFINITY;
      idx[j] = vocab;  // after every real element in the order of selection
    }
  };
  clear();
  float m = -INFINITY, s = 0.0f;
  for (int i0 = begin + threadIdx.x; i0 < end; i0 += kBatch * kPartThreads) {
    float v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) v[u] = i0 + u * kPartThreads < end ? __ldg(x + i0 + u * kPartThreads) : -INFINITY;
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = i0 + u * kPartThreads;
      if (i >= end) break;
      if (v[u] > m) {
        s = s * __expf(m - v[u]) + 1.0f;
        m = v[u];
      } else if (v[u] > -INFINITY) {
        s += __expf(v[u] - m);
      }
      insert(val, idx, v[u], i);
    }
  }
  const float bm = block_max(m, scratch);
  const float bs = block_sum(m == -INFINITY ? 0.0f : s * __expf(m - bm), scratch);
  block_merge(val, idx, vocab, k, w_val, w_idx, r_val, r_idx);
  float mx = bm, sum = bs;
  if (parts > 1) {
    float* mine = partials + (int64_t(row) * parts + part) * P;
    if (threadIdx.x < k) {
      mine[threadIdx.x] = r_val[threadIdx.x];
      mine[K + threadIdx.x] = __int_as_float(r_idx[threadIdx.x]);
    }
    if (threadIdx.x == 0) {
      mine[2 * K] = bm;
      mine[2 * K + 1] = bs;
    }
    __threadfence();  // this block's record is visible before its arrival is counted
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(arrivals + row, 1u) == unsigned(parts - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    // From L2, not a stale L1: every part's list, then the row's softmax from the parts' (max, sum).
    const float* rec = partials + int64_t(row) * parts * P;
    clear();
    for (int c = threadIdx.x; c < parts * k; c += blockDim.x)
      insert(val, idx, __ldcg(rec + (c / k) * P + c % k), __float_as_int(__ldcg(rec + (c / k) * P + K + c % k)));
    block_merge(val, idx, vocab, k, w_val, w_idx, r_val, r_idx);
    if (threadIdx.x < 32) {
      float pm = -INFINITY, ps = 0.0f;  // lane l: parts l, l + 32
      for (int q = threadIdx.x; q < parts; q += 32) {
        const float qm = __ldcg(rec + q * P + 2 * K), qs = __ldcg(rec + q * P + 2 * K + 1);
        const float nm = fmaxf(pm, qm);
        ps = (pm == -INFINITY ? 0.0f : ps * __expf(pm - nm)) + (qm == -INFINITY ? 0.0f : qs * __expf(qm - nm));
        pm = nm;
      }
      const float rm = warp_max(pm);
      const float rs = warp_sum(pm == -INFINITY ? 0.0f : ps * __expf(pm - rm));
      if (threadIdx.x == 0) {
        row_max = rm;
        row_sum = rs;
        arrivals[row] = 0;  // ready for the next call
      }
    }
    __syncthreads();
    mx = row_max;
    sum = row_sum;
  }
  if (threadIdx.x < k) {
    probs[int64_t(row) * k + threadIdx.x] = __expf(r_val[threadIdx.x] - mx) / sum;
    ids[int64_t(row) * k + threadIdx.x] = map ? map[r_idx[threadIdx.x]] : r_idx[threadIdx.x];
  }
}

// Parts per row: a batch of loads per thread each, while the rows' blocks stay within about eight
// per SM of an H200.
int topk_parts(int rows, int vocab, int k) {
  if (k > 16 || rows > kTopkMaxSplitRows) return 1;
  const int by_size = int(ceil_div(vocab, kBatch * kPartThreads)), by_blocks = std::max(1, 1024 / rows);
  return std::max(1, std::min({by_size, by_blocks, 64}));
}

}  // namespace

size_t topk_workspace_floats(int rows, int vocab, int k) {
  const int parts = topk_parts(rows, vocab, k);
  return parts > 1 ? size_t(rows) * parts * part_record(k <= 8 ? 8 : 16) : 0;  // the list size topk_softmax launches
}

cudaError_t topk_softmax(const float* logits, int rows, int vocab, int k, const int32_t* map, float* probs,
                         int32_t* ids, float* partials, unsigned* arrivals, cudaStream_t s) {
  if (k < 1 || k > kTopkMax || k > vocab) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const int parts = topk_parts(rows, vocab, k);
  if (parts > 1 && (!partials || !arrivals)) return cudaErrorInvalidValue;
  const dim3 grid{unsigned(rows), unsigned(parts)};
  if (k <= 8) return launch(topk_part_kernel<8>, grid, dim3(kPartThreads), 0, s, logits, vocab, k, map, probs, ids, partials, arrivals);
  if (k <= 16) return launch(topk_part_kernel<16>, grid, dim3(kPartThreads), 0, s, logits, vocab, k, map, probs, ids, partials, arrivals);
  return launch(topk_kernel, dim3(rows), dim3(kThreads), 0, s, logits, vocab, k, map, probs, ids);
}

}  // namespace e3k
