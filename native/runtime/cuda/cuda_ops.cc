#include "runtime/cuda/cuda_ops.h"

#include <cstring>
#include <mutex>

#include "kernels/attention.cuh"
#include "kernels/elementwise.cuh"
#include "kernels/gemv.cuh"
#include "kernels/norm.cuh"
#include "kernels/random.cuh"
#include "kernels/rope.cuh"
#include "kernels/sampling.cuh"
#include "kernels/topk.cuh"
#include "kernels/tree.cuh"
#include "runtime/cuda/cublaslt.h"
#include "runtime/cuda_util.h"
#include "runtime/error.h"
#include "runtime/spec_tree.h"

namespace e3 {

namespace {

constexpr size_t kGemmWorkspaceBytes = 32u << 20;

void check(cudaError_t e, const char* op) {
  if (e != cudaSuccess) fail(Code::Cuda, std::string(op) + ": " + cudaGetErrorString(e));
}

void on_gpu(const Tensor& t, DType dt, const char* what) {
  E3_ARG(t.defined() && t.device() == Device::CUDA, std::string(what) + ": expected a CUDA tensor, got " +
                                                        (t.defined() ? t.describe() : std::string("nothing")));
  expect_dtype(t, dt, what);
}

e3k::bf16* bf(const Tensor& t) { return t.ptr<e3k::bf16>(); }

template <class T>
T* opt(const Tensor& t) { return t.defined() ? t.ptr<T>() : nullptr; }

e3k::TreeArgs tree_args(const TreeState& t) {
  return {t.steps, t.topk, tree_candidates(t.steps, t.topk), t.score.ptr<float>(), t.token.ptr<int32_t>(),
          t.parent.ptr<int32_t>(), t.mask.ptr<int64_t>(), t.live.ptr<int32_t>()};
}

}  // namespace

CudaOps::CudaOps() {
  require_cuda_device();
  check(cudaStreamCreate(&stream_), "cudaStreamCreate");
  int dev = 0;
  cudaGetDevice(&dev);
  check(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, dev), "multiprocessor count");
  check(cudaEventCreateWithFlags(&uploaded_, cudaEventDisableTiming), "cudaEventCreate");
  read_staging_ = std::make_shared<ReadStaging>();
  timer_events_ = std::make_shared<TimerEvents>();
  gemm_ws_ = Tensor::empty(Device::CUDA, DType::U8, {int64_t(kGemmWorkspaceBytes)});
  // Arrival counters of kernels whose last block merges the others' work: zeroed once, and each
  // kernel leaves them zeroed.
  auto counters = [](int64_t n) {
    Tensor t = Tensor::empty(Device::CUDA, DType::I32, {n});
    check(cudaMemset(t.data(), 0, t.nbytes()), "cudaMemset");
    return t;
  };
  skinny_arrivals_ = counters(e3k::kSkinnyMaxColumnBlocks);
  topk_arrivals_ = counters(e3k::kTopkMaxSplitRows);
}

CudaOps::~CudaOps() {
  if (stream_) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  for (cudaGraphExec_t g : graphs_) cudaGraphExecDestroy(g);
  if (pinned_) cudaFreeHost(pinned_);
  if (uploaded_) cudaEventDestroy(uploaded_);
}

namespace {

// `buf` (pinned host memory of `capacity` bytes) grown to hold at least `bytes`, with room to spare.
void grow_pinned(void*& buf, size_t& capacity, size_t bytes) {
  if (bytes <= capacity) return;
  if (buf) cudaFreeHost(buf);
  buf = nullptr;
  capacity = 0;
  check(cudaMallocHost(&buf, bytes * 2), "cudaMallocHost");
  capacity = bytes * 2;
}

}  // namespace

