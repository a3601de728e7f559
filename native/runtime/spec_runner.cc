#include "runtime/spec_runner.h"

#include <algorithm>
#include <chrono>
#include <functional>

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
  const int max_batch = std::max(slots, Executor::batch_bucket(slots));
  next_committed_ = Tensor::empty(dev, DType::I32, {max_batch});
  next_roots_ = Tensor::empty(dev, DType::I32, {max_batch});
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
  target_->begin_external();
  chain_valid_ = false;
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
  E3_ARG(B >= 1 && B <= spare_slot_ && r.committed.size() == size_t(B) && r.roots.size() == size_t(B) && r.sampling.size() == size_t(B) &&
             r.max_pages >= 1 && r.page_table.size() == size_t(B) * r.max_pages,
         "round: 1.." + std::to_string(spare_slot_) + " sequences (the draft slots), with one entry each in slots, committed, roots and sampling and pageTable B × maxPages");
  E3_ARG(K <= kMaxTopk && K <= draft_.config().draft_vocab, "round: topk above what the draft keeps");
  E3_ARG(fits(B, r.shape), "round: the batch's tree is larger than the step buffers");
  E3_ARG(!r.chained || (chain_valid_ && r.slots == chain_slots_ && target_->uses() == chain_uses_),
         "round: chained, but the previous call on this model was not a round of the same sequences");
  const int page = draft_kv_.page_size, cap = r.max_pages * page, scratch = tree_scratch(r.shape);
  for (int b = 0; b < B; ++b) {
    std::string seq = "round: sequence " + std::to_string(b);
    E3_ARG(r.slots[size_t(b)] >= 0 && r.slots[size_t(b)] < spare_slot_, seq + " has no draft slot " + std::to_string(r.slots[size_t(b)]));
    E3_ARG(r.chained || (r.roots[size_t(b)] >= 0 && r.roots[size_t(b)] < target_->config().vocab),
           seq + ": root token outside the vocabulary");
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
  // A step of q new tokens per sequence: its device-written inputs, and the constant parts queued.
  auto step = [&](StepTensors& io, int q, bool masked, bool all_rows) {
    const int64_t T = int64_t(B) * q;
    std::vector<int32_t> q_start, token_seq, rows;
    for (int b = 0; b <= B; ++b) q_start.push_back(b * q);
    for (int64_t t = 0; t < T; ++t) token_seq.push_back(int32_t(t / q));
    io.tokens = Tensor::empty(dev, DType::I32, {T});
    io.positions = Tensor::empty(dev, DType::I32, {T});
    AttentionLayout& L = io.layout;
    L.num_seqs = B;
    L.num_tokens = int(T);
    L.page_size = draft_kv_.page_size;
    L.max_q_len = q;
    L.kv_len = Tensor::empty(dev, DType::I32, {B});
    L.slots = Tensor::empty(dev, DType::I32, {T});
    if (masked) L.tree_mask = Tensor::empty(dev, DType::I64, {T});
    rb->constants.add(q_start, &L.q_start);
    rb->constants.add(token_seq, &L.token_seq);
    if (all_rows) {
      for (int64_t t = 0; t < T; ++t) rows.push_back(int32_t(t));
      rb->constants.add(rows, &io.logit_rows);
    } else {
      io.logit_rows = Tensor::empty(dev, DType::I32, {B});  // written by tree_commit
    }
  };
  rb->drafts.resize(size_t(S - 1));
  for (StepTensors& d : rb->drafts) step(d, K, true, true);
  step(rb->verify, N, true, true);
  step(rb->extend, S + 1, false, false);
  rb->constants.upload(ops_);
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
  return rb;
}

