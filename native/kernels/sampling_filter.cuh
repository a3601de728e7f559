// Device pieces of sampling, shared by the sampler and speculative acceptance: the transformers
// filter of one logits row (temperature, top-k, top-p) and a draw by inverse CDF in id order. All
// functions are called by every thread of a block (≤ 1024 threads, a multiple of 32).
#pragma once
#include "kernels/device.cuh"
#include "runtime/sampling_params.h"

namespace e3k {

// Order-preserving map of floats onto unsigned integers.
__device__ __forceinline__ uint32_t float_key(float f) {
  uint32_t u = __float_as_uint(f);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}

// Calls fn(i, row[i]) for each i of the row, thread t taking t, t + blockDim.x, ... in order.
// One block streams a whole row, so the loads in flight per thread, not the bandwidth, bound a
// pass: eight are issued before any is used.
template <class Fn>
__device__ __forceinline__ void for_row(const float* row, int V, Fn fn) {
  constexpr int kAhead = 8;
  const int step = blockDim.x;
  int i = threadIdx.x;
  for (; i + (kAhead - 1) * step < V; i += kAhead * step) {
    float x[kAhead];
#pragma unroll
    for (int u = 0; u < kAhead; ++u) x[u] = __ldg(row + i + u * step);
#pragma unroll
    for (int u = 0; u < kAhead; ++u) fn(i + u * step, x[u]);
  }
  for (; i < V; i += step) fn(i, __ldg(row + i));
}

// The key of the k-th largest of some values (the largest t with count(key >= t) >= k, k at most
// their count): four passes, each a histogram of the next 8 bits of the keys that match the bits
// found so far. each(fn) calls fn(x) for the values this thread holds.
template <class Each>
__device__ inline uint32_t kth_largest_key(Each each, int k) {
  __shared__ unsigned hist[256];
  __shared__ uint32_t s_digit;
  __shared__ int s_need;
  uint32_t prefix = 0, mask = 0;
  int need = k;  // invariant: at least `need` keys of the row match `prefix` under `mask`
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    each([&](float x) {
      const uint32_t key = float_key(x);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    });
    __syncthreads();
    if (threadIdx.x < 32) {  // lane l holds bins [8l, 8l + 8); the digit is found from the top
      const int lane = threadIdx.x;
      unsigned mine = 0;
      for (int d = 0; d < 8; ++d) mine += hist[lane * 8 + d];
      unsigned suffix = mine;  // keys in this lane's bins and above
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        unsigned v = __shfl_down_sync(0xffffffffu, suffix, o);
        if (lane + o < 32) suffix += v;
      }
      const unsigned lanes = __ballot_sync(0xffffffffu, suffix >= unsigned(need));  // lane 0 always
      if (lane == 31 - __clz(int(lanes))) {
        unsigned above = suffix - mine;  // < need
        int d = lane * 8 + 7;
        for (; d > lane * 8 && above + hist[d] < unsigned(need); --d) above += hist[d];
        s_digit = uint32_t(d);
        s_need = need - int(above);
      }
    }
    __syncthreads();
    prefix |= s_digit << shift;
    mask |= 255u << shift;
    need = s_need;
    __syncthreads();
  }
  return prefix;
}

// The filter decides among at most kFilterCandidates logits gathered into shared memory, where
// they hold the whole kept set. Top-p alone finds them with a histogram of the logits within
// kFilterBins / kFilterBinsPerLogit of the row's maximum, binned by their distance to it.
constexpr int kFilterBins = 256;
constexpr float kFilterBinsPerLogit = 16.0f;
constexpr int kFilterCandidates = 1024;

__device__ __forceinline__ int filter_bin(float mx, float x) {
  const float d = mx - x;  // NaN and -inf logits fall outside
  return d < kFilterBins / kFilterBinsPerLogit ? int(d * kFilterBinsPerLogit) : kFilterBins;
}

struct FilterShared {
  float best[1024];  // each thread's largest logit, left by row_argmax
  unsigned count[kFilterBins];
  float mass[kFilterBins];
  float x[kFilterCandidates];  // the candidates as collected
  int at[kFilterCandidates];
  float w[kFilterCandidates];  // the candidates in id order: their logits, then their kept weights
  int id[kFilterCandidates];
  int last_bin, filled;
  uint32_t key;
};

// The block's filter state, one per block whichever function asks.
__device__ __forceinline__ FilterShared& filter_shared() {
  __shared__ FilterShared c;
  return c;
}