// Through pinned memory so the copy is asynchronous and stream-ordered; the staging buffer is
// rewritten only once the previous copy out of it has completed.
void CudaOps::upload(const Tensor& dst, const void* src, size_t bytes) {
  E3_ARG(dst.device() == Device::CUDA && bytes <= dst.nbytes(), "upload: " + std::to_string(bytes) + " bytes into " + dst.describe());
  check(cudaEventSynchronize(uploaded_), "cudaEventSynchronize");
  grow_pinned(pinned_, pinned_bytes_, bytes);
  std::memcpy(pinned_, src, bytes);
  check(cudaMemcpyAsync(dst.data(), pinned_, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
  check(cudaEventRecord(uploaded_, stream_), "cudaEventRecord");
}

// Buffers for reads in flight: each read takes one (pinned host memory and an event) and gives it
// back when its wait is over. Shared with the reads, so that one outliving the backend stays valid.
struct ReadStaging {
  struct Buffer {
    void* host = nullptr;
    size_t bytes = 0;
    cudaEvent_t done = nullptr;
  };
  std::mutex mu;
  std::vector<Buffer> free;
  ~ReadStaging() {
    for (Buffer& b : free) {
      if (b.host) cudaFreeHost(b.host);
      if (b.done) cudaEventDestroy(b.done);
    }
  }
  Buffer take(size_t bytes) {
    Buffer b;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!free.empty()) {
        b = free.back();
        free.pop_back();
      }
    }
    if (!b.done) check(cudaEventCreateWithFlags(&b.done, cudaEventDisableTiming), "cudaEventCreate");
    grow_pinned(b.host, b.bytes, bytes);
    return b;
  }
  void give(Buffer b) {
    std::lock_guard<std::mutex> lock(mu);
    free.push_back(b);
  }
};

// Timing events, reused: a round takes two, and creating them is host work on the hot path.
struct TimerEvents {
  std::mutex mu;
  std::vector<cudaEvent_t> free;
  ~TimerEvents() {
    for (cudaEvent_t e : free) cudaEventDestroy(e);
  }
  cudaEvent_t take() {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!free.empty()) {
        cudaEvent_t e = free.back();
        free.pop_back();
        return e;
      }
    }
    cudaEvent_t e = nullptr;
    check(cudaEventCreate(&e), "cudaEventCreate");
    return e;
  }
  void give(cudaEvent_t e) {
    std::lock_guard<std::mutex> lock(mu);
    free.push_back(e);
  }
};

