#include "runtime/spec_runner.h"

#include <algorithm>
#include <chrono>

#include "runtime/error.h"

namespace e3 {

namespace {

// The first n·k elements of a flat buffer as [n, k].
Tensor topk_view(const Tensor& flat, int64_t n, int k) { return flat.rows(0, n * k).view({n, k}); }

void zero(Ops& ops, const Tensor& t) {
  std::vector<char> z(t.nbytes(), 0);
  ops.upload(t, z.data(), z.size());
}

}  // namespace

SpecRunner::SpecRunner(std::unique_ptr<Executor> target, DraftConfig cfg, DraftWeights weights, int slots, int max_tokens)
    : target_(std::move(target)), ops_(target_->ops()), draft_(ops_, cfg, std::move(weights), max_tokens),
      spare_slot_(slots) {
  const QwenConfig& tc = target_->model().config();
  E3_CHECK(tc.capture_layers.size() == 3 && cfg.target_hidden == tc.hidden, DraftMismatch,
           "the target must capture three hidden states of its own width for the draft");
  E3_ARG(slots > 0, "the speculative runner needs at least one slot");
  E3_ARG(cfg.draft_vocab >= kMaxTopk, "the draft vocabulary must hold at least " + std::to_string(kMaxTopk) + " tokens");
  Device dev = ops_.device();
  DType act = ops_.act_dtype();
  draft_kv_ = KvCache::allocate(dev, act, 1, target_->pages() + 1, target_->kv().page_size, cfg.kv_heads, cfg.head_dim);
  // Padding sequences of captured rounds read the spare slot: it must hold valid ids and finite states.
  cand_probs_ = Tensor::empty(dev, DType::F32, {slots + 1, kMaxTopk});
  cand_ids_ = Tensor::empty(dev, DType::I32, {slots + 1, kMaxTopk});
  state_ = Tensor::empty(dev, act, {slots + 1, cfg.hidden});
  for (const Tensor* t : {&cand_probs_, &cand_ids_, &state_}) zero(ops_, *t);
  logits_ = Tensor::empty(dev, DType::F32, {max_tokens, cfg.draft_vocab});
  states_ = Tensor::empty(dev, act, {max_tokens, cfg.hidden});
  states_next_ = Tensor::empty(dev, act, {max_tokens, cfg.hidden});
  features_ = Tensor::empty(dev, act, {max_tokens, 3 * int64_t(cfg.target_hidden)});
  topk_probs_ = Tensor::empty(dev, DType::F32, {int64_t(max_tokens) * kMaxTopk});
  topk_ids_ = Tensor::empty(dev, DType::I32, {int64_t(max_tokens) * kMaxTopk});
  feature_store_ = Tensor::empty(dev, act, {int64_t(target_->kv().num_pages) * target_->kv().page_size, 3 * int64_t(cfg.target_hidden)});
  target_->keep_features(feature_store_);
}

void SpecRunner::draft(const StepTensors& in, const Tensor& features, const Tensor& recurrent, const Tensor& logits,
                       const Tensor& states, bool all_rows) {
  DraftStep d;
  d.all_rows = all_rows;
  d.tokens = in.tokens;
  d.positions = in.positions;
  d.layout = in.layout;
  d.features = features;
  d.recurrent = recurrent;
  d.logit_rows = in.logit_rows;
  d.logits = logits;
  d.state_out = states;
  draft_.forward(d, draft_kv_);
}

void SpecRunner::store_slots(const Tensor& slots, const Tensor& logits, const Tensor& states, const Tensor& last_rows) {
  int64_t n = slots.numel();
  if (n == 0) return;
  Tensor probs = topk_view(topk_probs_, n, kMaxTopk), ids = topk_view(topk_ids_, n, kMaxTopk);
  ops_.topk_softmax(logits, kMaxTopk, draft_.weights().vocab_map, probs, ids);
  ops_.scatter_rows(probs, slots, cand_probs_);
  ops_.scatter_rows(ids, slots, cand_ids_);
  Tensor last = states_next_.rows(0, n);
  ops_.gather_rows(states, last_rows, last);
  ops_.scatter_rows(last, slots, state_);
}

StepResult SpecRunner::prefill(const HostSpecPrefill& p) {
  const HostStep& s = p.step;
  target_->validate(s);
  E3_ARG(s.feedback.empty(), "prefill: feedback is for plain steps");
  size_t T = s.tokens.size(), S = s.kv_len.size();
  E3_ARG(p.slots.size() == S && p.final_chunk.size() == S && p.next_tokens.size() == T,
         "prefill: slots and finalChunk need one entry per sequence, nextTokens one per token");
  // A chunk whose last next token is unknown (-1) samples it: a prompt's final chunk, or a decoding
  // sequence riding along. A final chunk keeps the draft's state for the next round. A sequence
  // whose draft is behind runs the draft over its tokens too but keeps nothing: it catches up
  // later, from the features kept here.
  std::vector<int> sampler(S, -1);
  int samplers = 0;
  for (size_t i = 0; i < S; ++i)
    if (p.next_tokens[size_t(s.q_start[i + 1] - 1)] < 0) sampler[i] = samplers++;
  E3_ARG(s.logit_rows.size() == size_t(samplers) && s.sampling.size() == size_t(samplers),
         "prefill: one sampled logit row for each sequence whose next token this step samples");
  for (int32_t slot : p.slots)
    E3_ARG(slot >= 0 && slot < spare_slot_, "prefill: no draft slot " + std::to_string(slot));
  E3_ARG(!p.stored_features || samplers == 0, "prefill: a draft catching up over stored features samples nothing");
  // The target's result read back once: its draws are also the draft's last next tokens.
  StepResult out;
  if (!p.stored_features) {
    target_->compute_step(target_->prepare(s), Executor::sampling_of(s));
    PendingStep done;
    target_->read_back(s, done);
    out = Executor::finish(done);
  }
  const std::vector<int32_t>& sampled = out.tokens;
  HostStep d = s;
  d.tokens = p.next_tokens;
  d.sampling.clear();
  d.logit_rows.clear();
  std::vector<int32_t> finals;
  for (size_t i = 0; i < S; ++i) {
    int last = s.q_start[i + 1] - 1;
    if (sampler[i] >= 0)
      E3_ARG(s.logit_rows[size_t(sampler[i])] == last, "prefill: a chunk samples after its last token");
    for (int t = s.q_start[i]; t <= last; ++t) {
      int32_t& tok = d.tokens[size_t(t)];
      E3_ARG(tok >= 0 || t == last, "prefill: nextTokens may be -1 only at the end of a chunk");
      if (tok < 0) tok = sampled[size_t(sampler[i])];
      E3_ARG(tok < draft_.config().vocab, "prefill: next token " + std::to_string(tok) + " outside the vocabulary");
    }
    if (p.final_chunk[i]) {
      d.logit_rows.push_back(last);
      finals.push_back(p.slots[i]);
    }
  }
  StepTensors in;
  Tensor slots_t;
  prefill_inputs_.add_step(d, draft_kv_.page_size, in);
  prefill_inputs_.add(finals, &slots_t);
  prefill_inputs_.upload(ops_);
  Tensor logits = logits_.rows(0, int64_t(finals.size()));
  Tensor states = states_.rows(0, int64_t(T));
  // The target's step kept its features in the store, as plain steps did for a draft catching up.
  Tensor feats = features_.rows(0, int64_t(T));
  ops_.gather_rows(feature_store_, in.layout.slots, feats);
  draft(in, feats, Tensor(), logits, states);
  store_slots(slots_t, logits, states, in.logit_rows);
  return out;
}

void SpecRunner::candidates(int slot, std::vector<float>& probs, std::vector<int32_t>& ids) {
  E3_ARG(slot >= 0 && slot < spare_slot_, "no draft slot " + std::to_string(slot));
  probs.resize(kMaxTopk);
  ids.resize(kMaxTopk);
  copy_to_host(cand_probs_.rows(slot, slot + 1), 0, probs.data(), kMaxTopk * 4);
  copy_to_host(cand_ids_.rows(slot, slot + 1), 0, ids.data(), kMaxTopk * 4);
}

void SpecRunner::check_round(const HostSpecRound& r) const {
  check_tree_shape(r.shape);
  const int B = int(r.slots.size()), K = r.shape.topk;
  E3_ARG(B >= 1 && r.committed.size() == size_t(B) && r.roots.size() == size_t(B) && r.sampling.size() == size_t(B) &&
             r.max_pages >= 1 && r.page_table.size() == size_t(B) * r.max_pages,
         "round: slots, committed, roots, sampling need one entry per sequence and pageTable B × maxPages");
  E3_ARG(K <= kMaxTopk && K <= draft_.config().draft_vocab, "round: topk above what the draft keeps");
  E3_ARG(fits(B, r.shape), "round: the batch's tree is larger than the step buffers");
  const int page = draft_kv_.page_size, cap = r.max_pages * page, scratch = tree_scratch(r.shape);
  for (int b = 0; b < B; ++b) {
    std::string seq = "round: sequence " + std::to_string(b);
    E3_ARG(r.slots[size_t(b)] >= 0 && r.slots[size_t(b)] < spare_slot_, seq + " has no draft slot " + std::to_string(r.slots[size_t(b)]));
    E3_ARG(r.roots[size_t(b)] >= 0 && r.roots[size_t(b)] < target_->config().vocab, seq + ": root token outside the vocabulary");
    int L = r.committed[size_t(b)];
    E3_ARG(L >= 1 && L + scratch <= cap, seq + " has no room for its tree in its pages");
    for (int p = 0; p < (L + scratch + page - 1) / page; ++p) {
      int pg = r.page_table[size_t(b) * r.max_pages + size_t(p)];
      E3_ARG(pg >= 0 && pg < target_->pages(), seq + ": page " + std::to_string(pg) + " outside the pool of " +
                                                   std::to_string(target_->pages()));
    }
  }
}

bool SpecRunner::fits(int64_t B, const TreeShape& s) const {
  const int64_t N = s.draft_tokens;
  return B * std::max({N, int64_t(s.topk), int64_t(s.steps) + 1}) <= draft_.max_tokens() &&
         B * N <= target_->model().max_tokens() && B * N <= target_->logits().dim(0);
}

std::unique_ptr<SpecRunner::Round> SpecRunner::make_round(int B, const TreeShape& s) {
  auto rb = std::make_unique<Round>();
  const int K = s.topk, S = s.steps, N = s.draft_tokens, C = tree_candidates(S, K);
  Device dev = ops_.device();
  rb->tree.steps = S;
  rb->tree.topk = K;
  rb->tree.score = Tensor::empty(dev, DType::F32, {B, C});
  rb->tree.token = Tensor::empty(dev, DType::I32, {B, C});
  rb->tree.parent = Tensor::empty(dev, DType::I32, {B, C});
  rb->tree.mask = Tensor::empty(dev, DType::I64, {B, C});
  rb->tree.live = Tensor::empty(dev, DType::I32, {B, K});
  rb->parent_rows = Tensor::empty(dev, DType::I32, {int64_t(B) * K});
  rb->tree_parent = Tensor::empty(dev, DType::I32, {int64_t(B) * N});
  rb->feature_rows = Tensor::empty(dev, DType::I32, {int64_t(B) * (S + 1)});
  rb->path = Tensor::empty(dev, DType::I32, {B, S});
  rb->accepted = Tensor::empty(dev, DType::I32, {B});
  rb->bonus = Tensor::empty(dev, DType::I32, {B});
  rb->drafts.resize(size_t(S - 1));
  return rb;
}

// Host-known parts of every step of the round; tokens, masks, verify positions and the extend's
// logit rows are placeholders the device overwrites. Sequences past r's are padding: the spare
// slot, the scratch page, context 1.
void SpecRunner::stage(Round& rb, const HostSpecRound& r, int Bp, int width, int max_kv) {
  const int B = int(r.slots.size()), K = r.shape.topk, S = r.shape.steps, N = r.shape.draft_tokens;
  std::vector<int32_t> slots(r.slots), committed(r.committed), roots(r.roots), slot_rows;
  slots.resize(size_t(Bp), spare_slot_);
  committed.resize(size_t(Bp), 1);
  roots.resize(size_t(Bp), 0);
  std::vector<int32_t> pages(size_t(Bp) * width, target_->pages());
  for (int b = 0; b < B; ++b)
    std::copy_n(r.page_table.begin() + size_t(b) * r.max_pages, std::min(r.max_pages, width), pages.begin() + size_t(b) * width);
  for (int b = 0; b < Bp; ++b) slot_rows.insert(slot_rows.end(), size_t(K), slots[size_t(b)]);
  // Steps of q tokens per sequence at contexts [L + first, L + first + q); mask(j) = 0: causal.
  auto step = [&](int q, int first, auto&& position, auto&& mask) {
    HostStep s;
    s.max_pages = width;
    s.page_table = pages;
    s.q_start.push_back(0);
    for (int b = 0; b < Bp; ++b) {
      int L = committed[size_t(b)];
      s.q_start.push_back(s.q_start.back() + q);
      s.kv_len.push_back(L + first + q);
      for (int j = 0; j < q; ++j) {
        s.tokens.push_back(0);
        s.positions.push_back(position(L, j));
        int64_t m = mask(j);
        if (m) s.tree_mask.push_back(m);
        s.logit_rows.push_back(int32_t(s.tokens.size()) - 1);
      }
    }
    return s;
  };
  // Every step shares one page table, and the draft steps' mask base is the committed length.
  for (int i = 1; i < S; ++i) {
    HostStep d = step(K, (i - 1) * K, [&](int L, int) { return L - 1 + i; },
                      [&](int j) { return int64_t(1) << ((i - 1) * K + j); });
    rb.inputs.add_step(d, draft_kv_.page_size, rb.drafts[size_t(i - 1)], max_kv, false);
  }
  HostStep v = step(N, 0, [](int L, int) { return L; }, [](int j) { return int64_t(1) << j; });
  rb.inputs.add_step(v, draft_kv_.page_size, rb.verify, max_kv, false);
  HostStep e = step(S + 1, 0, [](int L, int k) { return L + k; }, [](int) { return int64_t(0); });
  e.logit_rows.assign(size_t(Bp), 0);
  rb.inputs.add_step(e, draft_kv_.page_size, rb.extend, max_kv, false);
  rb.inputs.add(pages.data(), pages.size() * 4, DType::I32, {Bp, width}, &rb.page_table);
  rb.inputs.add(slots, &rb.slots);
  rb.inputs.add(slot_rows, &rb.slot_rows);
  rb.inputs.add(committed, &rb.committed);
  rb.inputs.add(roots, &rb.roots);
  std::vector<SamplingParams> sampling(r.sampling);
  sampling.resize(size_t(Bp), SamplingParams{0, 0, 1, 0, 0, 0});
  rb.inputs.add(sampling.data(), sampling.size() * sizeof(SamplingParams), DType::U8,
                {int64_t(sampling.size() * sizeof(SamplingParams))}, &rb.sampling);
  rb.inputs.upload(ops_);
  for (StepTensors& d : rb.drafts) {
    d.layout.page_table = rb.page_table;
    d.layout.tree_base = rb.committed;
  }
  rb.verify.layout.page_table = rb.extend.layout.page_table = rb.page_table;
}

void SpecRunner::draft_tree(Round& rb) {
  const int64_t B = rb.committed.numel();
  const int K = rb.tree.topk, S = rb.tree.steps;
  const Tensor& map = draft_.weights().vocab_map;
  Tensor probs1 = topk_view(topk_probs_, B, kMaxTopk), ids1 = topk_view(topk_ids_, B, kMaxTopk);
  ops_.gather_rows(cand_probs_, rb.slots, probs1);
  ops_.gather_rows(cand_ids_, rb.slots, ids1);
  StepTensors* next = S > 1 ? &rb.drafts[0] : nullptr;
  ops_.tree_expand(rb.tree, 1, probs1, ids1, next ? next->tokens : Tensor(), next ? next->layout.tree_mask : Tensor(), Tensor());
  Tensor recurrent = states_.rows(0, B * K);
  if (S > 1) ops_.gather_rows(state_, rb.slot_rows, recurrent);
  for (int i = 1; i < S; ++i) {
    Tensor logits = logits_.rows(0, B * K), states = states_next_.rows(0, B * K);
    draft(rb.drafts[size_t(i - 1)], Tensor(), recurrent, logits, states, true);  // staged logit rows: every token
    Tensor probs = topk_view(topk_probs_, B * K, K), ids = topk_view(topk_ids_, B * K, K);
    ops_.topk_softmax(logits, K, map, probs, ids);
    next = i + 1 < S ? &rb.drafts[size_t(i)] : nullptr;
    ops_.tree_expand(rb.tree, i + 1, probs, ids, next ? next->tokens : Tensor(), next ? next->layout.tree_mask : Tensor(),
                     next ? rb.parent_rows : Tensor());
    if (next) ops_.gather_rows(states, rb.parent_rows, recurrent);
  }
  ops_.tree_build(rb.tree, rb.roots, rb.committed, rb.verify.tokens, rb.verify.positions, rb.verify.layout.tree_mask,
                  rb.tree_parent);
}

void SpecRunner::verify_tree(Round& rb) {
  target_->compute(target_->with_outputs(rb.verify), Executor::Sampling::Greedy);
}

// Greedy sequences follow the target's argmax; sampled ones (if any) then draw over the logits.
void SpecRunner::accept(Round& rb, bool sampled) {
  const int64_t nodes = rb.verify.tokens.numel();
  ops_.tree_accept_greedy(rb.verify.tokens, rb.tree_parent, target_->sampled().rows(0, nodes), rb.path, rb.accepted, rb.bonus);
  if (sampled)
    ops_.tree_accept_sampled(rb.verify.tokens, rb.tree_parent, target_->logits().rows(0, nodes), rb.sampling, rb.path,
                             rb.accepted, rb.bonus);
}

void SpecRunner::commit(Round& rb) {
  const int64_t B = rb.committed.numel(), S = rb.path.dim(1);
  ops_.tree_commit(rb.verify.tokens, rb.path, rb.accepted, rb.bonus, rb.extend.tokens, rb.feature_rows,
                   rb.extend.logit_rows);
  const KvCache& kv = target_->kv();
  ops_.kv_compact(kv.pool, rb.page_table, kv.page_size, rb.committed, rb.path, rb.accepted);
  Tensor feats = features_.rows(0, B * (S + 1));
  ops_.gather_rows(target_->hidden(), rb.feature_rows, feats);
  Tensor logits = logits_.rows(0, B), states = states_.rows(0, B * (S + 1));
  draft(rb.extend, feats, Tensor(), logits, states);
  store_slots(rb.slots, logits, states, rb.extend.logit_rows);
}

void SpecRunner::phase(Round& rb, int i, bool sampled) {
  if (i == 0) draft_tree(rb);
  else if (i == 1) verify_tree(rb);
  else {
    accept(rb, sampled);
    commit(rb);
  }
}

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

SpecRoundResult SpecRunner::round(const HostSpecRound& r) {
  auto t0 = std::chrono::steady_clock::now();
  check_round(r);
  const int B = int(r.slots.size()), K = r.shape.topk, S = r.shape.steps, N = r.shape.draft_tokens;
  bool sampled = std::any_of(r.sampling.begin(), r.sampling.end(), [](const SamplingParams& p) { return p.temperature > 0; });
  SpecRoundResult res;
  double* phase_ms[3] = {&res.draft_ms, &res.verify_ms, &res.accept_ms};
  // Phase by phase, each timed on the device: replayed from the phase graphs where given, else eager.
  auto profiled = [&](Round& rb, const int* graphs) {
    for (int i = 0; i < 3; ++i) {
      ops_.timer_start();
      if (graphs) ops_.replay(graphs[i]);
      else phase(rb, i, sampled);
      *phase_ms[i] = ops_.timer_stop_ms();
    }
    res.device_ms = res.draft_ms + res.verify_ms + res.accept_ms;
  };
  // Rounds replay a graph per (batch bucket, shape, context bucket, page-table width, sampling).
  int Bp = Executor::batch_bucket(B);
  int max_l = *std::max_element(r.committed.begin(), r.committed.end());
  // Context buckets start at 1024 so that a shape is captured once for short contexts: captures
  // cost tens of rounds, and the speculation policy tries shapes only now and then.
  int kb = Executor::round_up_pow2(max_l + tree_scratch(r.shape), 1024), page = draft_kv_.page_size;
  int width = Executor::round_up_pow2(std::max(r.max_pages, (kb + page - 1) / page), 1);
  if (target_->graphs() && Bp > 0 && fits(Bp, r.shape)) {
    RoundKey key{Bp, S, K, N, kb, width, sampled};
    std::unique_ptr<Round>& rb = graphs_[key];
    if (!rb) rb = make_round(Bp, r.shape);
    stage(*rb, r, Bp, width, kb);
    res.stage_ms = ms_since(t0);
    // A key's first round (or first profiled round) runs eagerly, sizing workspaces, then is recorded.
    if (r.profile) {
      bool ready = rb->phase_graphs[0] >= 0;
      profiled(*rb, ready ? rb->phase_graphs : nullptr);
      if (!ready) {
        for (int i = 0; i < 3; ++i) rb->phase_graphs[i] = ops_.capture([&] { phase(*rb, i, sampled); });
        res.captured = true;
      }
    } else {
      ops_.timer_start();
      auto body = [&] {
        for (int i = 0; i < 3; ++i) phase(*rb, i, sampled);
      };
      if (rb->graph >= 0) {
        ops_.replay(rb->graph);
      } else {
        body();
        rb->graph = ops_.capture(body);
        res.captured = true;
      }
      res.device_ms = ops_.timer_stop_ms();
    }
    finish(*rb, r, res);
    return res;
  }
  if (!eager_ || eager_->committed.numel() != B || eager_->tree.steps != S || eager_->tree.topk != K ||
      eager_->tree_parent.numel() != int64_t(B) * N)
    eager_ = make_round(B, r.shape);
  Round& rb = *eager_;
  stage(rb, r, B, r.max_pages, -1);
  res.stage_ms = ms_since(t0);
  if (r.profile) {
    profiled(rb, nullptr);
  } else {
    ops_.timer_start();
    for (int i = 0; i < 3; ++i) phase(rb, i, sampled);
    res.device_ms = ops_.timer_stop_ms();
  }
  finish(rb, r, res);
  return res;
}

void SpecRunner::finish(Round& rb, const HostSpecRound& r, SpecRoundResult& res) {
  auto t0 = std::chrono::steady_clock::now();
  const int B = int(r.slots.size()), S = r.shape.steps, N = r.shape.draft_tokens;
  std::vector<int32_t> out(static_cast<size_t>(B) * (S + 1)), accepted(static_cast<size_t>(B));
  res.trees.resize(size_t(B) * N);
  ops_.download({{rb.extend.tokens, out.data(), out.size() * 4},
                 {rb.accepted, accepted.data(), accepted.size() * 4},
                 {rb.verify.tokens, res.trees.data(), res.trees.size() * 4}});
  for (int b = 0; b < B; ++b) {
    int m = accepted[size_t(b)];
    E3_CHECK(m >= 0 && m <= S, Internal, "round: " + std::to_string(m) + " tokens accepted from a tree of depth " + std::to_string(S));
    res.tokens.insert(res.tokens.end(), out.begin() + b * (S + 1), out.begin() + b * (S + 1) + m + 1);
    res.counts.push_back(m + 1);
    res.drafted.push_back(N - 1);
  }
  res.read_ms = ms_since(t0);
}

}  // namespace e3
