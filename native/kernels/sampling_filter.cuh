// Device pieces of sampling, shared by the sampler and speculative acceptance: the transformers
// filter of one logits row (temperature, top-k, top-p) as thresholds over the row, and a draw by
// inverse CDF in id order. All functions are called by every thread of a block (≤ 1024 threads).
#pragma once
#include "kernels/device.cuh"
#include "runtime/sampling_params.h"

namespace e3k {

// Order-preserving map of floats onto unsigned integers.
__device__ __forceinline__ uint32_t float_key(float f) {
  uint32_t u = __float_as_uint(f);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}

// Largest key t with count(key(x_i) >= t) >= need (counts via block sums over the row).
template <class KeyOf>
__device__ uint32_t bisect_count(int V, float need, KeyOf key_of, float* scratch) {
  uint32_t lo = 0, hi = 0xffffffffu;  // invariant: count(>= lo) >= need
  while (lo < hi) {
    uint32_t mid = uint32_t(lo + (uint64_t(hi) - lo + 1) / 2);  // 64-bit: hi - lo + 1 can be 2^32
    float c = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) c += key_of(i) >= mid ? 1.0f : 0.0f;
    if (block_sum(c, scratch) >= need) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// The filtered, unnormalised weights of one row: kept(x) for a logit x of the row.
struct RowFilter {
  float mx, inv_t;
  uint32_t k_key, p_key;
  float total;  // sum of kept weights over the row
  __device__ float weight(float x) const { return float_key(x) >= k_key ? __expf((x - mx) * inv_t) : 0.0f; }
  __device__ float kept(float x) const {
    float w = weight(x);
    return __float_as_uint(w) >= p_key ? w : 0.0f;
  }
};

// The row's filter under sp (temperature > 0), its maximum mx given.
__device__ inline RowFilter make_filter(const float* row, int V, float mx, const e3::SamplingParams& sp, float* scratch) {
  RowFilter f{mx, 1.0f / sp.temperature, 0u, 0u, 0.0f};
  if (sp.top_k > 0 && sp.top_k < V) f.k_key = bisect_count(V, float(sp.top_k), [&](int i) { return float_key(row[i]); }, scratch);
  float local = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) local += f.weight(row[i]);
  float total = block_sum(local, scratch);
  if (sp.top_p < 1.0f) {  // weights are >= 0, so their float bits order them
    uint32_t lo = 0, hi = 0x7f800000u;  // invariant: mass(w >= lo) >= top_p · total
    while (lo < hi) {
      uint32_t mid = lo + (hi - lo + 1) / 2;
      float c = 0.0f;
      for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float w = f.weight(row[i]);
        c += __float_as_uint(w) >= mid ? w : 0.0f;
      }
      if (block_sum(c, scratch) >= sp.top_p * total) lo = mid;
      else hi = mid - 1;
    }
    f.p_key = lo;
  }
  local = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) local += f.kept(row[i]);
  f.total = block_sum(local, scratch);
  return f;
}

// The id where u · Σw falls in the CDF of w(i) over [0, V), in id order; `fallback` where rounding
// leaves it unmatched. Thread t owns the contiguous range [t·chunk, (t+1)·chunk). prefix holds
// blockDim.x / 32 floats.
template <class Weight>
__device__ int draw_inverse_cdf(int V, float u, Weight w, int fallback, float* scratch, float* prefix) {
  __shared__ int found;
  const int chunk = (V + blockDim.x - 1) / blockDim.x, b = threadIdx.x * chunk, e = min(V, b + chunk);
  float mine = 0.0f;
  for (int i = b; i < e; ++i) mine += w(i);
  const float target = u * block_sum(mine, scratch);
  // Exclusive scan of the per-thread sums: warp scans, then a scan of the warp totals.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float incl = mine;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    float v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  if (lane == 31) prefix[warp] = incl;
  if (threadIdx.x == 0) found = fallback;
  __syncthreads();
  if (warp == 0) {
    float v = lane < int(blockDim.x >> 5) ? prefix[lane] : 0.0f, x = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      float y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    if (lane < int(blockDim.x >> 5)) prefix[lane] = x - v;
  }
  __syncthreads();
  float acc = prefix[warp] + incl - mine;
  if (mine > 0.0f && acc <= target && target < acc + mine) {
    for (int i = b; i < e; ++i) {
      float x = w(i);
      if (x > 0.0f && target < (acc += x)) {
        found = i;
        break;
      }
    }
  }
  __syncthreads();
  int r = found;
  __syncthreads();  // `found` may be reused by the next call
  return r;
}

// Row maximum and its lowest index (argmax) over the block.
__device__ __forceinline__ float row_argmax(const float* row, int V, int* arg, float* scratch) {
  float best = -INFINITY;
  int best_i = V;
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    if (row[i] > best) {
      best = row[i];
      best_i = i;
    }
  float mx = block_max(best, scratch);
  __shared__ int a;
  if (threadIdx.x == 0) a = V;
  __syncthreads();
  if (best == mx) atomicMin(&a, best_i);
  __syncthreads();
  *arg = a;
  __syncthreads();
  return mx;
}

}  // namespace e3k
