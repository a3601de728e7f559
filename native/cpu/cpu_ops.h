// The float32 reference backend: the CI path, and the oracle every CUDA kernel is tested against.
// Each op family is implemented in its own file in this folder.
#pragma once
#include "runtime/ops.h"

namespace e3 {

class CpuOps final : public Ops {
 public:
  Device device() const override { return Device::CPU; }
  DType act_dtype() const override { return DType::F32; }
  void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override;
  void rmsnorm(const Tensor& x, const Tensor& w, float eps, const Tensor& out, const NormPlacement& at) override;
  void add_rmsnorm(const Tensor& residual, const Tensor& x, const Tensor& w, float eps, const Tensor& out,
                   const ResidualCapture& capture) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out) override;
  void qkv_rope_store(const QkvRotation& in, const AttentionLayout& layout, const Tensor& q_out, const Tensor& k_cache,
                      const Tensor& v_cache) override;
  void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionLayout& layout,
                 float scale, const Tensor& out) override;
  void silu_mul(const Tensor& gate_up, const Tensor& out) override;
  void gather_rows(const Tensor& x, const Tensor& rows, const Tensor& out) override;
  void copy_columns(const Tensor& src, const Tensor& dst, int64_t col) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  void tree_expand(const TreeState& t, int level, const Tensor& probs, const Tensor& ids, const Tensor& tokens,
                   const Tensor& mask, const Tensor& parent_rows, const RowGather& states) override;
  void tree_build(const TreeState& t, const Tensor& roots, const Tensor& committed, const Tensor& tokens,
                  const Tensor& positions, const Tensor& mask, const Tensor& parent) override;
  void tree_accept_greedy(const Tensor& tokens, const Tensor& parent, const Tensor& argmax, const Tensor& path,
                          const Tensor& accepted, const Tensor& bonus) override;
  void tree_accept_sampled(const Tensor& tokens, const Tensor& parent, const Tensor& logits, const Tensor& params,
                           const Tensor& path, const Tensor& accepted, const Tensor& bonus) override;
  void tree_commit(const Tensor& tokens, const Tensor& path, const Tensor& accepted, const Tensor& bonus,
                   const Tensor& out_tokens, const Tensor& feature_rows, const Tensor& last_rows) override;
  void kv_compact(const Tensor& pool, const Tensor& page_table, int page_size, const Tensor& committed,
                  const Tensor& path, const Tensor& accepted) override;
  void tree_advance(const Tensor& committed, const Tensor& accepted, const Tensor& bonus, const Tensor& next_committed,
                    const Tensor& next_roots) override;
  void step_layouts(const Tensor& committed, const Tensor& page_table, int page_size,
                    const std::vector<StepLayout>& steps) override;
  void scatter_rows(const Tensor& src, const Tensor& rows, const Tensor& dst) override;
  void topk_softmax(const Tensor& logits, int k, const Tensor& map, const Tensor& probs, const Tensor& ids) override;
  void sample(const Tensor& logits, const Tensor& params, const Tensor& tokens) override;
  void argmax(const Tensor& logits, const Tensor& tokens) override;
  void fill_normal(const Tensor& t, uint64_t seed, float mean, float std) override;
  void upload(const Tensor& dst, const void* src, size_t bytes) override { copy_from_host(dst, 0, src, bytes); }
  std::unique_ptr<PendingRead> download_async(const std::vector<HostRead>& reads) override;
  std::unique_ptr<DeviceTimer> start_timer() override;
};

// Reads element i of a float tensor of any float dtype as f32.
float load_f32(const Tensor& t, int64_t i);
// Requires a CPU tensor: the reference never touches device memory.
void expect_cpu(const Tensor& t, const char* what);

}  // namespace e3
