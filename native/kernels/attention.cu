#include <algorithm>

#include "kernels/attention.cuh"
#include "kernels/device.cuh"
#include "kernels/rope_head.cuh"

namespace e3k {

namespace {

constexpr int BM = 64;      // query rows (token × grouped head) per block: 4 warps × 16
constexpr int BN = 64;      // KV positions per iteration
constexpr int kWarps = 4;

struct RowInfo {
  int q0, q_len, kv_len, prefix, mask_base;
};

__device__ __forceinline__ RowInfo seq_info(const AttentionArgs& a, int s) {
  RowInfo r;
  r.q0 = a.q_start[s];
  r.q_len = a.q_start[s + 1] - r.q0;
  r.kv_len = a.kv_len[s];
  r.prefix = r.kv_len - r.q_len;
  r.mask_base = a.tree_base ? a.tree_base[s] : r.prefix;
  return r;
}

// Whether new token i (of its sequence) sees context position p.
__device__ __forceinline__ bool visible(const AttentionArgs& a, const RowInfo& r, int i, int p) {
  if (p >= r.kv_len) return false;
  if (a.tree_mask) return p < r.mask_base || ((uint64_t(a.tree_mask[r.q0 + i]) >> (p - r.mask_base)) & 1u);
  return p - r.prefix <= i;
}

__device__ __forceinline__ int64_t slot_of(const AttentionArgs& a, int s, int p) {
  int page = a.page_table[int64_t(s) * a.max_pages + p / a.page_size];
  return int64_t(page) * a.page_size + p % a.page_size;
}

// KV range [begin, end) of split z for a sequence of kv_len positions and n splits.
__device__ __forceinline__ void split_range(int kv_len, int splits, int z, int& begin, int& end) {
  int chunk = ((kv_len + splits - 1) / splits + BN - 1) / BN * BN;
  begin = z * chunk;
  end = min(kv_len, begin + chunk);
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most one committed group (the newest) is still in flight.
__device__ __forceinline__ void cp_async_wait_one() { asm volatile("cp.async.wait_group 1;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)));
}

// A warp's 16 rows of D bf16 into shared memory, 32 / (D / 8) rows a pass of 16-byte chunks: lane
// l < 16 holds row l's source offset (negative: none), computed once for the row and shuffled to the
// lanes copying it. copy(i, col, offset) issues row i's chunk at col.
template <int D, class Copy>
__device__ __forceinline__ void warp_rows(int64_t my_offset, Copy copy) {
  constexpr int CH = D / 8, RPP = 32 / CH;
  const int lane = threadIdx.x & 31, j = lane / CH, col = (lane % CH) * 8;
#pragma unroll
  for (int i = 0; i < 16; i += RPP) copy(i + j, col, __shfl_sync(0xffffffffu, my_offset, i + j));
}

// The warp's 16 positions kv0 + 16·warp … of a BN-position K/V tile into a stage (BN K rows, then BN
// V rows), zeros past `end`; positions that skip(p) holds for are left alone.
template <int D, class Skip>
__device__ __forceinline__ void load_kv_rows(const AttentionArgs& a, int s, int kvh, int kv0, int end, bf16* stage,
                                             Skip skip) {
  constexpr int LD = D + 8;
  const int warp = threadIdx.x >> 5, p = kv0 + warp * 16 + (threadIdx.x & 15);
  const int64_t off = p < end ? (slot_of(a, s, p) * a.kv_heads + kvh) * D : -1;
  warp_rows<D>(off, [&](int i, int col, int64_t src) {
    const int row = warp * 16 + i;
    if (skip(kv0 + row)) return;
    const bool ok = src >= 0;
    const int64_t at = (ok ? src : 0) + col;
    cp_async16(stage + row * LD + col, a.k_cache + at, ok);
    cp_async16(stage + (BN + row) * LD + col, a.v_cache + at, ok);
  });
}

// Split partials: per query row o[d], then the running max and sum, padded to whole float4s.
__host__ __device__ constexpr int partial_stride(int d) { return d + 4; }

__device__ __forceinline__ float* partial(const AttentionArgs& a, int z, int64_t out_row) {
  return a.workspace + (int64_t(z) * a.tokens * a.heads + out_row) * partial_stride(a.head_dim);
}

__device__ __forceinline__ void store_bf16x4(bf16* dst, float4 v) {
  __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
  *reinterpret_cast<uint2*>(dst) = make_uint2(*reinterpret_cast<uint32_t*>(&lo), *reinterpret_cast<uint32_t*>(&hi));
}

__device__ __forceinline__ void fma4(float4& acc, float w, float4 v) {
  acc.x += w * v.x;
  acc.y += w * v.y;
  acc.z += w * v.z;
  acc.w += w * v.w;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// One warp's online-softmax update (base 2) for a tile of NJ 8-position MMA column groups: scales
// the scores, masks those `seen(h, c)` rejects (h: the thread's row half, c: column in the tile),
// rescales the running (m, l, o), and packs the probabilities as the A operand of P·V.
template <int NJ, int D, class Seen>
__device__ __forceinline__ void softmax_tile(float (&sc)[NJ][4], float (&m)[2], float (&l)[2], float (&o)[D / 8][4],
                                             float scale_log2, Seen seen, uint32_t (&pa)[NJ / 2][4]) {
  const int tig = threadIdx.x & 3;
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < NJ; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      int h = e >> 1;
      sc[j][e] = seen(h, j * 8 + tig * 2 + (e & 1)) ? sc[j][e] * scale_log2 : -INFINITY;
      mx[h] = fmaxf(mx[h], sc[j][e]);
    }
  float corr[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
    mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
    float m_new = fmaxf(m[h], mx[h]);
    corr[h] = m_new == -INFINITY ? 1.0f : exp2f(m[h] - m_new);
    m[h] = m_new;
    l[h] *= corr[h];
  }
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    o[j][0] *= corr[0];
    o[j][1] *= corr[0];
    o[j][2] *= corr[1];
    o[j][3] *= corr[1];
  }
#pragma unroll
  for (int j = 0; j < NJ; ++j) {
    float p[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float base = m[e >> 1] == -INFINITY ? 0.0f : m[e >> 1];
      p[e] = exp2f(sc[j][e] - base);
      l[e >> 1] += p[e];
    }
    pa[j / 2][(j & 1) * 2 + 0] = pack_bf16(p[0], p[1]);
    pa[j / 2][(j & 1) * 2 + 1] = pack_bf16(p[2], p[3]);
  }
}

// Tensor-core flash attention. Block (tile, kv head, split): 64 query rows of one sequence's
// (token, head-in-group) pairs against one KV head over one range of context positions. K/V tiles
// are double-buffered: the next one loads while this one is computed, so memory never idles on a
// block's compute (decode is bound by reading the cache).
// Without splits it writes the normalised output; with splits it writes unnormalised partials
// (o, max, sum) that attention_combine merges.
template <int D>
__global__ void __launch_bounds__(kWarps * 32) attention_mma_kernel(AttentionArgs a, int tiles_per_seq, int splits) {
  pdl_begin();
  constexpr int LD = D + 8;  // padded smem rows: ldmatrix rows land in distinct banks
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);
  bf16* sKV = sQ + BM * LD;  // [2 stages][K, V][BN][LD]

  const int s = blockIdx.x / tiles_per_seq, tile = blockIdx.x % tiles_per_seq, kvh = blockIdx.y, z = blockIdx.z;
  const int g = a.heads / a.kv_heads;
  const RowInfo r = seq_info(a, s);
  const int rows = r.q_len * g, row0 = tile * BM;
  if (row0 >= rows) return;
  int begin, end;
  split_range(r.kv_len, splits, z, begin, end);
  // Causal/tree visibility never reaches past the last token of this tile.
  const int last_token = min(r.q_len - 1, (row0 + BM - 1) / g);
  end = min(end, r.prefix + last_token + 1);
  // Positions below this are seen by every row (padding rows too: their Q is zero, their output unused).
  const int open_end = min(end, min(r.mask_base, r.kv_len));

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;

  // Q tile → smem, each warp its own 16 rows (rows past the sequence are zero).
  {
    const int gr = row0 + warp * 16 + (lane & 15);
    const int64_t off = gr < rows ? (int64_t(r.q0 + gr / g) * a.heads + kvh * g + gr % g) * D : -1;
    warp_rows<D>(off, [&](int i, int col, int64_t src) {
      cp_async16(sQ + (warp * 16 + i) * LD + col, a.q + (src >= 0 ? src : 0) + col, src >= 0);
    });
  }
  cp_async_commit();

  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int my_row[2] = {row0 + warp * 16 + gid, row0 + warp * 16 + gid + 8};
  const int my_tok[2] = {my_row[0] / g, my_row[1] / g};
  const float scale_log2 = a.scale * 1.4426950408889634f;

  auto load_kv = [&](int kv0, int stage) {
    load_kv_rows<D>(a, s, kvh, kv0, end, sKV + stage * 2 * BN * LD, [](int) { return false; });
  };
  load_kv(begin, 0);
  cp_async_commit();
  uint32_t qf[D / 16][4];  // this warp's Q fragments, read from shared memory once (first tile)
  for (int kv0 = begin, stage = 0; kv0 < end; kv0 += BN, stage ^= 1) {
    __syncthreads();  // the previous iteration's reads of the other stage are done
    if (kv0 + BN < end) load_kv(kv0 + BN, stage ^ 1);
    cp_async_commit();  // possibly empty: the wait below always leaves exactly the newest group
    cp_async_wait_one();
    __syncthreads();
    const bf16* sK = sKV + stage * 2 * BN * LD;
    const bf16* sV = sK + BN * LD;
    if (kv0 == begin)
#pragma unroll
      for (int k = 0; k < D / 16; ++k)
        ldmatrix_x4(qf[k], sQ + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + k * 16 + (lane >> 4) * 8);

    // S = Q Kᵀ for this warp's 16 rows × 64 positions.
    float sc[BN / 8][4];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
#pragma unroll
    for (int k = 0; k < D; k += 16) {
#pragma unroll
      for (int j = 0; j < BN / 8; j += 2) {
        uint32_t kb[4];  // n-tiles j, j+1 × k halves
        ldmatrix_x4(kb, sK + ((j + (lane >> 4)) * 8 + (lane & 7)) * LD + k + ((lane >> 3) & 1) * 8);
        mma16816(sc[j], qf[k / 16], kb[0], kb[1]);
        mma16816(sc[j + 1], qf[k / 16], kb[2], kb[3]);
      }
    }

    // Mask, then online softmax. Each thread holds rows gid and gid+8. Tiles before the first
    // masked position (all but the last few of a long context) skip the per-element mask.
    uint32_t pa[BN / 16][4];
    if (kv0 + BN <= open_end)
      softmax_tile<BN / 8, D>(sc, m, l, o, scale_log2, [](int, int) { return true; }, pa);
    else
      softmax_tile<BN / 8, D>(sc, m, l, o, scale_log2,
                              [&](int h, int c) { return my_row[h] < rows && visible(a, r, my_tok[h], kv0 + c); }, pa);

    // O += P V
#pragma unroll
    for (int k = 0; k < BN / 16; ++k) {
#pragma unroll
      for (int j = 0; j < D / 8; j += 2) {
        uint32_t vb[4];  // k halves × n-tiles j, j+1 (transposed load)
        ldmatrix_x4_trans(vb, sV + (k * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (j + (lane >> 4)) * 8);
        mma16816(o[j], pa[k], vb[0], vb[1]);
        mma16816(o[j + 1], pa[k], vb[2], vb[3]);
      }
    }
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
  }
  for (int h = 0; h < 2; ++h) {
    if (my_row[h] >= rows) continue;
    int64_t out_row = int64_t(r.q0 + my_tok[h]) * a.heads + kvh * g + my_row[h] % g;
    if (splits == 1) {
      float inv = l[h] > 0 ? 1.0f / l[h] : 0.0f;
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
        *reinterpret_cast<__nv_bfloat162*>(a.out + out_row * D + j * 8 + tig * 2) =
            __floats2bfloat162_rn(o[j][h * 2] * inv, o[j][h * 2 + 1] * inv);
    } else {
      float* po = partial(a, z, out_row);
#pragma unroll
      for (int j = 0; j < D / 8; ++j)  // pairs: ncu saw the scalar stores throttle the tail (lg stalls)
        *reinterpret_cast<float2*>(po + j * 8 + tig * 2) = make_float2(o[j][h * 2], o[j][h * 2 + 1]);
      if (tig == 0) {
        po[D] = m[h];
        po[D + 1] = l[h];
      }
    }
  }
}

// Decode-shaped attention: a sequence's new rows (tokens × heads of a group) fit one 16-row MMA
// tile, so instead of four warps each holding 16 rows (three of them idle at decode) the four warps
// take 16 positions each of every 64-position tile, three tiles in flight, and their softmax
// states merge at the end. Block (sequence, kv head, split); attention_combine_kernel merges the
// splits (measured on the H200: the last split's block merging them itself cost a 7B decode step
// 4.0% at batch 1 and 7.3% at batch 8, 32B 3.1%, and saved 4B 1.1% at batch 1).
// The first tiles' cached rows below the new tokens were written by earlier steps, never by the
// kernel just before this one, so they are loaded before waiting for it.
// ROPE: the new tokens' q/k/v come straight from the qkv product (`rope`, full-width rotation):
// each block rotates its group's queries itself, and the block whose range holds a new token's
// position rotates its K, caches K and V, and writes them into the first tiles' shared memory
// itself where they fall there: qkv_rope_store's work without its launch, and the same bits.
constexpr int kDecodeRows = 16;
constexpr int kDecodeStages = 3;

template <int D, bool ROPE>
__global__ void __launch_bounds__(kWarps * 32) attention_decode_kernel(AttentionArgs a, QkvRopeArgs rope, int splits) {
  constexpr int LD = D + 8, CH = D / 8, QR = kDecodeRows, STAGE = 2 * BN * LD, E = D / 32;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);
  bf16* sKV = sQ + QR * LD;  // [stage][K, V][BN][LD]
  const int s = blockIdx.x, kvh = blockIdx.y, z = blockIdx.z, g = a.heads / a.kv_heads;
  const RowInfo r = seq_info(a, s);
  const int rows = r.q_len * g;
  int begin, end;
  split_range(r.kv_len, splits, z, begin, end);
  const int open_end = min(end, min(r.mask_base, r.kv_len));  // seen by every row below this
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, tig = lane & 3;

  // skip_new: the new tokens' rows are left alone (the ROPE prologue writes them).
  auto load_kv = [&](int kv0, int stage, bool skip_new) {
    load_kv_rows<D>(a, s, kvh, kv0, end, sKV + stage * STAGE, [&](int p) { return skip_new && p < end && p >= r.prefix; });
  };
  // One group per tile, the first kDecodeStages − 1 before the loop; every iteration commits one,
  // empty past the end.
  int issued = 0;
  for (; issued < kDecodeStages - 1; ++issued) {
    const int kv0 = begin + issued * BN;
    if (kv0 >= end || (!ROPE && min(kv0 + BN, end) > r.prefix)) break;
    load_kv(kv0, issued, ROPE);
    cp_async_commit();
  }
  pdl_begin();

  if constexpr (ROPE) {
    const int total = a.heads + 2 * a.kv_heads;
    const int64_t q0 = r.q0;
    // Token t's head at src, rotated: lane l holds elements l + 32·e.
    auto rotated = [&](const bf16* src, const bf16* norm, int64_t t, float (&h)[E]) {
      const float pos = float(rope.positions[t]);
#pragma unroll
      for (int e = 0; e < E; ++e) h[e] = __bfloat162float(src[lane + 32 * e]);
      float cs[E / 2], sn[E / 2];
#pragma unroll
      for (int e = 0; e < E / 2; ++e) rope_angle(rope, pos, lane + 32 * e, cs[e], sn[e]);
      norm_rope_lanes<E>(h, norm, rope.eps, cs, sn);
    };
    // This group's rotated queries (zero rows past the new ones).
    for (int row = warp; row < QR; row += kWarps) {
      float h[E] = {};
      const int64_t t = q0 + row / g;
      if (row < rows) rotated(rope.qkv + (t * total + kvh * g + row % g) * D, rope.q_norm, t, h);
#pragma unroll
      for (int e = 0; e < E; ++e) sQ[row * LD + lane + 32 * e] = __float2bfloat16(h[e]);
    }
    // The new tokens in this block's range: K rotated and V as it is, into the cache, and into the
    // first tiles' shared memory where they fall there (tiles loaded later read the cache).
    for (int p = max(begin, r.prefix) + warp; p < end; p += kWarps) {
      const int64_t t = q0 + (p - r.prefix);
      const bf16* k = rope.qkv + (t * total + a.heads + kvh) * D;
      const bf16* v = k + int64_t(a.kv_heads) * D;
      const int64_t dst = (int64_t(rope.slots[t]) * a.kv_heads + kvh) * D;
      const int tile = (p - begin) / BN;
      bf16* tk = tile < issued ? sKV + tile * STAGE + (p - begin - tile * BN) * LD : nullptr;
      float h[E];
      rotated(k, rope.k_norm, t, h);
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const int x = lane + 32 * e;
        const bf16 kx = __float2bfloat16(h[e]), vx = v[x];
        rope.k_cache[dst + x] = kx;
        rope.v_cache[dst + x] = vx;
        if (tk) {
          tk[x] = kx;
          tk[BN * LD + x] = vx;
        }
      }
    }
  } else {
    for (int c = tid; c < QR * CH; c += blockDim.x) {
      int row = c / CH, col = (c % CH) * 8;
      bool ok = row < rows;
      int tok = ok ? row / g : 0, head = kvh * g + (ok ? row % g : 0);
      *reinterpret_cast<uint4*>(sQ + row * LD + col) =
          ok ? *reinterpret_cast<const uint4*>(a.q + (int64_t(r.q0 + tok) * a.heads + head) * D + col) : make_uint4(0, 0, 0, 0);
    }
  }
  __syncthreads();  // the queries, and the new tokens' K/V before the tiles holding them load
  for (; issued < kDecodeStages - 1; ++issued) {
    if (begin + issued * BN < end) load_kv(begin + issued * BN, issued, false);
    cp_async_commit();
  }

  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int my_row[2] = {gid, gid + 8}, my_tok[2] = {gid / g, (gid + 8) / g};
  const float scale_log2 = a.scale * 1.4426950408889634f;

