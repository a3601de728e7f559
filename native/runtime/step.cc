#include "runtime/step.h"

#include <cstring>

#include "runtime/error.h"

namespace e3 {

Executor::Executor(std::unique_ptr<Ops> backend, QwenConfig cfg, QwenWeights weights, const ExecutorOptions& o)
    : ops_(std::move(backend)), model_(*ops_, std::move(cfg), std::move(weights), o.max_tokens, o.max_logit_rows),
      graphs_(o.graphs && ops_->device() == Device::CUDA), scratch_page_(o.num_pages) {
  Ops& ops = *ops_;
  const QwenConfig& c = model_.config();
  E3_ARG(o.num_pages > 0, "the KV cache needs at least one page");
  kv_ = KvCache::allocate(ops.device(), ops.act_dtype(), c.layers, o.num_pages + 1, o.page_size, c.kv_heads, c.head_dim);
  E3_ARG(o.max_logit_rows > 0, "maxLogitRows must be positive");
  logits_ = Tensor::empty(ops.device(), DType::F32, {std::min(o.max_logit_rows, o.max_tokens), c.vocab});
  if (!c.capture_layers.empty())
    hidden_ = Tensor::empty(ops.device(), ops.act_dtype(), {o.max_tokens, int64_t(c.capture_layers.size()) * c.hidden});
  sampled_ = Tensor::empty(ops.device(), DType::I32, {o.max_tokens});
}

void Executor::validate(const HostStep& s) const {
  const QwenConfig& c = model_.config();
  size_t T = s.tokens.size(), S = s.kv_len.size(), R = s.logit_rows.size();
  E3_ARG(T >= 1 && int(T) <= model_.max_tokens(), "a step needs 1.." + std::to_string(model_.max_tokens()) +
                                                      " tokens, got " + std::to_string(T));
  E3_ARG(s.positions.size() == T, "positions must have one entry per token");
  E3_ARG(S >= 1 && s.q_start.size() == S + 1, "qStart must have one entry more than kvLen");
  E3_ARG(s.q_start[0] == 0 && size_t(s.q_start[S]) == T, "qStart must start at 0 and end at the token count");
  E3_ARG(s.max_pages >= 1 && s.page_table.size() == S * size_t(s.max_pages), "pageTable must be kvLen.length × maxPages");
  E3_ARG(s.tree_mask.empty() || s.tree_mask.size() == T, "treeMask must have one entry per token");
  for (size_t t = 0; t < T; ++t) {
    E3_ARG(s.tokens[t] >= 0 && s.tokens[t] < c.vocab, "token " + std::to_string(s.tokens[t]) + " at index " +
                                                         std::to_string(t) + " is outside the vocabulary of " +
                                                         std::to_string(c.vocab));
    E3_ARG(s.positions[t] >= 0, "negative position at index " + std::to_string(t));
  }
  for (size_t i = 0; i < S; ++i) {
    int q_len = s.q_start[i + 1] - s.q_start[i];
    std::string seq = "sequence " + std::to_string(i);
    E3_ARG(q_len >= 1, seq + " has no new tokens");
    E3_ARG(s.kv_len[i] >= q_len && s.kv_len[i] <= s.max_pages * kv_.page_size,
           seq + ": context length " + std::to_string(s.kv_len[i]) + " does not fit its " + std::to_string(q_len) +
               " new tokens and " + std::to_string(s.max_pages) + " pages of " + std::to_string(kv_.page_size));
    for (int p = 0; p < (s.kv_len[i] + kv_.page_size - 1) / kv_.page_size; ++p) {
      int page = s.page_table[i * size_t(s.max_pages) + size_t(p)];
      E3_ARG(page >= 0 && page < scratch_page_, seq + ": page " + std::to_string(page) + " outside the pool of " +
                                                    std::to_string(scratch_page_));
    }
    if (!s.tree_mask.empty()) {
      E3_ARG(q_len <= 64, seq + ": a tree mask covers at most 64 new tokens, got " + std::to_string(q_len));
      for (int j = 0; j < q_len; ++j) {
        uint64_t m = uint64_t(s.tree_mask[size_t(s.q_start[i] + j)]);
        // Nodes come in topological order: each sees itself and only earlier nodes.
        E3_ARG((j == 63 || (m >> (j + 1)) == 0) && ((m >> j) & 1u),
               seq + ": tree mask of new token " + std::to_string(j) + " must see itself and only earlier tokens");
      }
    }
  }
  for (size_t r = 0; r < R; ++r)
    E3_ARG(s.logit_rows[r] >= 0 && size_t(s.logit_rows[r]) < T, "logit row " + std::to_string(s.logit_rows[r]) +
                                                                    " is not a token of this step");
  E3_ARG(int64_t(R) <= logits_.dim(0), std::to_string(R) + " logit rows asked for; this model computes at most " +
                                           std::to_string(logits_.dim(0)) + " per step");
  E3_ARG(s.sampling.empty() || s.sampling.size() == R, "sampling needs one entry per logit row");
  E3_ARG(s.feedback.empty() || s.feedback.size() == T, "feedback must have one entry per token");
  for (size_t t = 0; t < s.feedback.size(); ++t)
    E3_ARG(s.feedback[t] >= 0 && s.feedback[t] < feedable_rows_,
           "feedback row " + std::to_string(s.feedback[t]) + " at index " + std::to_string(t) +
               (feedable_rows_ ? " is not a row the previous step sampled (it sampled " + std::to_string(feedable_rows_) + ")"
                               : ": the previous call on this model was not a step that sampled"));
  E3_ARG(!s.want_hidden || hidden_.defined(), "hidden states were asked for but the model captures no layers");
  E3_ARG(!s.want_hidden || !feature_store_.defined(),
         "hidden states were asked for, but a model with a draft keeps them for the draft: ask a model without one");
}

namespace {

constexpr int kBatchBuckets[] = {1, 2, 4, 8, 12, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256};

}  // namespace

int Executor::batch_bucket(int batch) {
  const int* b = std::lower_bound(std::begin(kBatchBuckets), std::end(kBatchBuckets), batch);
  return b == std::end(kBatchBuckets) ? -1 : *b;
}

int Executor::round_up_pow2(int x, int lo) {
  int p = lo;
  while (p < x) p *= 2;
  return p;
}

StepTensors Executor::prepare(const HostStep& s) { return with_outputs(inputs_.upload_step(*ops_, s, kv_.page_size)); }

StepTensors Executor::with_outputs(StepTensors io) const {
  io.logits = logits_.rows(0, io.logit_rows.numel());
  if (hidden_.defined()) io.hidden = hidden_.rows(0, io.tokens.numel());
  return io;
}

void Executor::compute(const StepTensors& io, Sampling sampling) {
  feedable_rows_ = 0;  // sampled_ is rewritten: what launch() left there is gone
  model_.forward(io, kv_);
  Tensor out = sampled_.rows(0, io.logits.dim(0));
  if (sampling == Sampling::Greedy) ops_->argmax(io.logits, out);
  else if (sampling == Sampling::Draw) ops_->sample(io.logits, io.sampling, out);
}

void Executor::keep_features(const Tensor& store) {
  E3_ARG(hidden_.defined() && store.dim(0) == int64_t(kv_.num_pages) * kv_.page_size && store.dim(1) == hidden_.dim(1) &&
             store.dtype() == hidden_.dtype(),
         "the feature store needs one row of the captured hidden states per KV cache row");
  feature_store_ = store;
}

void Executor::compute_step(const StepTensors& io, Sampling sampling) {
  if (!feature_store_.defined()) return compute(io, sampling);
  StepTensors kept = io;  // the norms write the features straight to the tokens' cache rows
  kept.hidden = feature_store_;
  kept.hidden_rows = io.layout.slots;
  compute(kept, sampling);
}

Executor::Sampling Executor::sampling_of(const HostStep& s) {
  if (s.sampling.empty()) return Sampling::None;
  for (const SamplingParams& p : s.sampling)
    if (p.temperature > 0) return Sampling::Draw;
  return Sampling::Greedy;
}

void Executor::feed(const StepTensors& io) {
  if (io.feedback.defined()) ops_->gather_rows(sampled_, io.feedback, io.tokens);
}

std::unique_ptr<PendingStep> Executor::launch(const HostStep& s) {
  validate(s);
  ++uses_;
  bool decode = graphs_ && s.tree_mask.empty() && !s.sampling.empty() && s.q_start.back() == int(s.kv_len.size()) &&
                s.logit_rows.size() == s.kv_len.size();
  for (size_t i = 0; decode && i < s.logit_rows.size(); ++i) decode = s.logit_rows[i] == int(i);
  auto p = std::make_unique<PendingStep>();
  if (decode && batch_bucket(int(s.kv_len.size())) > 0 &&
      int(s.kv_len.size()) <= logits_.dim(0) &&
      int(s.kv_len.size()) <= model_.max_tokens()) {
    run_graph(s, p->out);
  } else {
    StepTensors io = prepare(s);
    if (s.want_timing) ops_->timer_start();
    feed(io);
    compute_step(io, sampling_of(s));
    if (s.want_timing) p->out.device_ms = ops_->timer_stop_ms();
  }
  feedable_rows_ = s.sampling.empty() ? 0 : int(s.logit_rows.size());
  read_back(s, *p);
  return p;
}

// A decode step (one new token and one sample per sequence) padded to a batch bucket, replayed
// from a graph captured the first time its (batch, context, page-table) bucket is seen. Padding
// sequences decode token 0 into the scratch page past the pool, which no sequence owns.
void Executor::run_graph(const HostStep& s, StepResult& out) {
  int S = int(s.kv_len.size());
  int B = batch_bucket(S);
  B = std::min({B, model_.max_tokens(), int(logits_.dim(0))});
  int max_kv = *std::max_element(s.kv_len.begin(), s.kv_len.end());
  int kb = round_up_pow2(max_kv, 256);
  int width = round_up_pow2(std::max(s.max_pages, (kb + kv_.page_size - 1) / kv_.page_size), 1);
  HostStep p;
  p.tokens = s.tokens;
  p.positions = s.positions;
  p.kv_len = s.kv_len;
  p.sampling = s.sampling;
  p.feedback = s.feedback;
  if (!p.feedback.empty()) p.feedback.resize(size_t(B), 0);  // padding rows take any sampled token
  p.tokens.resize(size_t(B), 0);
  p.positions.resize(size_t(B), 0);
  p.kv_len.resize(size_t(B), 1);
  p.sampling.resize(size_t(B), SamplingParams{0, 0, 1, 0, 0, 0});
  p.q_start.resize(size_t(B) + 1);
  p.logit_rows.resize(size_t(B));
  for (int i = 0; i <= B; ++i) p.q_start[size_t(i)] = i;
  for (int i = 0; i < B; ++i) p.logit_rows[size_t(i)] = i;
  p.max_pages = width;
  p.page_table.assign(size_t(B) * width, scratch_page_);
  for (int i = 0; i < S; ++i)
    std::copy_n(s.page_table.begin() + size_t(i) * s.max_pages, s.max_pages, p.page_table.begin() + size_t(i) * width);
  Sampling mode = sampling_of(p);
  GraphKey key{B, kb, width, mode, !p.feedback.empty()};
  auto step = [&](const StepTensors& io) {
    feed(io);
    compute_step(io, mode);
  };
  auto it = graphs_by_key_.find(key);
  if (it == graphs_by_key_.end()) {
    // A new bucket's first step runs eagerly (sizing workspaces and plans before capture), then is
    // recorded for the next ones.
    auto inputs = std::make_unique<UploadArena>();
    StepTensors io = with_outputs(inputs->upload_step(*ops_, p, kv_.page_size, kb));  // the graph serves contexts up to kb
    if (s.want_timing) ops_->timer_start();
    step(io);
    if (s.want_timing) out.device_ms = ops_->timer_stop_ms();
    int id = ops_->capture([&] { step(io); });
    graphs_by_key_.emplace(key, GraphEntry{std::move(inputs), id});
    out.captured = true;
    return;
  }
  it->second.inputs->upload_step(*ops_, p, kv_.page_size, kb);
  if (s.want_timing) ops_->timer_start();
  ops_->replay(it->second.graph);
  if (s.want_timing) out.device_ms = ops_->timer_stop_ms();
}

void Executor::read_back(const HostStep& s, PendingStep& p) {
  const QwenConfig& c = model_.config();
  size_t T = s.tokens.size(), R = s.logit_rows.size();
  StepResult& out = p.out;
  std::vector<Ops::HostRead> reads;
  if (!s.sampling.empty()) {
    out.tokens.resize(R);
    reads.push_back({sampled_, out.tokens.data(), R * 4});
  }
  if (s.want_logits) {
    out.logits.resize(R * size_t(c.vocab));
    reads.push_back({logits_, out.logits.data(), out.logits.size() * 4});
  }
  if (s.want_hidden) {
    Tensor h = hidden_.rows(0, int64_t(T));
    out.hidden.resize(size_t(h.numel()));
    p.hidden_dtype = h.dtype();
    if (h.dtype() == DType::F32) {
      reads.push_back({h, out.hidden.data(), h.nbytes()});
    } else {
      p.raw_hidden.resize(size_t(h.numel()));
      reads.push_back({h, p.raw_hidden.data(), h.nbytes()});
    }
  }
  if (!reads.empty()) p.read = ops_->download_async(reads);
}

StepResult Executor::finish(PendingStep& p) {
  if (p.read) p.read->wait();
  if (!p.raw_hidden.empty())
    convert_elements(p.raw_hidden.data(), p.hidden_dtype, p.out.hidden.data(), DType::F32, p.raw_hidden.size());
  return std::move(p.out);
}

}  // namespace e3
