#include "kernels/device.cuh"
#include "kernels/skinny_gemm.cuh"

#include <algorithm>

namespace e3k {

namespace {

constexpr int kWarps = 8;        // split K within the block; their sums meet in shared memory
constexpr int kTileRows = 32;    // output rows (N) per block: two 16-row mma tiles
constexpr int kChunk = 32;       // K per step: two k16 mmas
constexpr int kGroup = 4;        // chunks whose loads are in flight together

// D += A · B for one m16n8k16 tile: A = 16 weight rows × 16 of K, B = 16 of K × 8 x rows.
__device__ __forceinline__ void mma16816(float d[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// One chunk's operands: four weight rows and MT x rows, 16 bytes each.
template <int MT>
struct Chunk {
  uint4 w[4], x[MT];
};

template <int MT>
__device__ __forceinline__ void load(Chunk<MT>& c, const bf16* const wp[4], const bf16* const xp[MT], int64_t o) {
#pragma unroll
  for (int q = 0; q < 4; ++q) c.w[q] = __ldg(reinterpret_cast<const uint4*>(wp[q] + o));
#pragma unroll
  for (int t = 0; t < MT; ++t) c.x[t] = __ldg(reinterpret_cast<const uint4*>(xp[t] + o));
}

template <int MT>
__device__ __forceinline__ void multiply(const Chunk<MT>& c, float acc[2][MT][4]) {
#pragma unroll
  for (int j = 0; j < 2; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int t = 0; t < MT; ++t)
        mma16816(acc[h][t], word(c.w[2 * h], 2 * j), word(c.w[2 * h + 1], 2 * j), word(c.w[2 * h], 2 * j + 1),
                 word(c.w[2 * h + 1], 2 * j + 1), word(c.x[t], 2 * j), word(c.x[t], 2 * j + 1));
}

// A dot product does not care in which order it visits K, so each lane loads 16 contiguous bytes
// (K offsets 8c..8c+7 of a 32-wide chunk, c = lane % 4) of a weight row and of an x row, and the
// two mmas of the chunk take words {0, 1} and {2, 3} as their k16 columns: the same permutation
// of K on both operands, and full-width loads instead of the 4-byte gathers of the mma layout.
// The product is computed transposed (Cᵀ = W · xᵀ), so the many weight rows are the mma's M and
// the few x rows its N, in steps of 8 (MT of them). Each warp takes one K range of the block's
// 32 rows; the block adds the warps' sums.
template <int MT>
__global__ void __launch_bounds__(kWarps * 32)
    skinny_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w, const bf16* __restrict__ bias,
                  bf16* __restrict__ out, float* __restrict__ out_f32, int m, int n, int k) {
  pdl_begin();
  extern __shared__ float sums[];  // [kWarps][2 · MT · 4][32]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int row0 = blockIdx.x * kTileRows, chunks = k / kChunk;
  const int per = (chunks + kWarps - 1) / kWarps, begin = warp * per, end = min(chunks, begin + per);
  // Weight rows row0 + g + 8q (q = 0..3: tile 0's upper and lower half, then tile 1's) and x rows
  // 8t + g, clamped into range: rows past N or M compute values that are never stored.
  const bf16* wp[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) wp[q] = w + int64_t(min(row0 + g + 8 * q, n - 1)) * k + 8 * c;
  const bf16* xp[MT];
#pragma unroll
  for (int t = 0; t < MT; ++t) xp[t] = x + int64_t(min(8 * t + g, m - 1)) * k + 8 * c;
  float acc[2][MT][4];
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int t = 0; t < MT; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[h][t][e] = 0.0f;
  int ch = begin;
  for (; ch + kGroup <= end; ch += kGroup) {
    Chunk<MT> cs[kGroup];
#pragma unroll
    for (int u = 0; u < kGroup; ++u) load(cs[u], wp, xp, int64_t(ch + u) * kChunk);
#pragma unroll
    for (int u = 0; u < kGroup; ++u) multiply(cs[u], acc);
  }
  for (; ch < end; ++ch) {
    Chunk<MT> cs;
    load(cs, wp, xp, int64_t(ch) * kChunk);
    multiply(cs, acc);
  }
  constexpr int kAcc = 2 * MT * 4;
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int t = 0; t < MT; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) sums[(warp * kAcc + (h * MT + t) * 4 + e) * 32 + lane] = acc[h][t][e];
  __syncthreads();
  // Accumulator e of tile (h, t) of lane (g, c): weight row row0 + 16h + g (+8 for e ≥ 2), x row
  // 8t + 2c (+1 for odd e). The warps' sums are added in warp order (deterministic).
  for (int i = threadIdx.x; i < kAcc * 32; i += blockDim.x) {
    const int a = i / 32, l = i % 32, h = a / (MT * 4), t = (a / 4) % MT, e = a % 4;
    const int nn = row0 + 16 * h + (l >> 2) + 8 * (e >> 1), mm = 8 * t + 2 * (l & 3) + (e & 1);
    if (nn >= n || mm >= m) continue;
    float v = bias ? __bfloat162float(bias[nn]) : 0.0f;
    for (int z = 0; z < kWarps; ++z) v += sums[(z * kAcc + a) * 32 + l];
    if (out_f32) out_f32[int64_t(mm) * n + nn] = v;
    else out[int64_t(mm) * n + nn] = __float2bfloat16(v);
  }
}

template <int MT>
cudaError_t launch_mt(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int m, int n, int k,
                      cudaStream_t s) {
  if constexpr (MT < kSkinnyMaxM / 8) {
    if (m > 8 * MT) return launch_mt<MT + 1>(x, w, bias, out, out_f32, m, n, k, s);
  }
  size_t smem = size_t(kWarps) * 2 * MT * 4 * 32 * sizeof(float);
  cudaError_t e = cudaFuncSetAttribute(skinny_kernel<MT>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (e != cudaSuccess) return e;
  return launch(skinny_kernel<MT>, dim3(ceil_div(n, kTileRows)), dim3(kWarps * 32), smem, s, x, w, bias, out, out_f32,
                m, n, k);
}

}  // namespace

bool skinny_fits(int m, int k) { return m >= 1 && m <= kSkinnyMaxM && k >= kChunk && k % kChunk == 0; }

cudaError_t skinny_gemm(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int m, int n, int k,
                        cudaStream_t s) {
  if (!skinny_fits(m, k) || n < 1) return cudaErrorInvalidValue;
  return launch_mt<1>(x, w, bias, out, out_f32, m, n, k, s);
}

}  // namespace e3k