namespace {

size_t padded16(size_t n) { return (n + 15) / 16 * 16; }

// Copies stream-ordered into one pinned buffer, then (wait) one event wait and the copies out.
class StagedRead final : public Ops::PendingRead {
 public:
  StagedRead(std::shared_ptr<ReadStaging> staging, const std::vector<Ops::HostRead>& reads, cudaStream_t stream)
      : staging_(std::move(staging)) {
    size_t total = 0;
    for (const Ops::HostRead& r : reads) {
      E3_ARG(r.src.device() == Device::CUDA && r.bytes <= r.src.nbytes(),
             "download: " + std::to_string(r.bytes) + " bytes of " + r.src.describe());
      total += padded16(r.bytes);
    }
    buf_ = staging_->take(total);
    char* at = static_cast<char*>(buf_.host);
    for (const Ops::HostRead& r : reads) {
      if (r.bytes) check(cudaMemcpyAsync(at, r.src.data(), r.bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
      dsts_.push_back({r.dst, r.bytes});
      at += padded16(r.bytes);
    }
    check(cudaEventRecord(buf_.done, stream), "cudaEventRecord");
  }
  ~StagedRead() override {
    if (!waited_) cudaEventSynchronize(buf_.done);  // the copies must land before the buffer is reused
    staging_->give(buf_);
  }
  void wait() override {
    check(cudaEventSynchronize(buf_.done), "cudaEventSynchronize");
    waited_ = true;
    const char* at = static_cast<const char*>(buf_.host);
    for (auto [dst, bytes] : dsts_) {
      if (bytes) std::memcpy(dst, at, bytes);
      at += padded16(bytes);
    }
  }

 private:
  std::shared_ptr<ReadStaging> staging_;
  ReadStaging::Buffer buf_;
  std::vector<std::pair<void*, size_t>> dsts_;
  bool waited_ = false;
};

}  // namespace

std::unique_ptr<Ops::PendingRead> CudaOps::download_async(const std::vector<HostRead>& reads) {
  return std::make_unique<StagedRead>(read_staging_, reads, stream_);
}

int CudaOps::capture(const std::function<void()>& body) {
  check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  try {
    body();
  } catch (...) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream_, &g);
    if (g) cudaGraphDestroy(g);
    throw;
  }
  cudaGraph_t g = nullptr;
  check(cudaStreamEndCapture(stream_, &g), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  check(e, "cudaGraphInstantiate");
  graphs_.push_back(exec);
  return int(graphs_.size()) - 1;
}

void CudaOps::replay(int graph) {
  E3_ARG(graph >= 0 && size_t(graph) < graphs_.size(), "no captured graph " + std::to_string(graph));
  check(cudaGraphLaunch(graphs_[size_t(graph)], stream_), "cudaGraphLaunch");
}

namespace {

// A pair of events on the stream, taken from the pool and given back; ms() waits for the second.
class EventTimer final : public Ops::DeviceTimer {
 public:
  EventTimer(std::shared_ptr<TimerEvents> pool, cudaStream_t stream) : pool_(std::move(pool)), stream_(stream) {
    start_ = pool_->take();
    stop_ = pool_->take();
    check(cudaEventRecord(start_, stream_), "cudaEventRecord");
  }
  ~EventTimer() override {
    pool_->give(start_);
    pool_->give(stop_);
  }
  void stop() override {
    check(cudaEventRecord(stop_, stream_), "cudaEventRecord");
    stopped_ = true;
  }
  double ms() override {
    E3_CHECK(stopped_, Internal, "a device timer was read before it was stopped");
    check(cudaEventSynchronize(stop_), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
    return ms;
  }

 private:
  std::shared_ptr<TimerEvents> pool_;
  cudaStream_t stream_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  bool stopped_ = false;
};

}  // namespace

std::unique_ptr<Ops::DeviceTimer> CudaOps::start_timer() { return std::make_unique<EventTimer>(timer_events_, stream_); }

void CudaOps::synchronize() { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

float* CudaOps::workspace(Tensor& ws, size_t floats) {
  if (!floats) return nullptr;
  if (!ws.defined() || size_t(ws.numel()) < floats) {
    if (ws.defined()) retired_.push_back(ws);
    ws = Tensor::empty(Device::CUDA, DType::F32, {int64_t(floats)});
  }
  return ws.ptr<float>();
}

void CudaOps::embedding(const Tensor& ids, const Tensor& table, const Tensor& out) {
  on_gpu(ids, DType::I32, "embedding ids");
  on_gpu(table, DType::BF16, "embedding table");
  on_gpu(out, DType::BF16, "embedding out");
  expect_shape(out, {ids.numel(), table.dim(1)}, "embedding out");
  check(e3k::embedding(ids.ptr<int32_t>(), bf(table), bf(out), int(ids.numel()), int(table.dim(1)), stream_),
        "embedding");
}

void CudaOps::rmsnorm(const Tensor& x, const Tensor& w, float eps, const Tensor& out, const NormPlacement& at) {
  on_gpu(x, DType::BF16, "rmsnorm x");
  on_gpu(w, DType::BF16, "rmsnorm w");
  on_gpu(out, DType::BF16, "rmsnorm out");
  const NormShape shape = check_norm(x, w, out, at, Device::CUDA);
  const int64_t n = w.dim(-1);
  e3k::NormRows io{at.rows.defined() ? at.rows.ptr<int32_t>() : nullptr, shape.out_ld};
  check(e3k::rmsnorm(bf(x), bf(w), bf(out) + at.col, int(shape.rows), int(n), int(w.numel() / n), eps, io, stream_), "rmsnorm");
}

void CudaOps::add_rmsnorm(const Tensor& residual, const Tensor& x, const Tensor& w, float eps, const Tensor& out,
                          const ResidualCapture& capture) {
  on_gpu(residual, DType::BF16, "add_rmsnorm residual");
  on_gpu(x, DType::BF16, "add_rmsnorm x");
  on_gpu(w, DType::BF16, "add_rmsnorm w");
  on_gpu(out, DType::BF16, "add_rmsnorm out");
  int64_t n = w.numel();
  E3_ARG(x.numel() == residual.numel() && x.numel() % n == 0 && out.numel() == x.numel(),
         "add_rmsnorm: " + residual.describe() + " + " + x.describe() + " vs " + w.describe());
  const int64_t rows = x.numel() / n;
  check_capture(capture, rows, n, Device::CUDA, DType::BF16);
  e3k::RowCapture cap;
  if (!capture.cols.empty()) {
    cap.dst = bf(capture.dst);
    cap.rows = opt<int32_t>(capture.rows);
    cap.stride = capture.dst.dim(1);
    cap.cols = int(capture.cols.size());
    std::copy(capture.cols.begin(), capture.cols.end(), cap.col);
  }
  check(e3k::add_rmsnorm(bf(residual), bf(x), bf(w), bf(out), int(rows), int(n), eps, cap, stream_), "add_rmsnorm");
}

void CudaOps::linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out) {
  on_gpu(x, DType::BF16, "linear x");
  on_gpu(w, DType::BF16, "linear w");
  int64_t M = x.dim(0), K = x.dim(-1), N = w.dim(0);
  E3_ARG(w.rank() == 2 && w.dim(1) == K && x.numel() == M * K, "linear: " + x.describe() + " · " + w.describe());
  E3_ARG(out.device() == Device::CUDA && (out.dtype() == DType::BF16 || out.dtype() == DType::F32),
         "linear out must be a bf16 or f32 CUDA tensor, got " + out.describe());
  expect_shape(out, {M, N}, "linear out");
  if (bias) {
    on_gpu(*bias, DType::BF16, "linear bias");
    E3_ARG(bias->numel() == N, "linear bias " + bias->describe() + " does not match " + w.describe());
  }
  if (M == 0) return;
  bool f32 = out.dtype() == DType::F32;
  if (use_gemv(M, N, K)) {
    check(e3k::gemv(bf(x), bf(w), bias ? bf(*bias) : nullptr, f32 ? nullptr : bf(out), f32 ? out.ptr<float>() : nullptr,
                    int(M), int(N), int(K), stream_),
          "gemv");
    return;
  }
  if (use_skinny(M, K)) {
    skinny(x, w, bias, out, M, K, false);
    return;
  }
  cublaslt_linear(x.data(), w.data(), bias ? bias->data() : nullptr, out.data(), f32, int(M), int(N), int(K),
                  gemm_ws_.data(), gemm_ws_.nbytes(), stream_);
}

void CudaOps::skinny(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out, int64_t m, int64_t k, bool swiglu) {
  const int64_t n = w.dim(0);
  const bool f32 = out.dtype() == DType::F32;
  int splits = e3k::skinny_splits(int(n), int(k), sm_count_);
  float* partials = splits > 1 ? workspace(gemm_partials_, size_t(splits) * m * n) : nullptr;
  check(e3k::skinny_gemm(bf(x), bf(w), bias ? bf(*bias) : nullptr, f32 ? nullptr : bf(out), f32 ? out.ptr<float>() : nullptr,
                         int(m), int(n), int(k), splits, partials, skinny_arrivals_.ptr<uint32_t>(), swiglu, stream_),
        "skinny_gemm");
}

// The activation fused into the skinny kernel where that runs a one-row product (decode), else its
// own kernel first: over more rows the fused activation cost more than the kernel it saves.
void CudaOps::swiglu_linear(const Tensor& gate_up, const Tensor& w, const Tensor& act, const Tensor& out) {
  on_gpu(gate_up, DType::BF16, "swiglu_linear gate_up");
  on_gpu(w, DType::BF16, "swiglu_linear w");
  const int64_t M = gate_up.dim(0), I = gate_up.dim(-1) / 2, N = w.dim(0);
  E3_ARG(gate_up.rank() == 2 && gate_up.dim(1) == 2 * I && w.rank() == 2 && w.dim(1) == I,
         "swiglu_linear: " + gate_up.describe() + " does not feed " + w.describe());
  E3_ARG(out.device() == Device::CUDA && (out.dtype() == DType::BF16 || out.dtype() == DType::F32),
         "swiglu_linear out must be a bf16 or f32 CUDA tensor, got " + out.describe());
  expect_shape(out, {M, N}, "swiglu_linear out");
  if (M == 1 && !use_gemv(M, N, I) && use_skinny(M, I)) skinny(gate_up, w, nullptr, out, M, I, true);
  else Ops::swiglu_linear(gate_up, w, act, out);
}

e3k::QkvRopeArgs CudaOps::rope_args(const QkvRotation& in, const AttentionLayout& layout, const Tensor& q_out,
                                   const Tensor& k_cache, const Tensor& v_cache) {
  on_gpu(in.qkv, DType::BF16, "qkv_rope_store qkv");
  on_gpu(in.positions, DType::I32, "qkv_rope_store positions");
  on_gpu(q_out, DType::BF16, "qkv_rope_store q_out");
  on_gpu(k_cache, DType::BF16, "k_cache");
  on_gpu(v_cache, DType::BF16, "v_cache");
  int64_t T = in.qkv.dim(0), nh = q_out.dim(1), d = q_out.dim(2), nkv = k_cache.dim(1);
  E3_ARG(in.qkv.dim(1) == (nh + 2 * nkv) * d && q_out.dim(0) == T && d <= 256,
         "qkv_rope_store: " + in.qkv.describe() + " does not split into q " + q_out.describe() + " and kv of " +
             std::to_string(nkv) + " heads (head_dim at most 256)");
  check_rope(in.rope, d, Device::CUDA);
  if (in.q_norm) on_gpu(*in.q_norm, DType::BF16, "q_norm");
  if (in.k_norm) on_gpu(*in.k_norm, DType::BF16, "k_norm");
  return {bf(in.qkv), in.q_norm ? bf(*in.q_norm) : nullptr, in.k_norm ? bf(*in.k_norm) : nullptr,
          in.positions.ptr<int32_t>(), layout.slots.ptr<int32_t>(), bf(q_out), bf(k_cache), bf(v_cache),
          int(T), int(nh), int(nkv), int(d), in.rope.rotary_dim, in.eps, in.rope.theta,
          in.rope.inv_freq.defined() ? in.rope.inv_freq.ptr<float>() : nullptr, in.rope.scale};
}

e3k::AttentionArgs CudaOps::attention_args(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                           const AttentionLayout& L, float scale, const Tensor& out) {
  on_gpu(q, DType::BF16, "attention q");
  on_gpu(k_cache, DType::BF16, "attention k_cache");
  on_gpu(v_cache, DType::BF16, "attention v_cache");
  on_gpu(out, DType::BF16, "attention out");
  int64_t T = q.dim(0), nh = q.dim(1), d = q.dim(2), nkv = k_cache.dim(1);
  E3_ARG(nh % nkv == 0 && d <= 256 && T == L.num_tokens, "attention: " + q.describe() + " over " + k_cache.describe());
  expect_shape(out, {T, nh, d}, "attention out");
  e3k::AttentionArgs a{bf(q), bf(k_cache), bf(v_cache), L.q_start.ptr<int32_t>(), L.kv_len.ptr<int32_t>(),
                       L.page_table.ptr<int32_t>(), L.tree_mask.defined() ? L.tree_mask.ptr<int64_t>() : nullptr,
                       L.tree_base.defined() ? L.tree_base.ptr<int32_t>() : nullptr,
                       bf(out), L.num_seqs, int(T), int(nh), int(nkv), int(d), L.page_size, L.max_pages, L.max_q_len,
                       L.max_kv_len, scale, sm_count_, nullptr, attention_splits_};
  a.workspace = workspace(attn_ws_, e3k::attention_workspace_floats(a));
  return a;
}

void CudaOps::qkv_rope_store(const QkvRotation& in, const AttentionLayout& layout, const Tensor& q_out,
                             const Tensor& k_cache, const Tensor& v_cache) {
  check(e3k::qkv_rope_store(rope_args(in, layout, q_out, k_cache, v_cache), stream_), "qkv_rope_store");
}

void CudaOps::attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionLayout& L,
                        float scale, const Tensor& out) {
  check(e3k::attention(attention_args(q, k_cache, v_cache, L, scale, out), stream_), "attention");
}

void CudaOps::rope_attention(const QkvRotation& in, const AttentionLayout& layout, const Tensor& q,
                             const Tensor& k_cache, const Tensor& v_cache, float scale, const Tensor& out) {
  const e3k::QkvRopeArgs r = rope_args(in, layout, q, k_cache, v_cache);
  const e3k::AttentionArgs a = attention_args(q, k_cache, v_cache, layout, scale, out);
  if (e3k::rope_attention_fits(a, r)) {
    check(e3k::rope_attention(a, r, stream_), "rope_attention");
    return;
  }
  check(e3k::qkv_rope_store(r, stream_), "qkv_rope_store");
  check(e3k::attention(a, stream_), "attention");
}

void CudaOps::silu_mul(const Tensor& gate_up, const Tensor& out) {
  on_gpu(gate_up, DType::BF16, "silu_mul gate_up");
  on_gpu(out, DType::BF16, "silu_mul out");
  int64_t T = gate_up.dim(0), I = gate_up.dim(1) / 2;
  expect_shape(out, {T, I}, "silu_mul out");
  check(e3k::silu_mul(bf(gate_up), bf(out), int(T), int(I), stream_), "silu_mul");
}

// Measured on the H100 at the Qwen3-4B shapes (bench/results): the GEMV beats cuBLASLt for one
// row (qkv 6.9 vs 15.1 µs, o 7.2 vs 19.0, gate_up 41.5 vs 45.3, down 20.1 vs 23.7, lm_head 249 vs
// 274) and loses at eight (21 vs 14, 21 vs 19, 61 vs 39, 62 vs 24, 427 vs 280).
// On the H200 the skinny kernel wins one row of the mid-sized products, 20M to 64M weights
// (bench/results/kernels-qwen3-4b-h200-2026-12-03-run1.json: Qwen3-4B gate_up 23.7 vs 25.5 µs, down
// with its activation fused), the GEMV the small ones (qkv 8.8 vs 10.6, o 7.3 vs 7.4) and the
// largest, where it streams at the copy bandwidth (in the model, by ncu: 7B gate_up 63.7 vs 66.5 µs,
// lm_head 241 vs 246; decode steps 7B 3.0% and 32B 3.8% faster than with them on the skinny kernel).
constexpr int64_t kSkinnyOneRowWeights[2] = {int64_t(20) << 20, int64_t(64) << 20};

bool CudaOps::use_gemv(int64_t m, int64_t n, int64_t k) const {
  bool fits = m >= 1 && m <= e3k::kGemvMaxM && k % 8 == 0;
  const bool mid = n * k >= kSkinnyOneRowWeights[0] && n * k < kSkinnyOneRowWeights[1] && e3k::skinny_fits(1, int(k));
  return fits && (gemm_path_ == GemmPath::Gemv || (gemm_path_ == GemmPath::Auto && m == 1 && !mid));
}

// Measured on the H200 at the Qwen3-4B shapes, graph-replayed (bench/results, 2026-12-03): with
// K split where its blocks are few, the skinny kernel beats cuBLASLt from 2 to 16 rows (16 rows:
// o 8.4 vs 10.5 µs, gate_up 25.4 vs 30.2, down 15.6 vs 18.2, qkv 10.4 vs 10.8) and loses at 32
// (gate_up 34.9 vs 31.0, lm_head 226 vs 197): each block then reads the 32 rows of x for only 16
// outputs.
bool CudaOps::use_skinny(int64_t m, int64_t k) const {
  if (!e3k::skinny_fits(int(std::min<int64_t>(m, 1 << 20)), int(k))) return false;
  return gemm_path_ == GemmPath::Skinny || (gemm_path_ == GemmPath::Auto && m >= 1 && m <= 16);
}

void CudaOps::gather_rows(const Tensor& x, const Tensor& rows, const Tensor& out) {
  on_gpu(rows, DType::I32, "gather_rows rows");
  E3_ARG(x.device() == Device::CUDA && out.device() == Device::CUDA && x.dtype() == out.dtype() &&
             out.dim(0) == rows.numel() && out.numel() / out.dim(0) == x.numel() / x.dim(0),
         "gather_rows: " + x.describe() + " by " + rows.describe() + " into " + out.describe());
  check(e3k::gather_rows(x.data(), rows.ptr<int32_t>(), out.data(), int(rows.numel()), int64_t(x.nbytes() / x.dim(0)),
                         stream_),
        "gather_rows");
}

void CudaOps::scatter_rows(const Tensor& src, const Tensor& rows, const Tensor& dst) {
  on_gpu(rows, DType::I32, "scatter_rows rows");
  E3_ARG(src.device() == Device::CUDA && dst.device() == Device::CUDA && src.dtype() == dst.dtype() &&
             src.dim(0) == rows.numel() && (src.dim(0) == 0 || src.numel() / src.dim(0) == dst.numel() / dst.dim(0)),
         "scatter_rows: " + src.describe() + " by " + rows.describe() + " into " + dst.describe());
  check(e3k::scatter_rows(src.data(), rows.ptr<int32_t>(), dst.data(), int(rows.numel()),
                          int64_t(dst.nbytes() / dst.dim(0)), stream_),
        "scatter_rows");
}

void CudaOps::topk_softmax(const Tensor& logits, int k, const Tensor& map, const Tensor& probs, const Tensor& ids) {
  on_gpu(logits, DType::F32, "topk_softmax logits");
  on_gpu(probs, DType::F32, "topk_softmax probs");
  on_gpu(ids, DType::I32, "topk_softmax ids");
  int64_t R = logits.dim(0), V = logits.dim(1);
  E3_ARG(k >= 1 && k <= e3k::kTopkMax && k <= V, "topk_softmax: k = " + std::to_string(k) + " (1.." +
                                                    std::to_string(e3k::kTopkMax) + ")");
  expect_shape(probs, {R, k}, "topk_softmax probs");
  expect_shape(ids, {R, k}, "topk_softmax ids");
  if (map.defined()) {
    on_gpu(map, DType::I32, "topk_softmax map");
    E3_ARG(map.numel() == V, "topk_softmax: map " + map.describe() + " for rows of " + std::to_string(V));
  }
  float* partials = workspace(topk_partials_, e3k::topk_workspace_floats(int(R), int(V), k));
  check(e3k::topk_softmax(logits.ptr<float>(), int(R), int(V), k, map.defined() ? map.ptr<int32_t>() : nullptr,
                          probs.ptr<float>(), ids.ptr<int32_t>(), partials, topk_arrivals_.ptr<uint32_t>(), stream_),
        "topk_softmax");
}

void CudaOps::copy(const Tensor& src, const Tensor& dst) {
  check_copy(Device::CUDA, src, dst);
  if (src.nbytes())
    check(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyDeviceToDevice, stream_), "cudaMemcpyAsync");
}