// The filtered, unnormalised weights of one row: kept(x) for a logit x of the row. When n >= 0 the
// kept set is exactly the n candidates id[j] with weights w[j] (0 where top-p dropped them).
struct RowFilter {
  float mx, inv_t;
  uint32_t k_key, p_key;
  float total;  // sum of kept weights over the row
  int n;
  const float* w;
  const int* id;
  __device__ float weight(float x) const { return float_key(x) >= k_key ? __expf((x - mx) * inv_t) : 0.0f; }
  __device__ float kept(float x) const {
    float w = weight(x);
    return __float_as_uint(w) >= p_key ? w : 0.0f;
  }
};

// Gathers the logits take(x) accepts into shared memory (one pass over the row, whole warps
// appending in turn); false when more than kFilterCandidates are taken.
template <class Take>
__device__ inline bool gather_candidates(const float* row, int V, FilterShared& c, Take take) {
  const int lane = threadIdx.x & 31;
  if (threadIdx.x == 0) c.filled = 0;
  __syncthreads();
  constexpr int kAhead = 8;
  for (int i0 = 0; i0 < V; i0 += kAhead * blockDim.x) {  // whole warps, for the ballot
    float x[kAhead];
#pragma unroll
    for (int u = 0; u < kAhead; ++u) {
      const int i = i0 + u * blockDim.x + threadIdx.x;
      x[u] = i < V ? __ldg(row + i) : NAN;  // NaN: taken by no filter
    }
#pragma unroll
    for (int u = 0; u < kAhead; ++u) {
      const int i = i0 + u * blockDim.x + threadIdx.x;
      const bool taken = i < V && take(x[u]);
      const unsigned m = __ballot_sync(0xffffffffu, taken);
      if (!m) continue;
      int base = 0;
      if (lane == 0) base = atomicAdd(&c.filled, __popc(m));
      base = __shfl_sync(0xffffffffu, base, 0) + __popc(m & ((1u << lane) - 1u));
      if (taken && base < kFilterCandidates) {
        c.x[base] = x[u];
        c.at[base] = i;
      }
    }
  }
  __syncthreads();
  return c.filled <= kFilterCandidates;
}

// Top-p alone: the bin of the logits near the maximum where the top-p share of the row's weight
// is reached (one pass: a histogram of their weight, and the row's weight into row_total); -1 when
// the nucleus reaches past the bins or holds more logits than the candidates can.
__device__ inline int top_p_last_bin(const float* row, int V, const e3::SamplingParams& sp, const RowFilter& f,
                                     FilterShared& c, float* scratch, float& row_total) {
  const int lane = threadIdx.x & 31;
  for (int i = threadIdx.x; i < kFilterBins; i += blockDim.x) {
    c.count[i] = 0;
    c.mass[i] = 0.0f;
  }
  __syncthreads();
  float all = 0.0f;
  for_row(row, V, [&](int, float x) {
    const float w = f.weight(x);
    const int b = filter_bin(f.mx, x);
    all += w;
    if (b < kFilterBins) {
      atomicAdd(&c.count[b], 1u);
      atomicAdd(&c.mass[b], w);
    }
  });
  row_total = block_sum(all, scratch);  // syncs: the histogram is complete
  if (threadIdx.x < 32) {  // lane l holds bins [8l, 8l + 8)
    const float need = sp.top_p * row_total;
    float mine = 0.0f;
    unsigned n = 0;
    for (int d = 0; d < 8; ++d) {
      mine += c.mass[lane * 8 + d];
      n += c.count[lane * 8 + d];
    }
    float incl = mine;
    unsigned n_incl = n;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      float v = __shfl_up_sync(0xffffffffu, incl, o);
      unsigned m = __shfl_up_sync(0xffffffffu, n_incl, o);
      if (lane >= o) {
        incl += v;
        n_incl += m;
      }
    }
    const unsigned lanes = __ballot_sync(0xffffffffu, incl >= need);
    if (lanes == 0 && lane == 0) c.last_bin = -1;
    if (lanes && lane == __ffs(int(lanes)) - 1) {
      float acc = incl - mine;
      unsigned cnt = n_incl - n;
      int d = lane * 8;
      for (;; ++d) {  // the lane's last bin where the re-summation falls short by rounding
        acc += c.mass[d];
        cnt += c.count[d];
        if (acc >= need || d == lane * 8 + 7) break;
      }
      c.last_bin = cnt <= unsigned(kFilterCandidates) ? d : -1;
    }
  }
  __syncthreads();
  return c.last_bin;
}

