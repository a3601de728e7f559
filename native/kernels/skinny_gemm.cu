#include "kernels/device.cuh"
#include "kernels/skinny_gemm.cuh"

#include <algorithm>

namespace e3k {

namespace {

constexpr int kWarps = 4;
constexpr int kWarpRows = 32;                  // two 16-row mma tiles of weight rows per warp
constexpr int kTileRows = kWarps * kWarpRows;  // output rows (N) per block
constexpr int kChunk = 32;                     // K per step: two k16 mmas
constexpr int kMinChunksPerSplit = 8;

// D += A · B for one m16n8k16 tile: A = 16 weight rows × 16 of K, B = 16 of K × 8 x rows.
__device__ __forceinline__ void mma16816(float d[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// A dot product does not care in which order it visits K, so each lane loads 16 contiguous bytes
// (K offsets 8c..8c+7 of a 32-wide chunk, c = lane % 4) of a weight row and of an x row, and the
// two mmas of the chunk take words {0, 1} and {2, 3} as their k16 columns: the same permutation
// of K on both operands, and full-width loads instead of the 4-byte gathers of the mma layout.
// The product is computed transposed (Cᵀ = W · xᵀ), so the many weight rows are the mma's M and
// the few x rows its N, in steps of 8 (MT of them).
template <int MT>
__global__ void __launch_bounds__(kWarps * 32)
    skinny_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w, const bf16* __restrict__ bias,
                  bf16* __restrict__ out, float* __restrict__ out_f32, float* __restrict__ partials,
                  int* __restrict__ counters, int m, int n, int k, int chunks_per_split) {
  pdl_begin();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int tile0 = blockIdx.x * kTileRows, row0 = tile0 + warp * kWarpRows;
  const int chunks = k / kChunk, begin = blockIdx.y * chunks_per_split, end = min(chunks, begin + chunks_per_split);
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
#pragma unroll 2
  for (int ch = begin; ch < end; ++ch) {
    const int64_t o = int64_t(ch) * kChunk;
    uint4 wv[4], xv[MT];
#pragma unroll
    for (int q = 0; q < 4; ++q) wv[q] = __ldg(reinterpret_cast<const uint4*>(wp[q] + o));
#pragma unroll
    for (int t = 0; t < MT; ++t) xv[t] = __ldg(reinterpret_cast<const uint4*>(xp[t] + o));
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int t = 0; t < MT; ++t)
          mma16816(acc[h][t], word(wv[2 * h], 2 * j), word(wv[2 * h + 1], 2 * j), word(wv[2 * h], 2 * j + 1),
                   word(wv[2 * h + 1], 2 * j + 1), word(xv[t], 2 * j), word(xv[t], 2 * j + 1));
  }
  // Accumulator e of tile (h, t): weight row row0 + 16h + g (+8 for e ≥ 2), x row 8t + 2c (+1 for odd e).
  auto store = [&](int mm, int nn, float v) {
    if (bias) v += __bfloat162float(bias[nn]);
    if (out_f32) out_f32[int64_t(mm) * n + nn] = v;
    else out[int64_t(mm) * n + nn] = __float2bfloat16(v);
  };
  const bool split = gridDim.y > 1;
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int t = 0; t < MT; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int nn = row0 + 16 * h + g + 8 * (e >> 1), mm = 8 * t + 2 * c + (e & 1);
        if (nn >= n || mm >= m) continue;
        if (split) partials[(int64_t(blockIdx.y) * m + mm) * n + nn] = acc[h][t][e];
        else store(mm, nn, acc[h][t][e]);
      }
  if (!split) return;
  // The tile's last split to finish sums every split's partials, in split order (deterministic).
  __shared__ int last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&counters[blockIdx.x], 1) == int(gridDim.y) - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  const int rows = min(kTileRows, n - tile0);
  for (int i = threadIdx.x; i < rows * m; i += blockDim.x) {
    int nn = tile0 + i % rows, mm = i / rows;
    float v = 0.0f;
    for (int z = 0; z < int(gridDim.y); ++z) v += __ldcg(partials + (int64_t(z) * m + mm) * n + nn);
    store(mm, nn, v);
  }
  if (threadIdx.x == 0) counters[blockIdx.x] = 0;
}

template <int MT>
cudaError_t launch_mt(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int m, int n, int k,
                      const SkinnyPlan& p, float* partials, int* counters, cudaStream_t s) {
  if constexpr (MT < kSkinnyMaxM / 8) {
    if (m > 8 * MT) return launch_mt<MT + 1>(x, w, bias, out, out_f32, m, n, k, p, partials, counters, s);
  }
  int chunks = k / kChunk, per = int(ceil_div(chunks, p.splits)), splits = int(ceil_div(chunks, per));
  return launch(skinny_kernel<MT>, dim3(unsigned(p.tiles), unsigned(splits)), dim3(kWarps * 32), 0, s, x, w, bias, out,
                out_f32, partials, counters, m, n, k, per);
}

}  // namespace

bool skinny_fits(int m, int k) { return m >= 1 && m <= kSkinnyMaxM && k >= kChunk && k % kChunk == 0; }

// About four blocks per SM streaming weights, but splits of at least kMinChunksPerSplit chunks.
SkinnyPlan skinny_plan(int m, int n, int k, int sm_count) {
  int tiles = int(ceil_div(n, kTileRows)), chunks = k / kChunk;
  int want = int(ceil_div(4 * sm_count, tiles));
  int splits = std::max(1, std::min({want, chunks / kMinChunksPerSplit, 32}));
  return {splits, splits > 1 ? size_t(splits) * m * n : 0, tiles};
}

cudaError_t skinny_gemm(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int m, int n, int k,
                        const SkinnyPlan& plan, float* partials, int* counters, cudaStream_t s) {
  if (!skinny_fits(m, k) || n < 1 || plan.splits < 1 || (plan.splits > 1 && (!partials || !counters)))
    return cudaErrorInvalidValue;
  return launch_mt<1>(x, w, bias, out, out_f32, m, n, k, plan, partials, counters, s);
}

}  // namespace e3k
