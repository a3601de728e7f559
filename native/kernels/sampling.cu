#include "kernels/sampling.cuh"
#include "kernels/sampling_filter.cuh"
#include "runtime/rng.h"

namespace e3k {

constexpr int kThreads = 1024;

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* logits, const e3::SamplingParams* params,
                                                           int32_t* out, int V) {
  pdl_begin();
  __shared__ float scratch[32];
  __shared__ float prefix[kThreads / 32];
  const float* row = logits + int64_t(blockIdx.x) * V;
  const e3::SamplingParams sp = params[blockIdx.x];
  int arg;  // greedy, and the fallback of the draw
  const float mx = row_argmax(row, V, &arg, scratch);
  if (sp.temperature <= 0.0f) {
    if (threadIdx.x == 0) out[blockIdx.x] = arg;
    return;
  }
  const RowFilter f = make_filter(row, V, mx, sp, scratch);
  const int id = draw_filtered(f, row, V, e3::uniform01(sp.seed, sp.counter, 0), [](int) { return false; }, arg, prefix);
  if (threadIdx.x == 0) out[blockIdx.x] = id;
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