// Top-k and top-p decided exactly among the gathered candidates, which hold every logit the filter
// keeps, put in id order. row_total: the row's weight where top-p alone decides.
__device__ inline void filter_among_candidates(bool top_k, const e3::SamplingParams& sp, RowFilter& f, FilterShared& c,
                                               float* scratch, float row_total) {
  const int n = c.filled;
  if (threadIdx.x == 0) c.key = 0u;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {  // into id order, by rank
    const int id = c.at[j];
    int r = 0;
    for (int l = 0; l < n; ++l) r += c.at[l] < id;
    c.w[r] = c.x[j];
    c.id[r] = id;
  }
  __syncthreads();
  // The k-th largest candidate (without top-k, the smallest) bounds the kept set from below.
  const int k = top_k ? sp.top_k : n;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const float x = c.w[j];
    int gt = 0, ge = 0;
    for (int l = 0; l < n; ++l) {
      gt += c.w[l] > x;
      ge += c.w[l] >= x;
    }
    if (gt < k && k <= ge) c.key = float_key(x);  // every writer writes the same key
  }
  __syncthreads();
  f.k_key = c.key;
  float local = 0.0f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) local += (c.w[j] = f.weight(c.w[j]));
  const float total = top_k ? block_sum(local, scratch) : row_total;  // block_sum syncs
  if (!top_k) __syncthreads();
  if (sp.top_p < 1.0f) {
    // The largest weight v with mass(w >= v) >= top_p · total; 0 if rounding leaves none, which
    // keeps every candidate.
    if (threadIdx.x == 0) c.key = 0u;
    __syncthreads();
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
      const float w = c.w[j];
      if (w <= 0.0f) continue;
      float mass = 0.0f;
      for (int l = 0; l < n; ++l) mass += c.w[l] >= w ? c.w[l] : 0.0f;
      if (mass >= sp.top_p * total) atomicMax(&c.key, __float_as_uint(w));
    }
    __syncthreads();
    f.p_key = c.key;
    local = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) local += (c.w[j] = __float_as_uint(c.w[j]) >= f.p_key ? c.w[j] : 0.0f);
    f.total = block_sum(local, scratch);
  } else {
    f.total = total;
  }
  f.n = n;
}

// The row's filter under sp (temperature > 0), its maximum mx given by row_argmax, which ran just
// before and left each thread's maximum. Two passes over the row where the kept set fits in shared
// memory: top-k gathers the logits at least the k-th largest of the threads' maxima (a lower bound
// of the row's k-th largest); top-p alone, after a histogram pass, those down to the bin where its
// mass is reached. Otherwise (a top-k past the threads, many ties, a flat row) over the row.
__device__ inline RowFilter make_filter(const float* row, int V, float mx, const e3::SamplingParams& sp, float* scratch) {
  FilterShared& c = filter_shared();
  RowFilter f{mx, 1.0f / sp.temperature, 0u, 0u, 0.0f, -1, c.w, c.id};
  const bool top_k = sp.top_k > 0 && sp.top_k < V, top_p = sp.top_p < 1.0f;
  if (top_k && sp.top_k <= int(blockDim.x)) {
    const uint32_t pivot = kth_largest_key([&](auto fn) { fn(c.best[threadIdx.x]); }, sp.top_k);
    if (gather_candidates(row, V, c, [&](float x) { return float_key(x) >= pivot; })) {
      filter_among_candidates(true, sp, f, c, scratch, 0.0f);
      return f;
    }
  } else if (!top_k && top_p) {
    float row_total = 0.0f;
    const int last = top_p_last_bin(row, V, sp, f, c, scratch, row_total);
    if (last >= 0 && gather_candidates(row, V, c, [&](float x) { return filter_bin(mx, x) <= last; })) {
      filter_among_candidates(false, sp, f, c, scratch, row_total);
      return f;
    }
  }
  auto sum = [&](auto weight_of) {
    float local = 0.0f;
    for_row(row, V, [&](int, float x) { local += weight_of(f.weight(x)); });
    return block_sum(local, scratch);
  };
  if (top_k) f.k_key = kth_largest_key([&](auto fn) { for_row(row, V, [&](int, float x) { fn(x); }); }, sp.top_k);
  const float total = sum([](float w) { return w; });
  if (top_p) {  // weights are >= 0, so their float bits order them
    uint32_t lo = 0, hi = 0x7f800000u;  // invariant: mass(w >= lo) >= top_p · total
    while (lo < hi) {
      uint32_t mid = lo + (hi - lo + 1) / 2;
      if (sum([&](float w) { return __float_as_uint(w) >= mid ? w : 0.0f; }) >= sp.top_p * total) lo = mid;
      else hi = mid - 1;
    }
    f.p_key = lo;
    f.total = sum([&](float w) { return __float_as_uint(w) >= f.p_key ? w : 0.0f; });
  } else {
    f.total = total;
  }
  return f;
}

