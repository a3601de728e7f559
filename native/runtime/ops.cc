#include "runtime/ops.h"

#include <string>

#include "runtime/error.h"

namespace e3 {

double Ops::timer_stop_ms() {
  E3_ARG(timer_, "the device timer was stopped without being started");
  std::unique_ptr<DeviceTimer> t = std::move(timer_);
  t->stop();
  return t->ms();
}

void check_rope(const Rope& rope, int64_t d, Device device) {
  E3_ARG(rope.rotary_dim > 0 && rope.rotary_dim <= d && rope.rotary_dim % 2 == 0,
         "qkv_rope_store: rotary_dim " + std::to_string(rope.rotary_dim) + " for heads of " + std::to_string(d));
  if (rope.inv_freq.defined())
    E3_ARG(rope.inv_freq.device() == device && rope.inv_freq.dtype() == DType::F32 &&
               rope.inv_freq.numel() == rope.rotary_dim / 2,
           "qkv_rope_store: inverse frequencies must be f32 [" + std::to_string(rope.rotary_dim / 2) +
               "] on the op's device, got " + rope.inv_freq.describe());
}

void check_copy(Device device, const Tensor& src, const Tensor& dst) {
  E3_ARG(src.defined() && dst.defined() && src.device() == device && dst.device() == device &&
             src.dtype() == dst.dtype() && src.numel() == dst.numel(),
         "copy: " + (src.defined() ? src.describe() : std::string("nothing")) + " into " +
             (dst.defined() ? dst.describe() : std::string("nothing")));
}

void Ops::rope_attention(const QkvRotation& in, const AttentionLayout& layout, const Tensor& q,
                         const Tensor& k_cache, const Tensor& v_cache, float scale, const Tensor& out) {
  qkv_rope_store(in, layout, q, k_cache, v_cache);
  attention(q, k_cache, v_cache, layout, scale, out);
}

void Ops::swiglu_linear(const Tensor& gate_up, const Tensor& w, const Tensor& act, const Tensor& out) {
  silu_mul(gate_up, act);
  linear(act, w, nullptr, out);
}

NormShape check_norm(const Tensor& x, const Tensor& w, const Tensor& out, const NormPlacement& at, Device device) {
  const int64_t n = w.dim(-1);
  E3_ARG(n > 0 && x.numel() % w.numel() == 0, "rmsnorm: " + x.describe() + " is not rows of the weight " + w.describe());
  int64_t rows = x.numel() / n;
  if (at.rows.defined()) {
    E3_ARG(w.numel() == n && x.rank() == 2, "rmsnorm: gathered rows take a 2-d x and one weight row, got " +
                                                x.describe() + " and " + w.describe());
    E3_ARG(at.rows.device() == device && at.rows.dtype() == DType::I32,
           "rmsnorm rows: expected i32 indices on the ops' device, got " + at.rows.describe());
    rows = at.rows.numel();
  }
  const int64_t ld = rows ? out.numel() / rows : n;
  E3_ARG(out.numel() == rows * ld && at.col >= 0 && at.col + n <= ld && (ld == n || out.rank() == 2),
         "rmsnorm: " + std::to_string(rows) + " rows of " + std::to_string(n) + " at column " + std::to_string(at.col) +
             " do not fit " + out.describe());
  return {rows, ld};
}

void check_capture(const ResidualCapture& c, int64_t rows, int64_t n, Device device, DType act) {
  if (c.cols.empty()) return;
  E3_ARG(c.cols.size() <= 3, "add_rmsnorm captures into at most 3 column offsets, got " + std::to_string(c.cols.size()));
  E3_ARG(c.dst.defined() && c.dst.rank() == 2 && c.dst.device() == device && c.dst.dtype() == act,
         "add_rmsnorm capture: expected a 2-d " + std::string(dtype_name(act)) + " tensor on the ops' device, got " +
             (c.dst.defined() ? c.dst.describe() : std::string("nothing")));
  if (c.rows.defined())
    E3_ARG(c.rows.device() == device && c.rows.dtype() == DType::I32 && c.rows.numel() == rows,
           "add_rmsnorm capture rows: expected " + std::to_string(rows) + " i32 row indices, got " + c.rows.describe());
  else
    E3_ARG(c.dst.dim(0) >= rows, "add_rmsnorm capture: " + c.dst.describe() + " has fewer than " +
                                     std::to_string(rows) + " rows");
  for (int64_t col : c.cols)
    E3_ARG(col >= 0 && col + n <= c.dst.dim(1), "add_rmsnorm capture: columns " + std::to_string(col) + ".." +
                                                    std::to_string(col + n) + " outside " + c.dst.describe());
}

}  // namespace e3