void CudaOps::copy_columns(const Tensor& src, const Tensor& dst, int64_t col) {
  int64_t R = src.dim(0), C = src.numel() / R, D = dst.numel() / dst.dim(0);
  E3_ARG(src.device() == Device::CUDA && dst.device() == Device::CUDA && src.dtype() == dst.dtype() &&
             dst.dim(0) == R && col >= 0 && col + C <= D,
         "copy_columns: " + src.describe() + " into " + dst.describe() + " at column " + std::to_string(col));
  check(e3k::copy_columns(src.data(), dst.data(), int(R), C, D, col, int(dtype_size(src.dtype())), stream_),
        "copy_columns");
}

void CudaOps::argmax(const Tensor& logits, const Tensor& tokens) {
  on_gpu(logits, DType::F32, "argmax logits");
  on_gpu(tokens, DType::I32, "argmax tokens");
  int64_t R = logits.dim(0);
  E3_ARG(tokens.numel() == R, "argmax: one token per row");
  if (!argmax_keys_.defined() || argmax_keys_.numel() < R) {
    if (argmax_keys_.defined()) retired_.push_back(argmax_keys_);  // captured graphs may hold it
    argmax_keys_ = Tensor::empty(Device::CUDA, DType::I64, {std::max<int64_t>(R, 256)});
  }
  check(e3k::argmax(logits.ptr<float>(), tokens.ptr<int32_t>(), argmax_keys_.ptr<unsigned long long>(), int(R),
                    int(logits.dim(1)), stream_),
        "argmax");
}

