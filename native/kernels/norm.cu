#include "kernels/norm.cuh"
#include "kernels/device.cuh"

namespace e3k {

// One block per row. The row is read once into registers-sized chunks held in shared memory,
// so the residual add and the normalisation need a single pass over global memory.
template <bool ADD>
__global__ void rmsnorm_kernel(bf16* residual, const bf16* x, const bf16* w, bf16* out, int n, int groups, float eps) {
  pdl_begin();
  extern __shared__ float row[];
  __shared__ float scratch[32];
  int64_t base = int64_t(blockIdx.x) * n;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = __bfloat162float(x[base + i]);
    if (ADD) {
      v = rbf(v + __bfloat162float(residual[base + i]));
      residual[base + i] = __float2bfloat16(v);
    }
    row[i] = v;
    ss += v * v;
  }
  float inv = rsqrtf(block_sum(ss, scratch) / float(n) + eps);
  w += int64_t(blockIdx.x % groups) * n;
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[base + i] = __float2bfloat16(__bfloat162float(w[i]) * rbf(row[i] * inv));
}

static cudaError_t launch(bf16* residual, const bf16* x, const bf16* w, bf16* out, int rows, int n, int groups,
                          float eps, cudaStream_t s, bool add) {
  if (rows == 0) return cudaSuccess;
  int threads = n >= 1024 ? 512 : n >= 256 ? 256 : 64;
  size_t smem = size_t(n) * sizeof(float);
  if (smem > 48 * 1024) {
    auto k = add ? rmsnorm_kernel<true> : rmsnorm_kernel<false>;
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  if (add) return launch(rmsnorm_kernel<true>, dim3(rows), dim3(threads), smem, s, residual, x, w, out, n, groups, eps);
  return launch(rmsnorm_kernel<false>, dim3(rows), dim3(threads), smem, s, residual, x, w, out, n, groups, eps);
}

cudaError_t rmsnorm(const bf16* x, const bf16* w, bf16* out, int rows, int n, int groups, float eps, cudaStream_t s) {
  return launch(nullptr, x, w, out, rows, n, groups, eps, s, false);
}

cudaError_t add_rmsnorm(bf16* residual, const bf16* x, const bf16* w, bf16* out, int rows, int n, float eps,
                        cudaStream_t s) {
  return launch(residual, x, w, out, rows, n, 1, eps, s, true);
}

}  // namespace e3k
