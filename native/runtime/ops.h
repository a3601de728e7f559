// The operations a model forward is made of, implemented once per backend: CpuOps (the float32
// reference in native/cpu) and CudaOps (the kernels in native/kernels). Model runners are written
// once against this interface. All tensors of one call live on the backend's device; activations
// use act_dtype() (f32 on the CPU, bf16 on CUDA), weights are bf16, logits f32.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "runtime/sampling_params.h"
#include "runtime/tensor.h"

namespace e3 {

// How the new tokens of one step are laid out over sequences and the paged KV cache.
// Token t of sequence s is the (t - q_start[s])-th new token; new tokens are written to the
// cache at context indices [kv_len[s] - q_len, kv_len[s]). With a tree mask, positions before
// the mask base are all visible and the mask decides the rest; the base defaults to the first
// new token, and a draft tree sets it earlier so its nodes see their ancestors from earlier steps.
struct AttentionLayout {
  int num_seqs = 0;
  int num_tokens = 0;
  int page_size = 0;
  int max_pages = 0;     // columns of page_table
  int max_q_len = 0;     // host-side bounds, for launch configuration
  int max_kv_len = 0;
  Tensor q_start;        // i32 [S+1]
  Tensor kv_len;         // i32 [S]
  Tensor page_table;     // i32 [S, max_pages]
  Tensor token_seq;      // i32 [T] sequence of each token
  Tensor slots;          // i32 [T] cache slot (page * page_size + offset) of each new token
  Tensor tree_mask;      // i64 [T] bit j: token sees context position mask_base + j; undefined = causal
  Tensor tree_base;      // i32 [S] mask_base of each sequence; undefined = the first new token
};

// The draft trees of one speculative round on the device: B sequences of shape (S steps, K top-k,
// N verified nodes), every candidate in sglang's flat order (level 1: K nodes, each later level
// K·K children of the previous level's K live nodes), C = K + (S − 1)·K² per sequence.
struct TreeState {
  int steps = 0, topk = 0;
  Tensor score;   // f32 [B, C] product of draft probabilities along the path
  Tensor token;   // i32 [B, C] target-vocabulary id
  Tensor parent;  // i32 [B, C] flat index of the parent, −1 under the root
  Tensor mask;    // i64 [B, C] draft-scratch bits of a live node and its ancestors: bit (l−1)·K + j
                  //     for the node live at position j of level l
  Tensor live;    // i32 [B, K] flat indices of the nodes the next draft step runs on
};

// A model's rotary embedding: rotate-half over the first rotary_dim dims of a head, at inverse
// frequencies theta^(−2i / rotary_dim), or at those of a table (scaled RoPE: linear, llama3, yarn),
// with cos and sin multiplied by scale (yarn's attention factor).
struct Rope {
  int rotary_dim = 0;
  float theta = 10000.0f;
  Tensor inv_freq;  // f32 [rotary_dim / 2] on the op's device, or undefined
  float scale = 1.0f;
};

// A layer's new tokens as its qkv product left them [T, (nh + 2·nkv)·d], and what qkv_rope_store
// applies to them: the optional per-head q/k RMSNorm, the rope at each token's position.
struct QkvRotation {
  Tensor qkv;
  const Tensor* q_norm = nullptr;
  const Tensor* k_norm = nullptr;
  float eps = 1e-6f;
  Tensor positions;
  Rope rope;
};

// Where add_rmsnorm also writes the new residual (a target layer's output, kept for the draft):
// row r into dst[rows[r], c : c + n] (row r when rows is undefined) for each offset c in cols, at
// most three. Fused into the norm so that keeping features costs no launch of its own.
struct ResidualCapture {
  Tensor dst;                 // [D, W]
  Tensor rows;                // i32 [R] or undefined
  std::vector<int64_t> cols;  // column offsets into dst; empty: nothing is captured
};

// Where rmsnorm reads and writes beyond plain rows: row r from x[rows[r]] where `rows` (i32) is
// defined (a gather: an embedding lookup needs no copy of its own), into columns [col, col + n) of
// out's row r (one half of a concatenation needs no column copy).
struct NormPlacement {
  Tensor rows;
  int64_t col = 0;
};
struct NormShape {
  int64_t rows, out_ld;
};
// rmsnorm(x, w, ·, out, at)'s row count and out's row length; throws unless they fit on `device`.
NormShape check_norm(const Tensor& x, const Tensor& w, const Tensor& out, const NormPlacement& at, Device device);

// Rows of src copied to dst by an index another op computes (tree_expand's parent rows).
struct RowGather {
  Tensor src, dst;  // [R, ...] and [B·K, ...], same dtype and row size
};

// One step's cache layout for step_layouts.
struct StepLayout {
  int q = 1, first = 0, pos_base = 0, pos_step = 0;
  Tensor positions;  // i32 [B·q] or undefined
  Tensor kv_len;     // i32 [B]
  Tensor slots;      // i32 [B·q]
};

// Throws unless `rope` fits heads of d dims on `device`.
void check_rope(const Rope& rope, int64_t d, Device device);
// Throws unless copy(src, dst) is valid on `device`.
void check_copy(Device device, const Tensor& src, const Tensor& dst);

// Throws unless `c` can capture `rows` residual rows of n elements on `device` in `act` dtype.
void check_capture(const ResidualCapture& c, int64_t rows, int64_t n, Device device, DType act);

class Ops {
 public:
  virtual ~Ops() = default;
  virtual Device device() const = 0;
  virtual DType act_dtype() const = 0;