  for (int kv0 = begin, i = 0; kv0 < end; kv0 += BN, ++i) {
    cp_async_wait_one();
    __syncthreads();  // tile i is in; every warp is done with tile i − 1, whose stage loads next
    int next = kv0 + (kDecodeStages - 1) * BN;
    if (next < end) load_kv(next, (i + kDecodeStages - 1) % kDecodeStages, false);
    cp_async_commit();
    const bf16* sK = sKV + (i % kDecodeStages) * STAGE + warp * 16 * LD;  // this warp's 16 positions
    const bf16* sV = sK + BN * LD;
    const int p0 = kv0 + warp * 16;

    float sc[2][4] = {};
#pragma unroll
    for (int k = 0; k < D; k += 16) {
      uint32_t qa[4], kb[4];
      ldmatrix_x4(qa, sQ + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + k + (lane >> 4) * 8);
      ldmatrix_x4(kb, sK + ((lane >> 4) * 8 + (lane & 7)) * LD + k + ((lane >> 3) & 1) * 8);
      mma16816(sc[0], qa, kb[0], kb[1]);
      mma16816(sc[1], qa, kb[2], kb[3]);
    }
    uint32_t pa[1][4];
    if (p0 + 16 <= open_end)
      softmax_tile<2, D>(sc, m, l, o, scale_log2, [](int, int) { return true; }, pa);
    else
      softmax_tile<2, D>(sc, m, l, o, scale_log2,
                         [&](int h, int c) { return p0 + c < end && my_row[h] < rows && visible(a, r, my_tok[h], p0 + c); }, pa);
#pragma unroll
    for (int j = 0; j < D / 8; j += 2) {
      uint32_t vb[4];
      ldmatrix_x4_trans(vb, sV + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (j + (lane >> 4)) * 8);
      mma16816(o[j], pa[0], vb[0], vb[1]);
      mma16816(o[j + 1], pa[0], vb[2], vb[3]);
    }
  }

