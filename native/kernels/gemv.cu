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

namespace e3k {

// Skinny products on tensor cores: block = 16 output features × one of `splits` parts of K, its
// four warps split that part again and merge through shared memory. With several parts (few output
// features: not enough blocks to keep every SM streaming), each block leaves its partial sums in
// the workspace and the last of a column's blocks to arrive adds them up, in part order: results
// do not vary between runs. Each weight is read once. The mma k-order is permuted alike for x and W
// so that a lane reads 16 contiguous values of its rows per 64-wide chunk (two 16-byte loads)
// instead of scattered pairs.
namespace {

constexpr int kSkinnyChunk = 64;

__device__ __forceinline__ uint32_t word(const uint4 (&v)[2], int j) {
  const uint32_t* p = reinterpret_cast<const uint32_t*>(v);
  return p[j];
}

// Lane (gid, tig)'s 16 values of row `row` in chunk kc, zeros past the last row.
__device__ __forceinline__ void load16(uint4 (&dst)[2], const bf16* base, int row, int rows, int64_t ld, int kc, int tig) {
  if (row < rows) {
    const uint4* p = reinterpret_cast<const uint4*>(base + int64_t(row) * ld + kc + tig * 16);
    dst[0] = __ldg(p);
    dst[1] = __ldg(p + 1);
  } else {
    dst[0] = dst[1] = make_uint4(0, 0, 0, 0);
  }
}

// One row's SwiGLU activation for a 64-wide chunk, spread over the warp: each lane loads one bf16
// pair of gate and up (coalesced) and activates it; `activate` then hands row 0's lanes (gid 0)
// their 16 values by shuffles. Rounded as silu_mul rounds: the same bits as the two kernels apart.
__device__ __forceinline__ uint32_t swiglu_pair(uint32_t g, uint32_t u) {
  float2 a = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&g)), b = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&u));
  __nv_bfloat162 r = __floats2bfloat162_rn(silu_times(a.x, b.x), silu_times(a.y, b.y));
  return *reinterpret_cast<uint32_t*>(&r);
}

// SWIGLU (one row): x is gate_up [1, 2k] and the product's input its activation silu(gate) · up.
template <int MT, bool SWIGLU>
__global__ void __launch_bounds__(128) skinny_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w,
                                                     const bf16* __restrict__ bias, bf16* __restrict__ out,
                                                     float* __restrict__ out_f32, int m, int n, int k,
                                                     float* __restrict__ partials, unsigned* __restrict__ arrivals) {
  static_assert(!SWIGLU || MT == 1, "the fused activation takes one row");
  __shared__ float red[4][MT * 16][17];
  __shared__ bool last;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int splits = gridDim.y, part = blockIdx.y * 4 + warp, parts = splits * 4, chunks = k / kSkinnyChunk;
  const int n0 = blockIdx.x * 16, kbeg = chunks * part / parts * kSkinnyChunk,
            kend = chunks * (part + 1) / parts * kSkinnyChunk;
  uint4 wb[2][2][2], xb[2][MT][2][2];  // [buffer][n-tile or m-tile(, half)][16 values]
  uint32_t xg[2], xu[2];  // SWIGLU: this lane's gate and up pair of the chunk, as loaded
  auto load_w = [&](int buf, int kc) {
    load16(wb[buf][0], w, n0 + gid, n, k, kc, tig);
    load16(wb[buf][1], w, n0 + 8 + gid, n, k, kc, tig);
  };
  auto load_x = [&](int buf, int kc) {
    if constexpr (SWIGLU) {
      xg[buf] = __ldg(reinterpret_cast<const uint32_t*>(x + kc) + lane);
      xu[buf] = __ldg(reinterpret_cast<const uint32_t*>(x + k + kc) + lane);
    } else {
#pragma unroll
      for (int t = 0; t < MT; ++t)
#pragma unroll
        for (int h = 0; h < 2; ++h) load16(xb[buf][t][h], x, t * 16 + h * 8 + gid, m, k, kc, tig);
    }
  };
  // SWIGLU: the chunk's activation, lane (0, tig)'s 16 values from lanes 8·tig … 8·tig + 7; zero
  // in the rows past the first.
  auto activate = [&](int buf) {
    if constexpr (SWIGLU) {
      const uint32_t act = swiglu_pair(xg[buf], xu[buf]);
      uint32_t v[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = __shfl_sync(0xffffffffu, act, tig * 8 + j);
      xb[buf][0][0][0] = gid ? make_uint4(0, 0, 0, 0) : make_uint4(v[0], v[1], v[2], v[3]);
      xb[buf][0][0][1] = gid ? make_uint4(0, 0, 0, 0) : make_uint4(v[4], v[5], v[6], v[7]);
      xb[buf][0][1][0] = xb[buf][0][1][1] = make_uint4(0, 0, 0, 0);
    }
  };
  float acc[MT][2][4];
#pragma unroll
  for (int t = 0; t < MT; ++t)
#pragma unroll
    for (int j = 0; j < 2; ++j) acc[t][j][0] = acc[t][j][1] = acc[t][j][2] = acc[t][j][3] = 0.0f;
  if (kbeg < kend) load_w(0, kbeg);  // weights never depend on the previous kernel: loaded before waiting for it
  pdl_begin();
  if (kbeg < kend) load_x(0, kbeg);
  auto compute = [&](int buf) {
    activate(buf);
#pragma unroll
    for (int s = 0; s < 4; ++s) {
#pragma unroll
      for (int t = 0; t < MT; ++t) {
        uint32_t a[4] = {word(xb[buf][t][0], 2 * s), word(xb[buf][t][1], 2 * s), word(xb[buf][t][0], 2 * s + 1),
                         word(xb[buf][t][1], 2 * s + 1)};
#pragma unroll
        for (int j = 0; j < 2; ++j) mma16816(acc[t][j], a, word(wb[buf][j], 2 * s), word(wb[buf][j], 2 * s + 1));
      }
    }
  };
  // Two chunks per turn, so that the register buffers are named by constants (no local memory).
  for (int kc = kbeg; kc < kend; kc += 2 * kSkinnyChunk) {
    if (kc + kSkinnyChunk < kend) {
      load_w(1, kc + kSkinnyChunk);
      load_x(1, kc + kSkinnyChunk);
    }
    compute(0);
    if (kc + kSkinnyChunk >= kend) break;
    if (kc + 2 * kSkinnyChunk < kend) {
      load_w(0, kc + 2 * kSkinnyChunk);
      load_x(0, kc + 2 * kSkinnyChunk);
    }
    compute(1);
  }
#pragma unroll
  for (int t = 0; t < MT; ++t)
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) red[warp][t * 16 + gid + (e >> 1) * 8][j * 8 + tig * 2 + (e & 1)] = acc[t][j][e];
  __syncthreads();
  auto each = [&](auto f) {
    for (int i = threadIdx.x; i < MT * 16 * 16; i += blockDim.x) {
      int row = i / 16, col = i % 16, nn = n0 + col;
      if (row < m && nn < n) f(row, col, nn);
    }
  };
  auto store = [&](int row, int nn, float v) {
    if (bias) v += __bfloat162float(bias[nn]);
    if (out_f32) out_f32[int64_t(row) * n + nn] = v;
    else out[int64_t(row) * n + nn] = __float2bfloat16(v);
  };
  auto warps_sum = [&](int row, int col) { return red[0][row][col] + red[1][row][col] + red[2][row][col] + red[3][row][col]; };
  if (splits == 1) {
    each([&](int row, int col, int nn) { store(row, nn, warps_sum(row, col)); });
    return;
  }
  each([&](int row, int col, int nn) { partials[(int64_t(blockIdx.y) * m + row) * n + nn] = warps_sum(row, col); });
  __threadfence();  // this block's partials are visible before its arrival is counted
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(arrivals + blockIdx.x, 1u) == unsigned(splits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  each([&](int row, int col, int nn) {
    float v = 0.0f;
    for (int z = 0; z < splits; ++z) v += __ldcg(partials + (int64_t(z) * m + row) * n + nn);  // from L2, not a stale L1
    store(row, nn, v);
  });
  if (threadIdx.x == 0) arrivals[blockIdx.x] = 0;  // ready for the next product
}

}  // namespace

