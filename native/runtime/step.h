// One forward step as the TypeScript batch layer plans it (host memory), its validation, and the
// executor that uploads it in one copy, runs the model and samples.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "runtime/kv_cache.h"
#include "runtime/qwen_model.h"
#include "runtime/step_inputs.h"

namespace e3 {

struct StepResult {
  std::vector<int32_t> tokens;  // [R] when sampling was asked for
  std::vector<float> logits;    // [R · V] when want_logits
  std::vector<float> hidden;    // [T · C·H] when want_hidden
  double device_ms = -1;        // forward + sampling on the device, when want_timing
  bool captured = false;        // this step recorded a new graph (so it was slower than usual)
  double call_ms = 0;           // wall time of the whole call on its worker thread
};

struct ExecutorOptions {
  int max_tokens = 512;  // tokens per step
  int max_logit_rows = 256;  // rows of logits per step (the logits buffer is rows × vocab f32)
  int num_pages = 0, page_size = 16;
  bool graphs = true;    // replay decode steps from captured graphs where the backend can
};

// A launched step: its result once finish() has waited for the read-back.
struct PendingStep {
  StepResult out;
  std::unique_ptr<Ops::PendingRead> read;
  std::vector<uint16_t> raw_hidden;  // bf16 hidden states, converted to f32 by finish()
  DType hidden_dtype = DType::F32;
};

class Executor {
 public:
  Executor(std::unique_ptr<Ops> ops, QwenConfig cfg, QwenWeights weights, const ExecutorOptions& opts);
  StepResult run(const HostStep& step) { return finish(*launch(step)); }
  // run() in two halves: launch() uploads the step and enqueues its forward, sampling and
  // read-back; finish() waits for them and touches nothing of the executor's, so the next step
  // may launch meanwhile (with feedback, on this one's tokens still on the device).
  std::unique_ptr<PendingStep> launch(const HostStep& step);
  static StepResult finish(PendingStep& p);

  // Building blocks for the speculative runner, which drives the target step by step.
  Ops& ops() { return *ops_; }
  const QwenModel& model() const { return model_; }
  // Uploads an eager step's inputs (one copy) and binds them; outputs are the executor's buffers.
  // The arena is reused by the next prepare(), so the step must be computed before that.
  StepTensors prepare(const HostStep& s);
  // How a step picks its tokens: not at all, argmax for every row, or draws.
  enum class Sampling { None, Greedy, Draw };
  static Sampling sampling_of(const HostStep& s);
  void compute(const StepTensors& io, Sampling sampling);
  // compute(), the captured states written to the feature store (when keep_features() asked for
  // one) instead of hidden().
  void compute_step(const StepTensors& io, Sampling sampling);
  // From now on run() and compute_step() also keep each token's captured hidden states (the
  // draft's features) in `store` [cache rows, C·H], at the token's KV cache row: a speculative
  // runner's draft can then catch up over plain steps without the target running again.
  void keep_features(const Tensor& store);
  // Input views (staged elsewhere) bound to the executor's output buffers.
  StepTensors with_outputs(StepTensors io) const;
  // Enqueues the read-back of what `s` asked for into p (finish() completes it).
  void read_back(const HostStep& s, PendingStep& p);
  const Tensor& hidden() const { return hidden_; }
  const Tensor& sampled() const { return sampled_; }
  const Tensor& logits() const { return logits_; }
  bool graphs() const { return graphs_; }
  // Calls that used the executor's buffers: steps, and a runner's own work announced by
  // begin_external(). A runner's round chained to its previous one requires that nothing ran between.
  uint64_t uses() const { return uses_; }
  // A runner is about to use the buffers directly: what a step's feedback could take is gone.
  void begin_external() {
    ++uses_;
    feedable_rows_ = 0;
  }
  void validate(const HostStep& s) const;
  const QwenConfig& config() const { return model_.config(); }
  const KvCache& kv() const { return kv_; }
  int pages() const { return scratch_page_; }  // pages the batch layer may use; the next one is scratch
  // Decode batches are padded up to one of a few sizes so that few captured graphs serve them all.
  static int batch_bucket(int batch);
  static int round_up_pow2(int x, int lo);

 private:
  struct GraphKey {
    int batch, kv_bucket, pages;
    Sampling sampling;
    bool feedback;
    bool operator<(const GraphKey& o) const {
      return std::tie(batch, kv_bucket, pages, sampling, feedback) <
             std::tie(o.batch, o.kv_bucket, o.pages, o.sampling, o.feedback);
    }
  };
  struct GraphEntry {
    std::unique_ptr<UploadArena> inputs;  // what the graph reads, at fixed addresses
    int graph;
  };
  void run_graph(const HostStep& s, StepResult& out);
  // The previous step's tokens into this one's inputs (HostStep::feedback).
  void feed(const StepTensors& io);

  std::unique_ptr<Ops> ops_;
  QwenModel model_;
  KvCache kv_;  // the batch layer's pages, plus one scratch page for graph padding
  bool graphs_;
  int scratch_page_;  // index of the scratch page = the pages the batch layer may use
  Tensor logits_, hidden_, sampled_;
  Tensor feature_store_;  // [cache rows, C·H] or undefined
  int feedable_rows_ = 0;
  uint64_t uses_ = 0;  // rows of sampled_ the next step may take as feedback: the last launch()'s
  UploadArena inputs_;  // eager steps' inputs
  std::map<GraphKey, GraphEntry> graphs_by_key_;
};

}  // namespace e3