  // Each warp's (m, l, o) over its positions into shared memory; per row the warps' weights once,
  // then four output elements a thread.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
  }
  cp_async_wait_all();
  __syncthreads();
  constexpr int W = D + 4;
  float* st = reinterpret_cast<float*>(sKV);  // [warp][QR][W]: o, then m and l
  float* wt = st + kWarps * QR * W;           // [QR][kWarps]: the warps' weights of a row
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float* row = st + (warp * QR + my_row[h]) * W;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) *reinterpret_cast<float2*>(row + j * 8 + tig * 2) = make_float2(o[j][h * 2], o[j][h * 2 + 1]);
    if (tig == 0) {
      row[D] = m[h];
      row[D + 1] = l[h];
    }
  }
  __syncthreads();
  auto out_row = [&](int row) { return int64_t(r.q0 + row / g) * a.heads + kvh * g + row % g; };
  if (tid < rows) {
    float mx = -INFINITY, sum = 0.0f, w[kWarps];
#pragma unroll
    for (int k = 0; k < kWarps; ++k) mx = fmaxf(mx, st[(k * QR + tid) * W + D]);
#pragma unroll
    for (int k = 0; k < kWarps; ++k) {
      const float* src = st + (k * QR + tid) * W;
      w[k] = src[D] == -INFINITY ? 0.0f : exp2f(src[D] - mx);
      sum += w[k] * src[D + 1];
    }
    const float norm = splits > 1 ? 1.0f : sum > 0 ? 1.0f / sum : 0.0f;
#pragma unroll
    for (int k = 0; k < kWarps; ++k) wt[tid * kWarps + k] = w[k] * norm;
    if (splits > 1) {
      float* po = partial(a, z, out_row(tid));
      po[D] = mx;
      po[D + 1] = sum;
    }
  }
  __syncthreads();
  for (int e = tid; e < rows * (D / 4); e += blockDim.x) {
    const int row = e / (D / 4), col = e % (D / 4) * 4;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int k = 0; k < kWarps; ++k) fma4(acc, wt[row * kWarps + k], *reinterpret_cast<const float4*>(st + (k * QR + row) * W + col));
    if (splits == 1) store_bf16x4(a.out + out_row(row) * D + col, acc);
    else *reinterpret_cast<float4*>(partial(a, z, out_row(row)) + col) = acc;
  }
}