bool skinny_fits(int m, int k) { return m >= 1 && m <= kSkinnyMaxM && k % kSkinnyChunk == 0; }

// Measured on the H200 (Qwen3-4B, Qwen2.5-7B and Qwen3-32B products, 1-16 rows): K is worth
// splitting until the blocks number about 2.5 per SM (2560 outputs: 4 parts, 22.5 → 14.4 µs for
// down), and while they are few, until each block reads at most 8192 columns (7B down, K = 18944:
// 4 parts, 47 → 40 µs); past that, shorter parts only add partial sums (6144 outputs: 1 part, 10.2
// µs, 2 parts 13.0; 32B qkv, K = 5120: 1 part 25.2 µs, 2 parts 28.6). Powers of two: odd part
// lengths leave the two-chunk pipeline half empty.
int skinny_splits(int n, int k, int sm_count) {
  int blocks = int(ceil_div(n, 16)), splits = 1;
  auto worth = [&] { return 2 * blocks * splits < 5 * sm_count || (k / splits > 8192 && blocks * splits < 8 * sm_count); };
  while (splits < kSkinnyMaxSplits && k / kSkinnyChunk >= 16 * splits && worth()) splits *= 2;
  return splits;
}

cudaError_t skinny_gemm(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int m, int n, int k,
                        int splits, float* partials, unsigned* arrivals, bool swiglu, cudaStream_t s) {
  const unsigned blocks = ceil_div(n, 16);
  bool split_ok = splits == 1 || (partials && arrivals && blocks <= unsigned(kSkinnyMaxColumnBlocks));
  if (!skinny_fits(m, k) || splits < 1 || splits > kSkinnyMaxSplits || !split_ok || (swiglu && m != 1))
    return cudaErrorInvalidValue;
  dim3 grid(blocks, unsigned(splits));
  auto kernel = swiglu ? skinny_kernel<1, true> : m <= 16 ? skinny_kernel<1, false> : skinny_kernel<2, false>;
  return launch(kernel, grid, dim3(128), 0, s, x, w, bias, out, out_f32, m, n, k, partials, arrivals);
}

}  // namespace e3k