// The round's per-sequence inputs, padded to Bp sequences: the spare slot, the scratch page,
// context 1. A chained round's live committed lengths and roots are then overwritten with what the
// last round left (the upload and the copies are ordered on the device).
void SpecRunner::stage(Round& rb, const HostSpecRound& r, int Bp, int width, int max_kv) {
  const int B = int(r.slots.size()), K = r.shape.topk, S = r.shape.steps;
  std::vector<int32_t> slots(r.slots), committed(r.committed), roots(r.roots), slot_rows;
  slots.resize(size_t(Bp), spare_slot_);
  committed.resize(size_t(Bp), 1);
  roots.resize(size_t(Bp), 0);
  std::vector<int32_t> pages(size_t(Bp) * width, target_->pages());
  for (int b = 0; b < B; ++b)
    std::copy_n(r.page_table.begin() + size_t(b) * r.max_pages, std::min(r.max_pages, width), pages.begin() + size_t(b) * width);
  for (int b = 0; b < Bp; ++b) slot_rows.insert(slot_rows.end(), size_t(K), slots[size_t(b)]);
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
  if (r.chained) {
    ops_.copy(next_committed_.rows(0, B), rb.committed.rows(0, B));
    ops_.copy(next_roots_.rows(0, B), rb.roots.rows(0, B));
  }
  // Host-side bound of every step's context (launch configuration).
  auto bind = [&](StepTensors& io) {
    io.layout.page_table = rb.page_table;
    io.layout.max_pages = width;
    io.layout.max_kv_len = max_kv;
  };
  for (int i = 1; i < S; ++i) {
    bind(rb.drafts[size_t(i - 1)]);
    rb.drafts[size_t(i - 1)].layout.tree_base = rb.committed;
  }
  bind(rb.verify);
  bind(rb.extend);
}

// Every step's positions, context lengths and cache slots from the committed lengths (the verify
// step's positions come from tree_build).
void SpecRunner::layouts(Round& rb) {
  const int K = rb.tree.topk, S = rb.tree.steps;
  std::vector<StepLayout> steps;
  auto layout = [&](StepTensors& io, int q, int first, int pos_base, int pos_step, bool positions) {
    steps.push_back({q, first, pos_base, pos_step, positions ? io.positions : Tensor(), io.layout.kv_len, io.layout.slots});
  };
  for (int i = 1; i < S; ++i) layout(rb.drafts[size_t(i - 1)], K, (i - 1) * K, i - 1, 0, true);
  layout(rb.verify, int(rb.verify.tokens.numel() / rb.committed.numel()), 0, 0, 0, false);
  layout(rb.extend, S + 1, 0, 0, 1, true);
  ops_.step_layouts(rb.committed, rb.page_table, draft_kv_.page_size, steps);
}

void SpecRunner::draft_tree(Round& rb) {
  layouts(rb);
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
                     next ? rb.parent_rows : Tensor(), next ? RowGather{states, recurrent} : RowGather{});
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
  ops_.tree_advance(rb.committed, rb.accepted, rb.bonus, next_committed_.rows(0, B), next_roots_.rows(0, B));
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