void CudaOps::sample(const Tensor& logits, const Tensor& params, const Tensor& tokens) {
  on_gpu(logits, DType::F32, "sample logits");
  on_gpu(tokens, DType::I32, "sample tokens");
  int64_t R = logits.dim(0), V = logits.dim(1);
  E3_ARG(params.device() == Device::CUDA && tokens.numel() == R && params.nbytes() == size_t(R) * sizeof(SamplingParams),
         "sample: " + std::to_string(R) + " rows need as many params and tokens");
  check(e3k::sample(logits.ptr<float>(), static_cast<const SamplingParams*>(params.data()), tokens.ptr<int32_t>(),
                    int(R), int(V), stream_),
        "sample");
}

void CudaOps::fill_normal(const Tensor& t, uint64_t seed, float mean, float std) {
  on_gpu(t, DType::BF16, "fill_normal");
  check(e3k::fill_normal(bf(t), t.numel(), seed, mean, std, stream_), "fill_normal");
}

void CudaOps::tree_expand(const TreeState& t, int level, const Tensor& probs, const Tensor& ids, const Tensor& tokens,
                          const Tensor& mask, const Tensor& parent_rows, const RowGather& states) {
  int64_t B = check_tree_expand(Device::CUDA, t, level, probs, ids, tokens, mask, parent_rows, states);
  e3k::RowCopy copy;
  if (states.dst.defined()) {
    copy = {states.src.data(), states.dst.data(), int64_t(states.dst.nbytes() / size_t(states.dst.dim(0)))};
    E3_ARG(copy.row_bytes % 16 == 0, "tree_expand states: rows of " + std::to_string(copy.row_bytes) +
                                         " bytes (the CUDA copy takes multiples of 16)");
  }
  check(e3k::tree_expand(tree_args(t), int(B), level, probs.ptr<float>(), ids.ptr<int32_t>(), int(probs.dim(1)),
                         opt<int32_t>(tokens), opt<int64_t>(mask), opt<int32_t>(parent_rows), copy, stream_),
        "tree_expand");
}

