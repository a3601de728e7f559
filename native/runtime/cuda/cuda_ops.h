// The CUDA backend: each op checks its tensors and launches the kernel of native/kernels on the
// backend's own stream. Products of one row use the GEMV kernel, of 2-16 rows the skinny tensor-core
// kernel, the rest cuBLASLt.
#pragma once
#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "kernels/attention.cuh"
#include "runtime/ops.h"

namespace e3 {

enum class GemmPath { Auto, Gemv, Skinny, CublasLt };

struct ReadStaging;
struct TimerEvents;

class CudaOps final : public Ops {
 public:
  CudaOps();
  ~CudaOps() override;
  Device device() const override { return Device::CUDA; }
  DType act_dtype() const override { return DType::BF16; }
  cudaStream_t stream() const { return stream_; }
  void set_gemm_path(GemmPath p) { gemm_path_ = p; }
  // Caps attention's split of the context over blocks (0: automatic), for timings.
  void set_attention_splits(int max) { attention_splits_ = max; }
  void synchronize();

  void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override;
  void rmsnorm(const Tensor& x, const Tensor& w, float eps, const Tensor& out, const NormPlacement& at) override;
  void add_rmsnorm(const Tensor& residual, const Tensor& x, const Tensor& w, float eps, const Tensor& out,
                   const ResidualCapture& capture) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out) override;
  void qkv_rope_store(const QkvRotation& in, const AttentionLayout& layout, const Tensor& q_out, const Tensor& k_cache,
                      const Tensor& v_cache) override;
  void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionLayout& layout,
                 float scale, const Tensor& out) override;
  void rope_attention(const QkvRotation& in, const AttentionLayout& layout, const Tensor& q, const Tensor& k_cache,
                      const Tensor& v_cache, float scale, const Tensor& out) override;
  void silu_mul(const Tensor& gate_up, const Tensor& out) override;
  void swiglu_linear(const Tensor& gate_up, const Tensor& w, const Tensor& act, const Tensor& out) override;
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
  void upload(const Tensor& dst, const void* src, size_t bytes) override;
  std::unique_ptr<PendingRead> download_async(const std::vector<HostRead>& reads) override;
  int capture(const std::function<void()>& body) override;
  void replay(int graph) override;
  std::unique_ptr<DeviceTimer> start_timer() override;

 private:
  float* workspace(Tensor& ws, size_t floats);  // ws grown to at least `floats` (the old one kept for graphs)
  // Checked launch arguments of qkv_rope_store and attention (the latter with its workspace sized).
  e3k::QkvRopeArgs rope_args(const QkvRotation& in, const AttentionLayout& layout, const Tensor& q_out,
                             const Tensor& k_cache, const Tensor& v_cache);
  e3k::AttentionArgs attention_args(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                    const AttentionLayout& layout, float scale, const Tensor& out);
  bool use_gemv(int64_t m, int64_t n, int64_t k) const;  // the own kernel for few rows unless cuBLASLt is pinned
  bool use_skinny(int64_t m, int64_t k) const;  // the tensor-core kernel for a few rows
  void skinny(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out, int64_t m, int64_t k, bool swiglu);
  cudaStream_t stream_ = nullptr;
  cudaEvent_t uploaded_ = nullptr;
  int sm_count_ = 0;
  GemmPath gemm_path_ = GemmPath::Auto;
  int attention_splits_ = 0;
  Tensor attn_ws_, gemm_ws_, gemm_partials_, skinny_arrivals_, topk_partials_, topk_arrivals_,
      argmax_keys_;
  std::vector<Tensor> retired_;          // buffers captured graphs may still reference
  std::vector<cudaGraphExec_t> graphs_;
  void* pinned_ = nullptr;               // staging for uploads
  size_t pinned_bytes_ = 0;
  std::shared_ptr<ReadStaging> read_staging_;  // pinned buffers and events of reads in flight
  std::shared_ptr<TimerEvents> timer_events_;  // events of device timers, reused
};

}  // namespace e3
