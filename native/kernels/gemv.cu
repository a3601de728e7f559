#include "kernels/gemv.cuh"
#include "kernels/device.cuh"

namespace e3k {

constexpr int kWarpsPerBlock = 8;
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane

template <int M>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w, const bf16* __restrict__ bias,
                bf16* __restrict__ out, float* __restrict__ out_f32, int n, int k) {
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
    for (int u = 0; u < kUnroll; ++u) {
      float wf[8];
      unpack8(wv[u], wf);
#pragma unroll
      for (int i = 0; i < M; ++i) {
        float xf[8];
        unpack8(ldg8(reinterpret_cast<const Bf16x8*>(x + int64_t(i) * k) + c + 32 * u), xf);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[i] = fmaf(wf[e], xf[e], acc[i]);
      }
    }
  }
  for (; c < chunks; c += 32) {
    float wf[8];
    unpack8(ldg8(wr + c), wf);
#pragma unroll
    for (int i = 0; i < M; ++i) {
      float xf[8];
      unpack8(ldg8(reinterpret_cast<const Bf16x8*>(x + int64_t(i) * k) + c), xf);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[i] = fmaf(wf[e], xf[e], acc[i]);
    }
  }
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

template <int M>
static void launch(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int n, int k,
                   cudaStream_t s) {
  gemv_kernel<M><<<ceil_div(n, kWarpsPerBlock), kWarpsPerBlock * 32, 0, s>>>(x, w, bias, out, out_f32, n, k);
}

cudaError_t gemv(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int m, int n, int k,
                 cudaStream_t s) {
  if (k % 8 || m < 1 || m > kGemvMaxM) return cudaErrorInvalidValue;
  switch (m) {
    case 1: launch<1>(x, w, bias, out, out_f32, n, k, s); break;
    case 2: launch<2>(x, w, bias, out, out_f32, n, k, s); break;
    case 3: launch<3>(x, w, bias, out, out_f32, n, k, s); break;
    case 4: launch<4>(x, w, bias, out, out_f32, n, k, s); break;
    case 5: launch<5>(x, w, bias, out, out_f32, n, k, s); break;
    case 6: launch<6>(x, w, bias, out, out_f32, n, k, s); break;
    case 7: launch<7>(x, w, bias, out, out_f32, n, k, s); break;
    default: launch<8>(x, w, bias, out, out_f32, n, k, s); break;
  }
  return cudaGetLastError();
}

}  // namespace e3k
