#include "kernels/sampling.cuh"
#include "kernels/device.cuh"
#include "runtime/rng.h"

namespace e3k {

constexpr int kThreads = 1024;

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

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* logits, const e3::SamplingParams* params,
                                                           int32_t* out, int V) {
  pdl_begin();
  __shared__ float scratch[32];
  __shared__ float prefix[kThreads / 32];
  __shared__ int found;
  const float* row = logits + int64_t(blockIdx.x) * V;
  const e3::SamplingParams sp = params[blockIdx.x];

  // Argmax (lowest index on ties): greedy, and the fallback of the draw.
  float best = -INFINITY;
  int best_i = V;
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    if (row[i] > best) { best = row[i]; best_i = i; }
  float mx = block_max(best, scratch);
  __shared__ int arg;
  if (threadIdx.x == 0) arg = V;
  __syncthreads();
  if (best == mx) atomicMin(&arg, best_i);
  __syncthreads();
  if (sp.temperature <= 0.0f) {
    if (threadIdx.x == 0) out[blockIdx.x] = arg;
    return;
  }

  const float inv_t = 1.0f / sp.temperature;
  uint32_t k_key = 0;
  if (sp.top_k > 0 && sp.top_k < V)
    k_key = bisect_count(V, float(sp.top_k), [&](int i) { return float_key(row[i]); }, scratch);
  auto weight = [&](int i) { return float_key(row[i]) >= k_key ? __expf((row[i] - mx) * inv_t) : 0.0f; };
  float local = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) local += weight(i);
  float total = block_sum(local, scratch);
  uint32_t p_key = 0;  // weights are >= 0, so their float bits order them
  if (sp.top_p < 1.0f) {
    uint32_t lo = 0, hi = 0x7f800000u;  // invariant: mass(w >= lo) >= top_p · total
    while (lo < hi) {
      uint32_t mid = lo + (hi - lo + 1) / 2;
      float c = 0.0f;
      for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float w = weight(i);
        c += __float_as_uint(w) >= mid ? w : 0.0f;
      }
      if (block_sum(c, scratch) >= sp.top_p * total) lo = mid;
      else hi = mid - 1;
    }
    p_key = lo;
  }
  auto kept = [&](int i) {
    float w = weight(i);
    return __float_as_uint(w) >= p_key ? w : 0.0f;
  };

  // Inverse CDF in id order: thread t owns the contiguous range [t·chunk, (t+1)·chunk).
  const int chunk = (V + blockDim.x - 1) / blockDim.x, b = threadIdx.x * chunk, e = min(V, b + chunk);
  float mine = 0.0f;
  for (int i = b; i < e; ++i) mine += kept(i);
  const float target = e3::uniform01(sp.seed, sp.counter, 0) * block_sum(mine, scratch);
  // Exclusive scan of the per-thread sums: warp scans, then a scan of the warp totals.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float incl = mine;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    float v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  if (lane == 31) prefix[warp] = incl;
  if (threadIdx.x == 0) found = arg;  // rounding can leave the target unmatched: fall back to argmax
  __syncthreads();
  if (warp == 0) {
    float v = prefix[lane], x = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      float y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    prefix[lane] = x - v;
  }
  __syncthreads();
  float acc = prefix[warp] + incl - mine;
  if (mine > 0.0f && acc <= target && target < acc + mine) {
    for (int i = b; i < e; ++i) {
      float w = kept(i);
      if (w > 0.0f && target < (acc += w)) {
        found = i;
        break;
      }
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = found;
}

constexpr int kArgmaxThreads = 256, kArgmaxChunk = 4096;

__device__ __forceinline__ unsigned long long argmax_key(float v, int i) {
  return (static_cast<unsigned long long>(float_key(v)) << 32) | (0xffffffffu - unsigned(i));
}

__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(const float* logits, unsigned long long* keys, int vocab) {
  pdl_begin();
  const float* row = logits + int64_t(blockIdx.y) * vocab;
  unsigned long long best = 0;
  for (int i = blockIdx.x * kArgmaxChunk + threadIdx.x; i < min(vocab, int(blockIdx.x + 1) * kArgmaxChunk); i += blockDim.x)
    best = max(best, argmax_key(row[i], i));
#pragma unroll
  for (int o = 16; o; o >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, o));
  if ((threadIdx.x & 31) == 0) atomicMax(keys + blockIdx.y, best);
}

__global__ void argmax_finish_kernel(const unsigned long long* keys, int32_t* out, int rows) {
  pdl_begin();
  int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < rows) out[r] = int32_t(0xffffffffu - unsigned(keys[r] & 0xffffffffu));
}

cudaError_t argmax(const float* logits, int32_t* out, unsigned long long* keys, int rows, int vocab, cudaStream_t s) {
  if (rows == 0) return cudaSuccess;
  cudaError_t e = cudaMemsetAsync(keys, 0, size_t(rows) * sizeof(unsigned long long), s);
  if (e != cudaSuccess) return e;
  e = launch(argmax_kernel, dim3(ceil_div(vocab, kArgmaxChunk), unsigned(rows)), dim3(kArgmaxThreads), 0, s, logits, keys, vocab);
  if (e != cudaSuccess) return e;
  return launch(argmax_finish_kernel, dim3(ceil_div(rows, 128)), dim3(128), 0, s, keys, out, rows);
}

cudaError_t sample(const float* logits, const e3::SamplingParams* params, int32_t* out, int rows, int vocab,
                   cudaStream_t s) {
  if (rows == 0) return cudaSuccess;
  return launch(sample_kernel, dim3(rows), dim3(kThreads), 0, s, logits, params, out, vocab);
}

}  // namespace e3k