void CudaOps::tree_build(const TreeState& t, const Tensor& roots, const Tensor& committed, const Tensor& tokens,
                         const Tensor& positions, const Tensor& mask, const Tensor& parent) {
  int64_t N = check_tree_build(Device::CUDA, t, roots, committed, tokens, positions, mask, parent);
  check(e3k::tree_build(tree_args(t), int(roots.numel()), int(N), roots.ptr<int32_t>(), committed.ptr<int32_t>(),
                        tokens.ptr<int32_t>(), positions.ptr<int32_t>(), mask.ptr<int64_t>(), parent.ptr<int32_t>(),
                        stream_),
        "tree_build");
}

void CudaOps::tree_accept_greedy(const Tensor& tokens, const Tensor& parent, const Tensor& argmax, const Tensor& path,
                                 const Tensor& accepted, const Tensor& bonus) {
  int64_t B = check_tree_accept(Device::CUDA, tokens, parent, argmax, path, accepted, bonus);
  check(e3k::tree_accept_greedy(int(B), int(tokens.numel() / B), int(path.dim(1)), tokens.ptr<int32_t>(),
                                parent.ptr<int32_t>(), argmax.ptr<int32_t>(), path.ptr<int32_t>(),
                                accepted.ptr<int32_t>(), bonus.ptr<int32_t>(), stream_),
        "tree_accept_greedy");
}

