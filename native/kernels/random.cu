#include "kernels/random.cuh"
#include "kernels/device.cuh"
#include "runtime/rng.h"

namespace e3k {

// Writes weights, which products read before waiting for the kernel before them: the next kernel
// starts only once every block here has finished writing (no early trigger; the fence makes the
// block's stores visible before it exits).
__global__ void fill_normal_kernel(bf16* out, int64_t n, uint64_t seed, float mean, float std) {
  pdl_wait();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16(mean + std * e3::normal01(seed, uint64_t(i)));
  __threadfence();
}

cudaError_t fill_normal(bf16* out, int64_t n, uint64_t seed, float mean, float std, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  return launch(fill_normal_kernel, dim3(unsigned(std::min<int64_t>(ceil_div(n, 256), 65536))), dim3(256), 0, s, out, n, seed, mean, std);
}

}  // namespace e3k