// Merges split partials: one block per (token, head), one thread per element; the split weights
// are computed once into shared memory.
__global__ void attention_combine_kernel(AttentionArgs a, int splits, int d) {
  pdl_begin();
  __shared__ float w[64];  // splits are capped at 64
  __shared__ float inv;
  const int64_t row = blockIdx.x, stride = int64_t(a.tokens) * a.heads * partial_stride(d);
  const float* p = a.workspace + row * partial_stride(d);
  if (threadIdx.x < 32) {
    float mx = -INFINITY;
    for (int z = threadIdx.x; z < splits; z += 32) mx = fmaxf(mx, p[z * stride + d]);
    mx = warp_max(mx);
    float denom = 0.0f;
    for (int z = threadIdx.x; z < splits; z += 32) {
      float mz = p[z * stride + d];
      w[z] = mz == -INFINITY ? 0.0f : exp2f(mz - mx);
      denom += w[z] * p[z * stride + d + 1];
    }
    denom = warp_sum(denom);
    if (threadIdx.x == 0) inv = denom > 0 ? 1.0f / denom : 0.0f;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float acc = 0.0f;
#pragma unroll 8
    for (int z = 0; z < splits; ++z) acc += w[z] * p[z * stride + i];  // unrolled: the splits' loads in flight together
    a.out[row * d + i] = __float2bfloat16(acc * inv);
  }
}