void CudaOps::tree_accept_sampled(const Tensor& tokens, const Tensor& parent, const Tensor& logits, const Tensor& params,
                                  const Tensor& path, const Tensor& accepted, const Tensor& bonus) {
  int64_t B = check_tree_accept_sampled(Device::CUDA, tokens, parent, logits, params, path, accepted, bonus);
  check(e3k::tree_accept_sampled(int(B), int(tokens.numel() / B), int(path.dim(1)), tokens.ptr<int32_t>(),
                                 parent.ptr<int32_t>(), logits.ptr<float>(), int(logits.dim(1)),
                                 static_cast<const SamplingParams*>(params.data()), path.ptr<int32_t>(),
                                 accepted.ptr<int32_t>(), bonus.ptr<int32_t>(), stream_),
        "tree_accept_sampled");
}

void CudaOps::tree_commit(const Tensor& tokens, const Tensor& path, const Tensor& accepted, const Tensor& bonus,
                          const Tensor& out_tokens, const Tensor& feature_rows, const Tensor& last_rows) {
  int64_t B = check_tree_commit(Device::CUDA, tokens, path, accepted, bonus, out_tokens, feature_rows, last_rows);
  check(e3k::tree_commit(int(B), int(tokens.numel() / B), int(path.dim(1)), tokens.ptr<int32_t>(), path.ptr<int32_t>(),
                         accepted.ptr<int32_t>(), bonus.ptr<int32_t>(), out_tokens.ptr<int32_t>(),
                         feature_rows.ptr<int32_t>(), last_rows.ptr<int32_t>(), stream_),
        "tree_commit");
}