std::unique_ptr<PendingRound> SpecRunner::launch_round(const HostSpecRound& r) {
  auto t0 = std::chrono::steady_clock::now();
  check_round(r);
  target_->begin_external();
  const int B = int(r.slots.size()), K = r.shape.topk, S = r.shape.steps, N = r.shape.draft_tokens;
  bool sampled = std::any_of(r.sampling.begin(), r.sampling.end(), [](const SamplingParams& p) { return p.temperature > 0; });
  auto p = std::make_unique<PendingRound>();
  p->steps = S;
  p->nodes = N;
  SpecRoundResult& res = p->res;
  double* phase_ms[3] = {&res.draft_ms, &res.verify_ms, &res.accept_ms};
  // Phase by phase, each timed on the device (waiting): replayed from the phase graphs where given, else eager.
  auto profiled = [&](Round& rb, const int* graphs) {
    for (int i = 0; i < 3; ++i) {
      ops_.timer_start();
      if (graphs) ops_.replay(graphs[i]);
      else phase(rb, i, sampled);
      *phase_ms[i] = ops_.timer_stop_ms();
    }
    res.device_ms = res.draft_ms + res.verify_ms + res.accept_ms;
  };
  // The whole round, timed without waiting.
  auto timed = [&](const std::function<void()>& body) {
    p->timer = ops_.start_timer();
    body();
    p->timer->stop();
  };
  // Rounds replay a graph per (batch bucket, shape, context bucket, page-table width, sampling).
  int Bp = Executor::batch_bucket(B);
  // Every step's context stays within the longest committed length plus the round's scratch.
  const int max_kv = *std::max_element(r.committed.begin(), r.committed.end()) + tree_scratch(r.shape);
  // Context buckets start at 1024 so that a shape is captured once for short contexts: captures
  // cost tens of rounds, and the speculation policy tries shapes only now and then.
  int kb = Executor::round_up_pow2(max_kv, 1024), page = draft_kv_.page_size;
  int width = Executor::round_up_pow2(std::max(r.max_pages, (kb + page - 1) / page), 1);
  Round* rb = nullptr;
  if (target_->graphs() && Bp > 0 && fits(Bp, r.shape)) {
    RoundKey key{Bp, S, K, N, kb, width, sampled};
    std::unique_ptr<Round>& slot = graphs_[key];
    if (!slot) slot = make_round(Bp, r.shape);
    rb = slot.get();
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
      auto body = [&] {
        for (int i = 0; i < 3; ++i) phase(*rb, i, sampled);
      };
      if (rb->graph >= 0) {
        timed([&] { ops_.replay(rb->graph); });
      } else {
        timed(body);
        rb->graph = ops_.capture(body);
        res.captured = true;
      }
    }
  } else {
    if (!eager_ || eager_->committed.numel() != B || eager_->tree.steps != S || eager_->tree.topk != K ||
        eager_->tree_parent.numel() != int64_t(B) * N)
      eager_ = make_round(B, r.shape);
    rb = eager_.get();
    stage(*rb, r, B, r.max_pages, max_kv);
    res.stage_ms = ms_since(t0);
    if (r.profile) profiled(*rb, nullptr);
    else timed([&] {
        for (int i = 0; i < 3; ++i) phase(*rb, i, sampled);
      });
  }
  read_back(*rb, B, *p);
  chain_slots_ = r.slots;
  chain_uses_ = target_->uses();
  chain_valid_ = true;
  return p;
}

void SpecRunner::read_back(Round& rb, int B, PendingRound& p) {
  p.out.resize(size_t(B) * (p.steps + 1));
  p.accepted.resize(size_t(B));
  p.res.trees.resize(size_t(B) * p.nodes);
  p.read = ops_.download_async({{rb.extend.tokens, p.out.data(), p.out.size() * 4},
                                {rb.accepted, p.accepted.data(), p.accepted.size() * 4},
                                {rb.verify.tokens, p.res.trees.data(), p.res.trees.size() * 4}});
}

SpecRoundResult SpecRunner::finish_round(PendingRound& p) {
  p.read->wait();
  auto t0 = std::chrono::steady_clock::now();  // host work from here on; the wait above is the device's
  SpecRoundResult& res = p.res;
  if (p.timer) res.device_ms = p.timer->ms();
  const int B = int(p.accepted.size()), S = p.steps;
  for (int b = 0; b < B; ++b) {
    int m = p.accepted[size_t(b)];
    E3_CHECK(m >= 0 && m <= S, Internal, "round: " + std::to_string(m) + " tokens accepted from a tree of depth " + std::to_string(S));
    res.tokens.insert(res.tokens.end(), p.out.begin() + b * (S + 1), p.out.begin() + b * (S + 1) + m + 1);
    res.counts.push_back(m + 1);
    res.drafted.push_back(p.nodes - 1);
  }
  res.read_ms = ms_since(t0);
  return std::move(res);
}

}  // namespace e3
