#include <cmath>
#include <limits>
#include <vector>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"
#include "runtime/parallel.h"

namespace e3 {

void CpuOps::attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionLayout& L,
                       float scale, const Tensor& out) {
  expect_dtype(q, DType::F32, "attention q");
  expect_dtype(out, DType::F32, "attention out");
  int64_t T = q.dim(0), nh = q.dim(1), d = q.dim(2), nkv = k_cache.dim(1);
  E3_ARG(nh % nkv == 0, "attention: heads not a multiple of kv heads");
  expect_shape(out, {T, nh, d}, "attention out");
  const int32_t* q_start = L.q_start.ptr<int32_t>();
  const int32_t* kv_len = L.kv_len.ptr<int32_t>();
  const int32_t* pages = L.page_table.ptr<int32_t>();
  const int32_t* tseq = L.token_seq.ptr<int32_t>();
  const int64_t* mask = L.tree_mask.defined() ? L.tree_mask.ptr<int64_t>() : nullptr;
  const int32_t* base = L.tree_base.defined() ? L.tree_base.ptr<int32_t>() : nullptr;
  const float* K = k_cache.ptr<float>();
  const float* V = v_cache.ptr<float>();
  parallel_for(T, 1, [&](int64_t t) {
    int s = tseq[t];
    int q_len = q_start[s + 1] - q_start[s], i = int(t) - q_start[s], prefix = kv_len[s] - q_len;
    int mask_base = base ? base[s] : prefix;
    std::vector<int64_t> slot;  // visible context slots, in order
    for (int j = 0; j < kv_len[s]; ++j) {
      bool visible = mask ? j < mask_base || ((uint64_t(mask[t]) >> (j - mask_base)) & 1u) : j - prefix <= i;
      if (!visible) continue;
      int page = pages[int64_t(s) * L.max_pages + j / L.page_size];
      slot.push_back(int64_t(page) * L.page_size + j % L.page_size);
    }
    std::vector<float> p(slot.size());
    for (int64_t h = 0; h < nh; ++h) {
      const float* qh = q.ptr<float>() + (t * nh + h) * d;
      int64_t kvh = h / (nh / nkv);
      float mx = -std::numeric_limits<float>::infinity();
      for (size_t j = 0; j < slot.size(); ++j) {
        const float* kj = K + (slot[j] * nkv + kvh) * d;
        float acc = 0;
        for (int64_t x = 0; x < d; ++x) acc += qh[x] * kj[x];
        p[j] = acc * scale;
        mx = std::max(mx, p[j]);
      }
      double sum = 0;
      for (float& v : p) sum += (v = std::exp(v - mx));
      float* o = out.ptr<float>() + (t * nh + h) * d;
      for (int64_t x = 0; x < d; ++x) o[x] = 0;
      for (size_t j = 0; j < slot.size(); ++j) {
        const float* vj = V + (slot[j] * nkv + kvh) * d;
        float w = float(p[j] / sum);
        for (int64_t x = 0; x < d; ++x) o[x] += w * vj[x];
      }
    }
  });
}

}  // namespace e3
