#include "kernels/gemv.cuh"
#include "kernels/device.cuh"

namespace e3k {

constexpr int kWarpsPerBlock = 4;  // small blocks spread evenly: N = 2560 rows makes 640 of them
constexpr int kUnroll = 8;         // 16-byte weight loads in flight per lane

template <int M>
__device__ __forceinline__ void fma_chunk(const Bf16x8& wv, const bf16* x, int c, int k, float acc[M]) {
  float wf[8];
  unpack8(wv, wf);
#pragma unroll
  for (int i = 0; i < M; ++i) {
    float xf[8];
    unpack8(ldg8(reinterpret_cast<const Bf16x8*>(x + int64_t(i) * k) + c), xf);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[i] = fmaf(wf[e], xf[e], acc[i]);
  }
}

template <int M>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w, const bf16* __restrict__ bias,
                bf16* __restrict__ out, float* __restrict__ out_f32, int n, int k) {
  pdl_begin();
  int row = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= n) return;
  const Bf16x8* wr = reinterpret_cast<const Bf16x8*>(w + int64_t(row) * k);
  const int chunks = k / 8;
  float acc[M];
#pragma unroll
  for (int i = 0; i < M; ++i) acc[i] = 0.0f;
  int c = lane;
  for (; c + 32 * (kUnroll - 1) < chunks; c += 32 * kUnroll) {
    Bf16x8 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wv[u] = ldg8(wr + c + 32 * u);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) fma_chunk<M>(wv[u], x, c + 32 * u, k, acc);
  }
  for (; c < chunks; c += 32) fma_chunk<M>(ldg8(wr + c), x, c, k, acc);
  float b = bias ? __bfloat162float(bias[row]) : 0.0f;
#pragma unroll
  for (int i = 0; i < M; ++i) {
    float v = warp_sum(acc[i]) + b;
    if (lane == 0) {
      if (out_f32) out_f32[int64_t(i) * n + row] = v;
      else out[int64_t(i) * n + row] = __float2bfloat16(v);
    }
  }
}

template <int M = 1>
cudaError_t dispatch(int m, const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int n, int k,
                     cudaStream_t s) {
  if constexpr (M < kGemvMaxM) {
    if (m > M) return dispatch<M + 1>(m, x, w, bias, out, out_f32, n, k, s);
  }
  return launch(gemv_kernel<M>, dim3(ceil_div(n, kWarpsPerBlock)), dim3(kWarpsPerBlock * 32), 0, s, x, w, bias, out,
                out_f32, n, k);
}

cudaError_t gemv(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int m, int n, int k,
                 cudaStream_t s) {
  if (k % 8 || m < 1 || m > kGemvMaxM) return cudaErrorInvalidValue;
  return dispatch(m, x, w, bias, out, out_f32, n, k, s);
}

}  // namespace e3k