// The index where u · Σw falls in the CDF of w(i) over [0, V), in index order; `fallback` where
// rounding leaves it unmatched. Warp w owns a contiguous range, read 32 indices at a time; the warp
// where the draw falls walks its range again. prefix holds blockDim.x / 32 floats.
template <class Weight>
__device__ int draw_inverse_cdf(int V, float u, Weight w, int fallback, float* prefix) {
  __shared__ int found;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int seg = (V + 32 * warps - 1) / (32 * warps) * 32, b = min(V, warp * seg), e = min(V, b + seg);
  constexpr int kAhead = 8;
  float part = 0.0f;
#pragma unroll kAhead
  for (int i = b + lane; i < e; i += 32) part += w(i);
  const float mine = warp_sum(part);
  if (lane == 0) prefix[warp] = mine;
  if (threadIdx.x == 0) found = fallback;
  __syncthreads();
  float before = 0.0f, total = 0.0f;  // summed in one order by every thread, so the warps' ranges tile
  for (int k = 0; k < warps; ++k) {
    if (k == warp) before = total;
    total += prefix[k];
  }
  const float target = u * total;
  if (mine > 0.0f && before <= target && target < before + mine) {
    float acc = before;
    int last = -1;  // the warp's last positive index, where rounding leaves the target past its walk
    bool hit_any = false;
    for (int i0 = b; i0 < e && !hit_any; i0 += 32 * kAhead) {
      float x[kAhead];
#pragma unroll
      for (int u = 0; u < kAhead; ++u) {
        const int i = i0 + 32 * u + lane;
        x[u] = i < e ? w(i) : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < kAhead; ++u) {
        float incl = x[u];
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          float y = __shfl_up_sync(0xffffffffu, incl, o);
          if (lane >= o) incl += y;
        }
        const unsigned hit = __ballot_sync(0xffffffffu, x[u] > 0.0f && target < acc + incl);
        if (hit) {
          if (lane == __ffs(int(hit)) - 1) found = i0 + 32 * u + lane;
          hit_any = true;
          break;
        }
        const unsigned positive = __ballot_sync(0xffffffffu, x[u] > 0.0f);
        if (positive) last = i0 + 32 * u + 31 - __clz(int(positive));
        acc += __shfl_sync(0xffffffffu, incl, 31);
      }
    }
    if (!hit_any && last >= 0 && lane == 0) found = last;
  }
  __syncthreads();
  int r = found;
  __syncthreads();  // `found` and prefix may be reused by the next call
  return r;
}

// A draw from the row's filtered weights, less the ids `excluded` names (rejected draft tokens).
template <class Excluded>
__device__ int draw_filtered(const RowFilter& f, const float* row, int V, float u, Excluded excluded, int fallback,
                             float* prefix) {
  if (f.n >= 0) {
    const int j = draw_inverse_cdf(
        f.n, u, [&](int j) { return f.w[j] > 0.0f && excluded(f.id[j]) ? 0.0f : f.w[j]; }, -1, prefix);
    return j < 0 ? fallback : f.id[j];
  }
  return draw_inverse_cdf(
      V, u, [&](int i) { const float w = f.kept(row[i]); return w > 0.0f && excluded(i) ? 0.0f : w; }, fallback, prefix);
}

// Row maximum and its lowest index (argmax) over the block; each thread's maximum is kept for
// make_filter.
__device__ __forceinline__ float row_argmax(const float* row, int V, int* arg, float* scratch) {
  float best = -INFINITY;
  int best_i = V;
  for_row(row, V, [&](int i, float x) {
    if (x > best) {
      best = x;
      best_i = i;
    }
  });
  filter_shared().best[threadIdx.x] = best;  // make_filter's pivot for top-k
  float mx = block_max(best, scratch);
  __shared__ int a;
  if (threadIdx.x == 0) a = V;
  __syncthreads();
  if (best == mx) atomicMin(&a, best_i);
  __syncthreads();
  *arg = a;
  __syncthreads();
  return mx;
}

}  // namespace e3k