void CudaOps::tree_advance(const Tensor& committed, const Tensor& accepted, const Tensor& bonus,
                           const Tensor& next_committed, const Tensor& next_roots) {
  int64_t B = check_tree_advance(Device::CUDA, committed, accepted, bonus, next_committed, next_roots);
  check(e3k::tree_advance(int(B), committed.ptr<int32_t>(), accepted.ptr<int32_t>(), bonus.ptr<int32_t>(),
                          next_committed.ptr<int32_t>(), next_roots.ptr<int32_t>(), stream_),
        "tree_advance");
}

void CudaOps::step_layouts(const Tensor& committed, const Tensor& page_table, int page_size, const std::vector<StepLayout>& steps) {
  int64_t B = 0;
  for (const StepLayout& st : steps) B = check_step_layout(Device::CUDA, committed, page_table, page_size, st);
  for (size_t s0 = 0; s0 < steps.size(); s0 += e3k::kMaxStepLayouts) {
    e3k::StepLayouts batch;
    for (size_t k = s0; k < std::min(steps.size(), s0 + e3k::kMaxStepLayouts); ++k) {
      const StepLayout& st = steps[k];
      batch.step[batch.count++] = {st.q, st.first, st.pos_base, st.pos_step,
                                   st.positions.defined() ? st.positions.ptr<int32_t>() : nullptr,
                                   st.kv_len.ptr<int32_t>(), st.slots.ptr<int32_t>()};
    }
    check(e3k::step_layouts(int(B), committed.ptr<int32_t>(), page_table.ptr<int32_t>(), int(page_table.dim(1)), page_size,
                            batch, stream_),
          "step_layouts");
  }
}

void CudaOps::kv_compact(const Tensor& pool, const Tensor& page_table, int page_size, const Tensor& committed,
                         const Tensor& path, const Tensor& accepted) {
  int64_t B = check_kv_compact(Device::CUDA, pool, page_table, page_size, committed, path, accepted);
  int64_t planes = pool.dim(0), slots = pool.dim(1);
  check(e3k::kv_compact(pool.data(), int(planes), slots, int64_t(pool.nbytes()) / (planes * slots),
                        page_table.ptr<int32_t>(), int(page_table.dim(1)), page_size, int(B), int(path.dim(1)),
                        committed.ptr<int32_t>(), path.ptr<int32_t>(), accepted.ptr<int32_t>(), stream_),
        "kv_compact");
}

}  // namespace e3