  // out[t] = table[ids[t]]
  virtual void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) = 0;
  // Row-wise RMSNorm over rows of n = w.dim(-1) elements. w is [n], or [G, n] for G interleaved
  // groups (row r uses w[r % G]: EAGLE-3.1's per-feature fc_norm over [T, G·n]; not gathered).
  // Rows gathered and written into columns as `at` says (a gather index outside x: undefined on CUDA).
  virtual void rmsnorm(const Tensor& x, const Tensor& w, float eps, const Tensor& out, const NormPlacement& at = {}) = 0;
  // residual += x; out = rmsnorm(residual); the new residual also written where `capture` says
  virtual void add_rmsnorm(const Tensor& residual, const Tensor& x, const Tensor& w, float eps, const Tensor& out,
                           const ResidualCapture& capture = {}) = 0;
  // out[T, N] = x[T, K] · w[N, K]ᵀ (+ bias[N]); out may be f32 (logits) or act dtype.
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out) = 0;
  // Splits fused qkv [T, (nh + 2·nkv)·d] into q/k/v heads, applies the optional per-head RMSNorm
  // (Qwen3 q_norm/k_norm), the rope at positions[t], writes q to q_out [T, nh, d] and k, v to the
  // cache at layout.slots.
  virtual void qkv_rope_store(const QkvRotation& in, const AttentionLayout& layout, const Tensor& q_out,
                              const Tensor& k_cache, const Tensor& v_cache) = 0;
  // out[T, nh, d] = softmax(q kᵀ · scale + mask) v over each token's visible context.
  // k_cache / v_cache: [num_pages · page_size, nkv, d].
  virtual void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                         const AttentionLayout& layout, float scale, const Tensor& out) = 0;
  // qkv_rope_store(in → q, k_cache, v_cache) then attention(q → out): fused where the backend can
  // (CUDA at decode shapes, where q is then left unwritten).
  virtual void rope_attention(const QkvRotation& in, const AttentionLayout& layout, const Tensor& q,
                              const Tensor& k_cache, const Tensor& v_cache, float scale, const Tensor& out);
  // out[T, I] = silu(gate_up[:, :I]) * gate_up[:, I:]
  virtual void silu_mul(const Tensor& gate_up, const Tensor& out) = 0;
  // out[T, N] = silu_mul(gate_up) · w[N, I]ᵀ: the MLP's down product over its activation, fused
  // where the backend can; act [T, I] holds the activation where it cannot.
  virtual void swiglu_linear(const Tensor& gate_up, const Tensor& w, const Tensor& act, const Tensor& out);
  // out[r] = x[rows[r]]
  virtual void gather_rows(const Tensor& x, const Tensor& rows, const Tensor& out) = 0;
  // dst[rows[r]] = src[r]
  virtual void scatter_rows(const Tensor& src, const Tensor& rows, const Tensor& dst) = 0;
  // Softmax of each f32 logits row [R, V], then its k largest probabilities (descending, ties by
  // lower id) into probs f32 [R, k] and their ids into ids i32 [R, k], mapped through map (i32 [V],
  // draft → target vocabulary) when it is defined.
  virtual void topk_softmax(const Tensor& logits, int k, const Tensor& map, const Tensor& probs, const Tensor& ids) = 0;
  // Level `level` of the trees: level 1 from the draft's top-K (probs/ids [B, ≥K]), a later level
  // from the top-K of each live node (probs/ids [B·K, ≥K]), the best K by score (ties: lower
  // flat index) staying live, in flat order. Writes the next draft step's tokens and masks
  // [B·K] and, from level 2, each live node's parent row among the previous step's B·K rows
  // (parent_rows [B·K]); undefined outputs are skipped. From level 2, where `states` is given, the
  // next step's recurrent states too: states.dst[b·K + j] = states.src[parent_rows[b·K + j]].
  virtual void tree_expand(const TreeState& t, int level, const Tensor& probs, const Tensor& ids,
                           const Tensor& tokens, const Tensor& mask, const Tensor& parent_rows,
                           const RowGather& states = {}) = 0;
  // The verified trees after the last level: under roots[b], the best N − 1 candidates (ties:
  // lower flat index) in flat order, as a verify step's tokens, positions (committed + depth)
  // and masks (bit j: sees node j), and each node's parent node (−1 for the root), all [B·N].
  virtual void tree_build(const TreeState& t, const Tensor& roots, const Tensor& committed, const Tensor& tokens,
                          const Tensor& positions, const Tensor& mask, const Tensor& parent) = 0;
  // Greedy acceptance over verified trees (tokens, parent [B·N]) with the target's argmax at each
  // node: the longest path of children equal to their parent's argmax (path [B, S], its length
  // accepted [B]) and the argmax after it (bonus [B]).
  virtual void tree_accept_greedy(const Tensor& tokens, const Tensor& parent, const Tensor& argmax,
                                  const Tensor& path, const Tensor& accepted, const Tensor& bonus) = 0;
  // Exact tree speculative sampling (eagle3-reference.md §4) for the sequences whose params
  // (SamplingParams bytes [B]) have temperature > 0: at each node one uniform picks a child by the
  // target's filtered probabilities (logits [B·N, V]); on a miss the bonus comes from what the
  // tried children leave. Greedy sequences' path, accepted and bonus are left as they are.
  virtual void tree_accept_sampled(const Tensor& tokens, const Tensor& parent, const Tensor& logits, const Tensor& params,
                                   const Tensor& path, const Tensor& accepted, const Tensor& bonus) = 0;
  // What the accepted paths commit: the draft extend's tokens [B, S + 1] (accepted, bonus, then
  // the bonus again as padding), the verify rows of their target features [B, S + 1] (root,
  // accepted, padded with the last) and the extend row of each sequence's last token [B].
  virtual void tree_commit(const Tensor& tokens, const Tensor& path, const Tensor& accepted, const Tensor& bonus,
                           const Tensor& out_tokens, const Tensor& feature_rows, const Tensor& last_rows) = 0;
  // In every layer of a KV pool [2·layers, slots, …], the entry at context committed + path[k − 1]
  // moves to committed + k for k = 1..accepted (in order: a path only moves entries down).
  virtual void kv_compact(const Tensor& pool, const Tensor& page_table, int page_size, const Tensor& committed,
                          const Tensor& path, const Tensor& accepted) = 0;
  // The next round's inputs where this one's accepted paths leave them: next_committed[b] =
  // committed[b] + accepted[b] + 1 (the root and the accepted nodes are now cached), next_roots[b] =
  // bonus[b]. All i32 [B].
  virtual void tree_advance(const Tensor& committed, const Tensor& accepted, const Tensor& bonus,
                            const Tensor& next_committed, const Tensor& next_roots) = 0;
  // The cache layouts of several steps at once (a round's draft steps, verification and extend, in
  // one launch), from L = committed[b] (i32 [B]) read on the device: for a step of q new tokens per
  // sequence at contexts [L + first, L + first + q), kv_len[b] = L + first + q, slots[b·q + j] the
  // cache slot of context L + first + j under page_table [B, pages], and (when defined)
  // positions[b·q + j] = L + pos_base + j · pos_step.
  virtual void step_layouts(const Tensor& committed, const Tensor& page_table, int page_size,
                            const std::vector<StepLayout>& steps) = 0;
  // dst = src (same dtype and element count), ordered with the backend's other work.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  // dst[:, col : col + src.cols] = src (same rows; dst may be wider)
  virtual void copy_columns(const Tensor& src, const Tensor& dst, int64_t col) = 0;
  // Host bytes into a device tensor, ordered with the backend's other work.
  virtual void upload(const Tensor& dst, const void* src, size_t bytes) = 0;
  // The first `bytes` of each tensor into host memory, once the work issued before is done: one
  // wait for all of them. download_async() only enqueues the copies (later work may run meanwhile);
  // the returned read's wait() blocks until they landed in the host buffers.
  struct HostRead {
    Tensor src;
    void* dst;
    size_t bytes;
  };
  class PendingRead {
   public:
    virtual ~PendingRead() = default;
    virtual void wait() = 0;
  };
  virtual std::unique_ptr<PendingRead> download_async(const std::vector<HostRead>& reads) = 0;
  void download(const std::vector<HostRead>& reads) { download_async(reads)->wait(); }
  // Records the work `body` issues as a replayable graph and returns its id, or -1 where the
  // backend has no graphs (then nothing was recorded and the caller runs eagerly).
  virtual int capture(const std::function<void()>& body) { return -1; }
  virtual void replay(int graph) {}

  // Device time of the work issued between start_timer() and stop(), in ms (events on CUDA, a host
  // clock on the CPU); ms() waits for that work, so later work may be issued before asking.
  class DeviceTimer {
   public:
    virtual ~DeviceTimer() = default;
    virtual void stop() = 0;
    virtual double ms() = 0;
  };
  virtual std::unique_ptr<DeviceTimer> start_timer() = 0;
  // The same, waiting at once: device time between the two calls.
  void timer_start() { timer_ = start_timer(); }
  double timer_stop_ms();
  // t[i] = mean + std · N(0,1) from (seed, i): random weights of real shapes, same on every backend.
  virtual void fill_normal(const Tensor& t, uint64_t seed, float mean, float std) = 0;
  // tokens[r] = argmax of logits[r] (f32 [R, V]), lowest index on ties: greedy rows, many blocks per row.
  virtual void argmax(const Tensor& logits, const Tensor& tokens) = 0;
  // tokens[r] drawn from logits[r] (f32 [R, V]) under params[r] (raw SamplingParams bytes, u8).
  virtual void sample(const Tensor& logits, const Tensor& params, const Tensor& tokens) = 0;

 private:
  std::unique_ptr<DeviceTimer> timer_;
};

// A backend instance of its own (CUDA: its own stream); throws ERR_NO_CUDA_DEVICE where none is usable.
std::unique_ptr<Ops> make_ops(Device d);

}  // namespace e3
