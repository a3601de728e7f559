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

namespace e3 {

struct HostStep {
  std::vector<int32_t> tokens, positions;  // [T]
  std::vector<int32_t> q_start;            // [S+1], q_start[0] = 0, q_start[S] = T
  std::vector<int32_t> kv_len;             // [S] context length after this step
  std::vector<int32_t> page_table;         // [S · max_pages]
  int max_pages = 0;
  std::vector<int64_t> tree_mask;          // [T] or empty (causal)
  std::vector<int32_t> logit_rows;         // [R]
  std::vector<SamplingParams> sampling;    // [R] or empty (no sampling)
  bool want_logits = false, want_hidden = false, want_timing = false;
};

struct StepResult {
  std::vector<int32_t> tokens;  // [R] when sampling was asked for
  std::vector<float> logits;    // [R · V] when want_logits
  std::vector<float> hidden;    // [T · C·H] when want_hidden
  double device_ms = -1;        // forward + sampling on the device, when want_timing
};

struct ExecutorOptions {
  int max_tokens = 512;  // tokens per step
  int max_logit_rows = 256;  // rows of logits per step (the logits buffer is rows × vocab f32)
  int num_pages = 0, page_size = 16;
  bool graphs = true;    // replay decode steps from captured graphs where the backend can
};

class Executor {
 public:
  Executor(std::unique_ptr<Ops> ops, QwenConfig cfg, QwenWeights weights, const ExecutorOptions& opts);
  StepResult run(const HostStep& step);
  const QwenConfig& config() const { return model_.config(); }
  const KvCache& kv() const { return kv_; }
  int pages() const { return scratch_page_; }

 private:
  struct Staged;
  struct GraphKey {
    int batch, kv_bucket, pages;
    bool operator<(const GraphKey& o) const {
      return std::tie(batch, kv_bucket, pages) < std::tie(o.batch, o.kv_bucket, o.pages);
    }
  };
  struct GraphEntry {
    Tensor arena;  // the inputs the graph reads, at a fixed address
    int graph;
  };
  void validate(const HostStep& s) const;
  Staged stage(const HostStep& s) const;
  StepTensors bind(const Staged& st, const Tensor& arena, bool tree) const;
  void compute(const StepTensors& io, bool sample);
  void run_graph(const HostStep& s, StepResult& out);
  void download(const HostStep& s, StepResult& out);

  std::unique_ptr<Ops> ops_;
  QwenModel model_;
  KvCache kv_;  // the batch layer's pages, plus one scratch page for graph padding
  bool graphs_;
  int scratch_page_;  // index of the scratch page = the pages the batch layer may use
  Tensor logits_, hidden_, sampled_, arena_;  // arena_: eager steps' inputs, grown on demand
  std::map<GraphKey, GraphEntry> graphs_by_key_;
};

}  // namespace e3
