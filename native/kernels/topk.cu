#include "kernels/topk.cuh"
#include "kernels/device.cuh"

namespace e3k {

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

// The same for k ≤ K in one pass over the row: each thread keeps its own best K (a sorted list in
// registers) and an online softmax sum, its loads batched so that the few rows of a draft step do
// not wait on one load at a time; then each warp merges its lanes' lists with shuffles, and warp 0
// the warps' lists: two barriers instead of two per pick. (topk_kernel reads the row k + 2 times.)
template <int K>
__global__ void __launch_bounds__(kThreads) topk_small_kernel(const float* logits, int vocab, int k, const int32_t* map,
                                                              float* probs, int32_t* ids) {
  pdl_begin();
  constexpr int kWarps = kThreads / 32, kBatch = 8;
  __shared__ float scratch[32];
  __shared__ float w_val[kWarps][K];
  __shared__ int w_idx[kWarps][K];
  const float* row = logits + int64_t(blockIdx.x) * vocab;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float val[K];
  int idx[K];
#pragma unroll
  for (int j = 0; j < K; ++j) {
    val[j] = -INFINITY;
    idx[j] = vocab;  // after every real element in the order of selection
  }
  float m = -INFINITY, s = 0.0f;
  for (int i0 = threadIdx.x; i0 < vocab; i0 += kBatch * kThreads) {
    float v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) v[u] = i0 + u * kThreads < vocab ? __ldg(row + i0 + u * kThreads) : -INFINITY;
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = i0 + u * kThreads;
      if (i >= vocab) break;
      if (v[u] > m) {
        s = s * __expf(m - v[u]) + 1.0f;
        m = v[u];
      } else if (v[u] > -INFINITY) {
        s += __expf(v[u] - m);
      }
      if (!before(v[u], i, val[K - 1], idx[K - 1])) continue;
      float cv = v[u];
      int ci = i;
#pragma unroll
      for (int j = 0; j < K; ++j)
        if (before(cv, ci, val[j], idx[j])) {
          float tv = val[j];
          int ti = idx[j];
          val[j] = cv;
          idx[j] = ci;
          cv = tv;
          ci = ti;
        }
    }
  }
  const float mx = block_max(m, scratch);
  const float sum = block_sum(m == -INFINITY ? 0.0f : s * __expf(m - mx), scratch);
  warp_merge(val, idx, vocab, k, w_val[warp], w_idx[warp]);
  __syncthreads();
  if (warp) return;
#pragma unroll
  for (int t = 0; t < K; ++t) {  // lane w: warp w's list
    bool has = lane < kWarps && t < k;
    val[t] = has ? w_val[lane][t] : -INFINITY;
    idx[t] = has ? w_idx[lane][t] : vocab;
  }
  __shared__ float r_val[K];
  __shared__ int r_idx[K];
  warp_merge(val, idx, vocab, k, r_val, r_idx);
  __syncwarp();
  if (lane < k) {
    probs[int64_t(blockIdx.x) * k + lane] = __expf(r_val[lane] - mx) / sum;
    ids[int64_t(blockIdx.x) * k + lane] = map ? map[r_idx[lane]] : r_idx[lane];
  }
}

cudaError_t topk_softmax(const float* logits, int rows, int vocab, int k, const int32_t* map, float* probs,
                         int32_t* ids, cudaStream_t s) {
  if (k < 1 || k > kTopkMax || k > vocab) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (k <= 8) return launch(topk_small_kernel<8>, dim3(rows), dim3(kThreads), 0, s, logits, vocab, k, map, probs, ids);
  if (k <= 16) return launch(topk_small_kernel<16>, dim3(rows), dim3(kThreads), 0, s, logits, vocab, k, map, probs, ids);
  return launch(topk_kernel, dim3(rows), dim3(kThreads), 0, s, logits, vocab, k, map, probs, ids);
}

}  // namespace e3k
