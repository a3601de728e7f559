#include "kernels/norm.cuh"
#include "kernels/device.cuh"

#include <algorithm>

namespace e3k {

// One block per row. The row is read once into registers-sized chunks held in shared memory,
// so the residual add and the normalisation need a single pass over global memory.
__device__ __forceinline__ bf16* capture_row(const RowCapture& cap) {
  return cap.dst + int64_t(cap.rows ? cap.rows[blockIdx.x] : int32_t(blockIdx.x)) * cap.stride;
}

// Row r reads x[in_rows ? in_rows[r] : r] and writes out + r · out_ld (see NormRows).
__device__ __forceinline__ int64_t in_row(const NormRows& io) { return io.in_rows ? io.in_rows[blockIdx.x] : int32_t(blockIdx.x); }

template <bool ADD>
__global__ void rmsnorm_kernel(bf16* residual, const bf16* x, const bf16* w, bf16* out, int n, int groups, float eps,
                               RowCapture cap, NormRows io) {
  pdl_begin();
  extern __shared__ float row[];
  __shared__ float scratch[32];
  const int64_t base = in_row(io) * n, out_base = int64_t(blockIdx.x) * io.out_ld;
  bf16* kept = ADD && cap.cols ? capture_row(cap) : nullptr;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = __bfloat162float(x[base + i]);
    if (ADD) {
      v = rbf(v + __bfloat162float(residual[base + i]));
      residual[base + i] = __float2bfloat16(v);
      for (int j = 0; kept && j < cap.cols; ++j) kept[cap.col[j] + i] = __float2bfloat16(v);
    }
    row[i] = v;
    ss += v * v;
  }
  float inv = rsqrtf(block_sum(ss, scratch) / float(n) + eps);
  w += int64_t(blockIdx.x % groups) * n;
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[out_base + i] = __float2bfloat16(__bfloat162float(w[i]) * rbf(row[i] * inv));
}

// The same in one pass with the row in registers: 16-byte accesses, one chunk of eight per thread
// (PER chunks when the row is longer than the block). For rows of n % 8 == 0 up to 8·PER·1024.
template <bool ADD, int PER>
__global__ void rmsnorm_vec_kernel(bf16* residual, const bf16* x, const bf16* w, bf16* out, int n, int groups, float eps,
                                   RowCapture cap, NormRows io) {
  pdl_begin();
  __shared__ float scratch[32];
  const int64_t base = in_row(io) * n, out_base = int64_t(blockIdx.x) * io.out_ld;
  bf16* kept = ADD && cap.cols ? capture_row(cap) : nullptr;
  const int chunks = n / 8;
  float v[PER][8];
  float ss = 0.0f;
#pragma unroll
  for (int p = 0; p < PER; ++p) {
    int c = threadIdx.x + p * blockDim.x;
    if (c >= chunks) continue;
    unpack8(ldg8(reinterpret_cast<const Bf16x8*>(x + base) + c), v[p]);
    if (ADD) {
      float r[8];
      unpack8(reinterpret_cast<const Bf16x8*>(residual + base)[c], r);
#pragma unroll
      for (int e = 0; e < 8; ++e) v[p][e] = rbf(v[p][e] + r[e]);
      const Bf16x8 sum = pack8(v[p]);
      reinterpret_cast<Bf16x8*>(residual + base)[c] = sum;
      for (int j = 0; kept && j < cap.cols; ++j) reinterpret_cast<Bf16x8*>(kept + cap.col[j])[c] = sum;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) ss += v[p][e] * v[p][e];
  }
  const float inv = rsqrtf(block_sum(ss, scratch) / float(n) + eps);
  const bf16* wr = w + int64_t(blockIdx.x % groups) * n;
#pragma unroll
  for (int p = 0; p < PER; ++p) {
    int c = threadIdx.x + p * blockDim.x;
    if (c >= chunks) continue;
    float wf[8], o[8];
    unpack8(ldg8(reinterpret_cast<const Bf16x8*>(wr) + c), wf);
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = wf[e] * rbf(v[p][e] * inv);
    reinterpret_cast<Bf16x8*>(out + out_base)[c] = pack8(o);
  }
}

template <bool ADD>
static cudaError_t launch_vec(bf16* residual, const bf16* x, const bf16* w, bf16* out, int rows, int n, int groups,
                              float eps, const RowCapture& cap, const NormRows& io, cudaStream_t s) {
  int chunks = n / 8, threads = std::min(1024, (chunks + 31) / 32 * 32);
  int per = (chunks + threads - 1) / threads;
  if (per == 1) return launch(rmsnorm_vec_kernel<ADD, 1>, dim3(rows), dim3(threads), 0, s, residual, x, w, out, n, groups, eps, cap, io);
  if (per == 2) return launch(rmsnorm_vec_kernel<ADD, 2>, dim3(rows), dim3(threads), 0, s, residual, x, w, out, n, groups, eps, cap, io);
  return launch(rmsnorm_vec_kernel<ADD, 4>, dim3(rows), dim3(threads), 0, s, residual, x, w, out, n, groups, eps, cap, io);
}

static cudaError_t launch(bf16* residual, const bf16* x, const bf16* w, bf16* out, int rows, int n, int groups,
                          float eps, const RowCapture& cap, NormRows io, cudaStream_t s, bool add) {
  if (rows == 0) return cudaSuccess;
  if (cap.cols < 0 || cap.cols > kMaxCaptureCols || (cap.cols && (!add || !cap.dst))) return cudaErrorInvalidValue;
  if (io.out_ld == 0) io.out_ld = n;
  if (io.out_ld < n || (add && (io.in_rows || io.out_ld != n))) return cudaErrorInvalidValue;
  // The vector path writes 16-byte chunks: capture columns, strides and the output must keep them aligned.
  bool aligned = cap.stride % 8 == 0 && io.out_ld % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  for (int j = 0; j < cap.cols; ++j) aligned = aligned && cap.col[j] % 8 == 0;
  if (n % 8 == 0 && n <= 8 * 4 * 1024 && aligned)
    return add ? launch_vec<true>(residual, x, w, out, rows, n, groups, eps, cap, io, s)
               : launch_vec<false>(residual, x, w, out, rows, n, groups, eps, cap, io, s);
  int threads = n >= 1024 ? 512 : n >= 256 ? 256 : 64;
  size_t smem = size_t(n) * sizeof(float);
  if (smem > 48 * 1024) {
    auto k = add ? rmsnorm_kernel<true> : rmsnorm_kernel<false>;
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  if (add) return launch(rmsnorm_kernel<true>, dim3(rows), dim3(threads), smem, s, residual, x, w, out, n, groups, eps, cap, io);
  return launch(rmsnorm_kernel<false>, dim3(rows), dim3(threads), smem, s, residual, x, w, out, n, groups, eps, cap, io);
}

cudaError_t rmsnorm(const bf16* x, const bf16* w, bf16* out, int rows, int n, int groups, float eps, const NormRows& io,
                    cudaStream_t s) {
  if (io.in_rows && groups != 1) return cudaErrorInvalidValue;
  return launch(nullptr, x, w, out, rows, n, groups, eps, RowCapture{}, io, s, false);
}

cudaError_t add_rmsnorm(bf16* residual, const bf16* x, const bf16* w, bf16* out, int rows, int n, float eps,
                        const RowCapture& cap, cudaStream_t s) {
  return launch(residual, x, w, out, rows, n, 1, eps, cap, NormRows{}, s, true);
}

}  // namespace e3k