// Any head size, one warp per (token, head), positions in sequence: the path for odd head sizes
// (tiny test models). Written for clarity, not speed.
__global__ void attention_simple_kernel(AttentionArgs a) {
  pdl_begin();
  int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x & 31;
  if (row >= int64_t(a.tokens) * a.heads) return;
  int t = int(row / a.heads), head = int(row % a.heads), kvh = head / (a.heads / a.kv_heads), d = a.head_dim;
  int s = 0;
  while (a.q_start[s + 1] <= t) ++s;
  RowInfo r = seq_info(a, s);
  int i = t - r.q0;
  constexpr int kMaxPerLane = 8;  // head_dim <= 256
  float q[kMaxPerLane], o[kMaxPerLane];
  for (int e = 0; e < kMaxPerLane; ++e) {
    int x = lane + 32 * e;
    q[e] = x < d ? __bfloat162float(a.q[row * d + x]) : 0.0f;
    o[e] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int p = 0; p < r.kv_len; ++p) {
    if (!visible(a, r, i, p)) continue;
    int64_t base = (slot_of(a, s, p) * a.kv_heads + kvh) * d;
    float dot = 0.0f;
    for (int e = 0; e < kMaxPerLane; ++e) {
      int x = lane + 32 * e;
      if (x < d) dot += q[e] * __bfloat162float(a.k_cache[base + x]);
    }
    float sc = warp_sum(dot) * a.scale;
    float m_new = fmaxf(m, sc), corr = __expf(m - m_new), w = __expf(sc - m_new);
    l = l * corr + w;
    for (int e = 0; e < kMaxPerLane; ++e) {
      int x = lane + 32 * e;
      o[e] = o[e] * corr + (x < d ? w * __bfloat162float(a.v_cache[base + x]) : 0.0f);
    }
    m = m_new;
  }
  float inv = l > 0 ? 1.0f / l : 0.0f;
  for (int e = 0; e < kMaxPerLane; ++e) {
    int x = lane + 32 * e;
    if (x < d) a.out[row * d + x] = __float2bfloat16(o[e] * inv);
  }
}

