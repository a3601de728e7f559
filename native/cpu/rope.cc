#include <cmath>
#include <vector>

#include "cpu/cpu_ops.h"
#include "runtime/error.h"

namespace e3 {

// The rope's inverse frequencies: its table, or HF's, computed in float32 as transformers does.
static std::vector<float> inv_freq(const Rope& rope) {
  const int half = rope.rotary_dim / 2;
  if (rope.inv_freq.defined()) return std::vector<float>(rope.inv_freq.ptr<float>(), rope.inv_freq.ptr<float>() + half);
  std::vector<float> f(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) f[size_t(i)] = 1.0f / std::pow(rope.theta, float(2 * i) / float(rope.rotary_dim));
  return f;
}

// One head in place: optional RMSNorm over d, then rotate-half RoPE over the first rotary_dim dims.
static void norm_rope_head(float* x, int d, const Tensor* norm, float eps, int pos, const std::vector<float>& freq,
                           float scale) {
  if (norm) {
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += double(x[i]) * x[i];
    float inv = float(1.0 / std::sqrt(ss / d + eps));
    for (int i = 0; i < d; ++i) x[i] = x[i] * inv * load_f32(*norm, i);
  }
  int half = int(freq.size());
  for (int i = 0; i < half; ++i) {
    float angle = float(pos) * freq[size_t(i)];
    float c = std::cos(angle) * scale, s = std::sin(angle) * scale;
    float a = x[i], b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

void CpuOps::qkv_rope_store(const QkvRotation& in, const AttentionLayout& layout, const Tensor& q_out,
                            const Tensor& k_cache, const Tensor& v_cache) {
  const Tensor &qkv = in.qkv, &positions = in.positions;
  const Rope& rope = in.rope;
  expect_dtype(qkv, DType::F32, "qkv_rope_store qkv");
  expect_dtype(positions, DType::I32, "qkv_rope_store positions");
  int64_t T = qkv.dim(0), nh = q_out.dim(1), d = q_out.dim(2), nkv = k_cache.dim(1);
  E3_ARG(qkv.dim(1) == (nh + 2 * nkv) * d, "qkv_rope_store: " + qkv.describe() + " does not split into " +
                                               std::to_string(nh) + "+2x" + std::to_string(nkv) + " heads of " +
                                               std::to_string(d));
  check_rope(rope, d, Device::CPU);
  expect_shape(q_out, {T, nh, d}, "qkv_rope_store q_out");
  int64_t slots_total = k_cache.dim(0);
  std::vector<float> freq = inv_freq(rope);
  std::vector<float> head(static_cast<size_t>(d));
  const int32_t* slot = layout.slots.ptr<int32_t>();
  const int32_t* pos = positions.ptr<int32_t>();
  for (int64_t t = 0; t < T; ++t) {
    const float* row = qkv.ptr<float>() + t * qkv.dim(1);
    E3_ARG(slot[t] >= 0 && slot[t] < slots_total, "qkv_rope_store: cache slot " + std::to_string(slot[t]) + " out of range");
    for (int64_t h = 0; h < nh + 2 * nkv; ++h) {
      std::copy(row + h * d, row + (h + 1) * d, head.begin());
      float* dst;
      if (h < nh) {
        norm_rope_head(head.data(), int(d), in.q_norm, in.eps, pos[t], freq, rope.scale);
        dst = q_out.ptr<float>() + (t * nh + h) * d;
      } else if (h < nh + nkv) {
        norm_rope_head(head.data(), int(d), in.k_norm, in.eps, pos[t], freq, rope.scale);
        dst = k_cache.ptr<float>() + (int64_t(slot[t]) * nkv + (h - nh)) * d;
      } else {
        dst = v_cache.ptr<float>() + (int64_t(slot[t]) * nkv + (h - nh - nkv)) * d;
      }
      std::copy(head.begin(), head.end(), dst);
    }
  }
}

}  // namespace e3
