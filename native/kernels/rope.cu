#include "kernels/rope.cuh"
#include "kernels/rope_head.cuh"

namespace e3k {

constexpr int kWarps = 4;
constexpr int kMaxHeadDim = 256;

// Block (token, group of kWarps heads), one warp per head: a decode token's heads all load at
// once instead of a few warps walking through them. The head goes through shared memory so each
// lane can read its rotation partner.
__global__ void __launch_bounds__(kWarps * 32) qkv_rope_store_kernel(QkvRopeArgs a) {
  __shared__ float buf[kWarps][kMaxHeadDim];
  __shared__ float cos_t[kMaxHeadDim / 2], sin_t[kMaxHeadDim / 2];
  int t = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, head = blockIdx.y * kWarps + warp;
  int d = a.head_dim, half = a.rotary_dim / 2, total = a.heads + 2 * a.kv_heads;
  pdl_begin();
  float pos = float(a.positions[t]);
  for (int j = threadIdx.x; j < half; j += blockDim.x) rope_angle(a, pos, j, cos_t[j], sin_t[j]);
  float* h = buf[warp];
  bool live = head < total;
  const bf16* src = a.qkv + (int64_t(t) * total + head) * d;
  float ss = 0.0f;
  for (int i = lane; live && i < d; i += 32) {
    float v = __bfloat162float(src[i]);
    h[i] = v;
    ss += v * v;
  }
  __syncthreads();  // the angles, and this warp's head
  if (!live) return;
  bool is_q = head < a.heads, is_v = head >= a.heads + a.kv_heads;
  bf16* dst = is_q ? a.q_out + (int64_t(t) * a.heads + head) * d
                   : (is_v ? a.v_cache : a.k_cache) +
                         (int64_t(a.slots[t]) * a.kv_heads + (head - a.heads - (is_v ? a.kv_heads : 0))) * d;
  const bf16* norm = is_q ? a.q_norm : is_v ? nullptr : a.k_norm;
  if (norm) {
    float inv = rsqrtf(warp_sum(ss) / float(d) + a.eps);
    for (int i = lane; i < d; i += 32) h[i] = head_norm(h[i], inv, norm, i);
    __syncwarp();
  }
  for (int i = lane; i < d; i += 32) {
    float out = h[i];
    if (!is_v && i < 2 * half) {
      int j = i < half ? i : i - half;
      float lo = h[j], hi = h[j + half];
      rotate_pair(lo, hi, cos_t[j], sin_t[j]);
      out = i < half ? lo : hi;
    }
    dst[i] = __float2bfloat16(out);
  }
}

cudaError_t qkv_rope_store(const QkvRopeArgs& a, cudaStream_t s) {
  if (a.head_dim > kMaxHeadDim) return cudaErrorInvalidValue;
  if (a.tokens == 0) return cudaSuccess;
  return launch(qkv_rope_store_kernel, dim3(a.tokens, ceil_div(a.heads + 2 * a.kv_heads, kWarps)), dim3(kWarps * 32), 0,
                s, a);
}

}  // namespace e3k