bool use_mma(int d) { return d == 64 || d == 128; }

bool use_decode(const AttentionArgs& a) { return int64_t(a.max_q_len) * (a.heads / a.kv_heads) <= kDecodeRows; }

int tiles_per_seq(const AttentionArgs& a) { return int(ceil_div(int64_t(a.max_q_len) * (a.heads / a.kv_heads), BM)); }

// As many blocks as stay resident at once (one full wave: measured on the H200, a few blocks over
// it cost a second wave, +20% at 32 tree tokens), in whole tiles: as many splits as the longest
// context has ranges of the rounded-up tile count, so that none is left empty (split_range rounds
// the same way).
int num_splits(const AttentionArgs& a, int resident_per_sm) {
  resident_per_sm = std::max(1, resident_per_sm);
  int blocks = a.num_seqs * (use_decode(a) ? 1 : tiles_per_seq(a)) * a.kv_heads;
  int want = resident_per_sm * a.sm_count / blocks;
  int kv = std::max(1, a.max_kv_len);
  // Each split writes and the merge reads partial sums of every query row: past the point where
  // they weigh as much as the K/V the blocks read (each row tile reads it again), more splits only
  // add traffic. Decode never gets there; 32 tree tokens at 16 splits wrote 8.5 MB a layer, twice
  // the K/V.
  const int64_t partials = 2 * int64_t(a.tokens) * a.heads * partial_stride(a.head_dim) * int64_t(sizeof(float));
  const int64_t kv_read = int64_t(a.num_seqs) * kv * a.kv_heads * a.head_dim * 2 * int64_t(sizeof(bf16)) *
                          (use_decode(a) ? 1 : tiles_per_seq(a));
  const int by_traffic = int(std::max<int64_t>(1, std::min<int64_t>(64, kv_read / std::max<int64_t>(1, partials))));
  // At least two tiles a split: measured on the H200 at the Qwen3-4B shape (batch 1), one-tile splits
  // lost to two-tile ones (1024 positions: 17 splits 7.5 µs, 9 splits 6.7) and 33 splits of two tiles
  // to 22 of three (4096 positions: 11.5 µs, 10.3): the merge of each split's partials costs more
  // than a tile.
  const int by_length = std::max(1, int(ceil_div(kv, BN)) / 2);
  int splits = std::max(1, std::min({want, by_length, 64, by_traffic, a.max_splits > 0 ? a.max_splits : 64}));
  int chunk = int(ceil_div(ceil_div(kv, splits), BN)) * BN;
  return int(ceil_div(kv, chunk));
}

template <int D>
size_t smem_bytes(bool decode) {
  return size_t(decode ? kDecodeRows + kDecodeStages * 2 * BN : BM + 4 * BN) * (D + 8) * sizeof(bf16);
}

// Opts a kernel into its shared memory and returns how many of its blocks fit one SM together
// (0 if either call failed; the launch then refuses).
template <class Kernel>
int prepare(Kernel* kernel, size_t smem) {
  int r = 0;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&r, kernel, kWarps * 32, smem) != cudaSuccess)
    return 0;
  return r;
}

// The kernels of a head size. Splits are planned by the tile and plain decode kernels, so that the
// workspace a step sized fits either decode launch.
enum Kernel { kTile, kDecode, kDecodeRope };

// Done once per kernel.
template <int D>
int resident_per_sm(Kernel kind) {
  static const int n[3] = {prepare(attention_mma_kernel<D>, smem_bytes<D>(false)),
                           prepare(attention_decode_kernel<D, false>, smem_bytes<D>(true)),
                           prepare(attention_decode_kernel<D, true>, smem_bytes<D>(true))};
  return n[kind];
}

int resident_per_sm(const AttentionArgs& a, Kernel kind) {
  return a.head_dim == 64 ? resident_per_sm<64>(kind) : resident_per_sm<128>(kind);
}

Kernel planned(const AttentionArgs& a) { return use_decode(a) ? kDecode : kTile; }

int num_splits(const AttentionArgs& a) { return num_splits(a, resident_per_sm(a, planned(a))); }

// rope: the decode kernel rotates and caches the new tokens itself (use_decode must hold).
template <int D>
cudaError_t launch_mma(const AttentionArgs& a, const QkvRopeArgs* rope, cudaStream_t s) {
  const bool decode = use_decode(a);
  const int resident = resident_per_sm<D>(planned(a));
  if (resident == 0 || (rope && resident_per_sm<D>(kDecodeRope) == 0)) return cudaErrorInvalidConfiguration;
  const int tiles = tiles_per_seq(a), splits = num_splits(a, resident);
  const size_t smem = smem_bytes<D>(decode);
  cudaError_t e;
  if (decode) {
    dim3 grid(unsigned(a.num_seqs), unsigned(a.kv_heads), unsigned(splits));
    e = rope ? launch(attention_decode_kernel<D, true>, grid, dim3(kWarps * 32), smem, s, a, *rope, splits)
             : launch(attention_decode_kernel<D, false>, grid, dim3(kWarps * 32), smem, s, a, QkvRopeArgs{}, splits);
  } else {
    dim3 grid(unsigned(a.num_seqs * tiles), unsigned(a.kv_heads), unsigned(splits));
    e = launch(attention_mma_kernel<D>, grid, dim3(kWarps * 32), smem, s, a, tiles, splits);
  }
  if (e != cudaSuccess) return e;
  if (splits > 1) {
    int64_t rows = int64_t(a.tokens) * a.heads;
    e = launch(attention_combine_kernel, dim3(unsigned(rows)), dim3(D), 0, s, a, splits, D);
    if (e != cudaSuccess) return e;
  }
  return cudaGetLastError();
}

}  // namespace

size_t attention_workspace_floats(const AttentionArgs& a) {
  if (!use_mma(a.head_dim)) return 0;
  int splits = num_splits(a);
  return splits > 1 ? size_t(splits) * a.tokens * a.heads * partial_stride(a.head_dim) : 0;
}

cudaError_t attention(const AttentionArgs& a, cudaStream_t s) {
  if (a.tokens == 0) return cudaSuccess;
  if (a.head_dim > 256 || a.heads % a.kv_heads) return cudaErrorInvalidValue;
  if (a.head_dim == 64) return launch_mma<64>(a, nullptr, s);
  if (a.head_dim == 128) return launch_mma<128>(a, nullptr, s);
  int64_t rows = int64_t(a.tokens) * a.heads;
  return launch(attention_simple_kernel, dim3(ceil_div(rows, 4)), dim3(128), 0, s, a);
}

// Fused only while every block of the launch is resident at once: in a second wave, blocks that
// each rotate their group's queries again hold back the ones behind them (measured on the H200 at
// the Qwen3-4B shape: batch 64, two waves, lost 2.4% of its decode step; batch 1 and 16 gained 1.6
// and 3%).
bool rope_attention_fits(const AttentionArgs& a, const QkvRopeArgs& r) {
  if (!(a.tokens > 0 && use_mma(a.head_dim) && use_decode(a) && a.heads % a.kv_heads == 0 && r.rotary_dim == a.head_dim &&
        r.head_dim == a.head_dim && r.heads == a.heads && r.kv_heads == a.kv_heads && r.tokens == a.tokens))
    return false;
  return int64_t(a.num_seqs) * a.kv_heads * num_splits(a) <= int64_t(resident_per_sm(a, kDecodeRope)) * a.sm_count;
}

cudaError_t rope_attention(const AttentionArgs& a, const QkvRopeArgs& r, cudaStream_t s) {
  if (!rope_attention_fits(a, r)) return cudaErrorInvalidValue;
  return a.head_dim == 64 ? launch_mma<64>(a, &r, s) : launch_mma<128>(a, &r, s);
}

}  // namespace e3k
