#include "runtime/spec_runner.h"

#include <chrono>

#include "runtime/error.h"
#include "runtime/sampling_filter.h"

namespace e3 {

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The first n·k elements of a flat buffer as [n, k].
Tensor topk_view(const Tensor& flat, int64_t n, int k) { return flat.rows(0, n * k).view({n, k}); }

template <class T>
std::vector<T> download(const Tensor& t, int64_t n) {
  std::vector<T> v(static_cast<size_t>(n));
  if (n) copy_to_host(t, 0, v.data(), size_t(n) * sizeof(T));
  return v;
}

// Page-table rows of the given sequences, and the slot-independent parts of a step over them.
HostStep step_over(const HostSpecRound& r, const std::vector<int>& per_seq_tokens) {
  HostStep s;
  s.max_pages = r.max_pages;
  s.page_table = r.page_table;
  s.q_start.push_back(0);
  for (int n : per_seq_tokens) s.q_start.push_back(s.q_start.back() + n);
  return s;
}

}  // namespace

SpecRunner::SpecRunner(std::unique_ptr<Executor> target, DraftConfig cfg, DraftWeights weights, int slots, int max_tokens)
    : target_(std::move(target)), ops_(target_->ops()), draft_(ops_, cfg, std::move(weights), max_tokens) {
  const QwenConfig& tc = target_->model().config();
  E3_CHECK(tc.capture_layers.size() == 3 && cfg.target_hidden == tc.hidden, DraftMismatch,
           "the target must capture three hidden states of its own width for the draft");
  E3_ARG(slots > 0, "the speculative runner needs at least one slot");
  E3_ARG(cfg.draft_vocab >= kMaxTopk, "the draft vocabulary must hold at least " + std::to_string(kMaxTopk) + " tokens");
  Device dev = ops_.device();
  DType act = ops_.act_dtype();
  draft_kv_ = KvCache::allocate(dev, act, 1, target_->pages() + 1, target_->kv().page_size, cfg.kv_heads, cfg.head_dim);
  cand_probs_ = Tensor::empty(dev, DType::F32, {slots, kMaxTopk});
  cand_ids_ = Tensor::empty(dev, DType::I32, {slots, kMaxTopk});
  state_ = Tensor::empty(dev, act, {slots, cfg.hidden});
  logits_ = Tensor::empty(dev, DType::F32, {max_tokens, cfg.draft_vocab});
  states_ = Tensor::empty(dev, act, {max_tokens, cfg.hidden});
  states_next_ = Tensor::empty(dev, act, {max_tokens, cfg.hidden});
  features_ = Tensor::empty(dev, act, {max_tokens, 3 * int64_t(cfg.target_hidden)});
  topk_probs_ = Tensor::empty(dev, DType::F32, {int64_t(max_tokens) * kMaxTopk});
  topk_ids_ = Tensor::empty(dev, DType::I32, {int64_t(max_tokens) * kMaxTopk});
}

// Index vectors go to grow-only buffers reused call after call: device allocations (and the
// synchronising frees) stay out of the rounds. Each call starts again at the first buffer.
Tensor SpecRunner::device_i32(const std::vector<int32_t>& v) {
  if (next_index_ == index_bufs_.size()) index_bufs_.emplace_back();
  Tensor& buf = index_bufs_[next_index_++];
  int64_t n = std::max<int64_t>(1, int64_t(v.size()));
  if (!buf.defined() || buf.numel() < n) buf = Tensor::empty(ops_.device(), DType::I32, {std::max<int64_t>(n, 256)});
  if (!v.empty()) ops_.upload(buf, v.data(), v.size() * 4);
  return buf.rows(0, int64_t(v.size()));
}

void SpecRunner::draft(const HostStep& s, const Tensor& features, const Tensor& recurrent, Tensor& logits, Tensor& states) {
  StepTensors in = draft_inputs_.upload(ops_, s, draft_kv_.page_size);
  DraftStep d;
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

// Keeps, per slot, the draft's top-K after its last extended token and that token's state.
void SpecRunner::store_slots(const std::vector<int32_t>& slots, const Tensor& logits, const Tensor& states,
                             const std::vector<int32_t>& state_rows) {
  int64_t n = int64_t(slots.size());
  if (n == 0) return;
  Tensor probs = topk_view(topk_probs_, n, kMaxTopk), ids = topk_view(topk_ids_, n, kMaxTopk);
  ops_.topk_softmax(logits, kMaxTopk, draft_.weights().vocab_map, probs, ids);
  Tensor slot_t = device_i32(slots);
  ops_.scatter_rows(probs, slot_t, cand_probs_);
  ops_.scatter_rows(ids, slot_t, cand_ids_);
  Tensor last = states_next_.rows(0, n);
  ops_.gather_rows(states, device_i32(state_rows), last);
  ops_.scatter_rows(last, slot_t, state_);
}

StepResult SpecRunner::prefill(const HostSpecPrefill& p) {
  next_index_ = 0;
  const HostStep& s = p.step;
  target_->validate(s);
  size_t T = s.tokens.size(), S = s.kv_len.size();
  E3_ARG(p.slots.size() == S && p.final_chunk.size() == S && p.next_tokens.size() == T,
         "prefill: slots and finalChunk need one entry per sequence, nextTokens one per token");
  size_t finals_n = 0;
  for (uint8_t f : p.final_chunk) finals_n += f != 0;
  E3_ARG(s.logit_rows.size() == finals_n && s.sampling.size() == finals_n,
         "prefill: one sampled logit row for each sequence whose prompt ends in this step");
  StepTensors io = target_->prepare(s);
  target_->compute(io, Executor::sampling_of(s));
  std::vector<int32_t> sampled = download<int32_t>(target_->sampled(), int64_t(finals_n));
  HostStep d = s;
  d.tokens = p.next_tokens;
  d.sampling.clear();
  d.logit_rows.clear();
  std::vector<int32_t> finals, rows;
  for (size_t i = 0; i < S; ++i) {
    int last = s.q_start[i + 1] - 1;
    if (p.final_chunk[i])
      E3_ARG(s.logit_rows[finals.size()] == last, "prefill: a final chunk samples after its last token");
    for (int t = s.q_start[i]; t <= last; ++t) {
      int32_t& tok = d.tokens[size_t(t)];
      E3_ARG(tok >= 0 || (t == last && p.final_chunk[i]), "prefill: nextTokens may be -1 only at the end of a final chunk");
      if (tok < 0) tok = sampled[finals.size()];
      E3_ARG(tok < draft_.config().vocab, "prefill: next token " + std::to_string(tok) + " outside the vocabulary");
    }
    if (p.final_chunk[i]) {
      d.logit_rows.push_back(last);
      finals.push_back(p.slots[i]);
      rows.push_back(last);
    }
  }
  Tensor logits = logits_.rows(0, int64_t(d.logit_rows.size()));
  Tensor states = states_.rows(0, int64_t(T));
  draft(d, target_->hidden().rows(0, int64_t(T)), Tensor(), logits, states);
  store_slots(finals, logits, states, rows);
  StepResult out;
  target_->download(s, out);
  return out;
}

void SpecRunner::candidates(int slot, std::vector<float>& probs, std::vector<int32_t>& ids) {
  E3_ARG(slot >= 0 && slot < cand_probs_.dim(0), "no draft slot " + std::to_string(slot));
  probs.resize(kMaxTopk);
  ids.resize(kMaxTopk);
  copy_to_host(cand_probs_.rows(slot, slot + 1), 0, probs.data(), kMaxTopk * 4);
  copy_to_host(cand_ids_.rows(slot, slot + 1), 0, ids.data(), kMaxTopk * 4);
}

SpecRoundResult SpecRunner::round(const HostSpecRound& r) {
  next_index_ = 0;
  check_tree_shape(r.shape);
  const int B = int(r.slots.size()), K = r.shape.topk, S = r.shape.steps, N = r.shape.draft_tokens;
  E3_ARG(B >= 1 && r.committed.size() == size_t(B) && r.roots.size() == size_t(B) && r.sampling.size() == size_t(B) &&
             r.max_pages >= 1 && r.page_table.size() == size_t(B) * r.max_pages,
         "round: slots, committed, roots, sampling need one entry per sequence and pageTable B × maxPages");
  E3_ARG(K <= kMaxTopk && K <= draft_.config().draft_vocab, "round: topk above what the draft keeps");
  E3_ARG(int64_t(B) * std::max(N, K) <= draft_.max_tokens() && int64_t(B) * N <= target_->model().max_tokens(),
         "round: the batch's tree is larger than the step buffers");
  int cap = r.max_pages * draft_kv_.page_size;
  for (int b = 0; b < B; ++b)
    E3_ARG(r.committed[size_t(b)] >= 1 && r.committed[size_t(b)] + std::max(N, (S - 1) * K + 1) <= cap,
           "round: sequence " + std::to_string(b) + " has no room for its tree in its pages");
  SpecRoundResult res;
  double t0 = now_ms();

  // Level 1 from the state the last extend left in each slot.
  Tensor slot_t = device_i32(r.slots);
  Tensor probs1 = topk_view(topk_probs_, B, kMaxTopk), ids1 = topk_view(topk_ids_, B, kMaxTopk);
  ops_.gather_rows(cand_probs_, slot_t, probs1);
  ops_.gather_rows(cand_ids_, slot_t, ids1);
  std::vector<float> p1 = download<float>(probs1, int64_t(B) * kMaxTopk);
  std::vector<int32_t> i1 = download<int32_t>(ids1, int64_t(B) * kMaxTopk);
  std::vector<Candidates> cand(static_cast<size_t>(B));
  for (int b = 0; b < B; ++b) cand[size_t(b)].start(p1.data() + b * kMaxTopk, i1.data() + b * kMaxTopk, K);

  // Expansion: step i drafts level i + 1 from the K live nodes of level i. Each live node's KV
  // goes to scratch context L + (i − 1)·K + j; its mask sees its ancestors' scratch and itself.
  std::vector<std::vector<int>> scratch(static_cast<size_t>(B));  // node → scratch offset (−1: none)
  Tensor recurrent = states_.rows(0, int64_t(B) * K);
  {
    std::vector<int32_t> rows;
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < K; ++j) rows.push_back(r.slots[size_t(b)]);
    ops_.gather_rows(state_, device_i32(rows), recurrent);
  }
  for (int i = 1; i < S; ++i) {
    HostStep d = step_over(r, std::vector<int>(size_t(B), K));
    for (int b = 0; b < B; ++b) {
      Candidates& c = cand[size_t(b)];
      std::vector<int>& sc = scratch[size_t(b)];
      sc.resize(c.nodes.size(), -1);
      int L = r.committed[size_t(b)];
      d.kv_len.push_back(L + i * K);
      d.tree_base.push_back(L);
      for (int j = 0; j < K; ++j) {
        int node = c.live[size_t(j)];
        sc[size_t(node)] = (i - 1) * K + j;
        int64_t mask = 0;
        for (int a = node; a >= 0; a = c.nodes[size_t(a)].parent) mask |= int64_t(1) << sc[size_t(a)];
        d.tokens.push_back(c.nodes[size_t(node)].token);
        d.positions.push_back(L - 1 + i);
        d.tree_mask.push_back(mask);
        d.logit_rows.push_back(b * K + j);
      }
    }
    Tensor logits = logits_.rows(0, int64_t(B) * K), states = states_next_.rows(0, int64_t(B) * K);
    draft(d, Tensor(), recurrent, logits, states);
    Tensor probs = topk_view(topk_probs_, int64_t(B) * K, K), ids = topk_view(topk_ids_, int64_t(B) * K, K);
    ops_.topk_softmax(logits, K, draft_.weights().vocab_map, probs, ids);
    std::vector<float> ph = download<float>(probs, int64_t(B) * K * K);
    std::vector<int32_t> ih = download<int32_t>(ids, int64_t(B) * K * K);
    std::vector<int32_t> parent_rows;
    for (int b = 0; b < B; ++b) {
      Candidates& c = cand[size_t(b)];
      std::vector<int> before = c.live;
      c.expand(ph.data() + int64_t(b) * K * K, ih.data() + int64_t(b) * K * K, K);
      for (int node : c.live) {
        int parent = c.nodes[size_t(node)].parent, j = 0;
        while (before[size_t(j)] != parent) ++j;
        parent_rows.push_back(b * K + j);
      }
    }
    if (i + 1 < S) ops_.gather_rows(states, device_i32(parent_rows), recurrent);
  }
  std::vector<Tree> trees;
  for (int b = 0; b < B; ++b) {
    trees.push_back(build_tree(cand[size_t(b)], r.roots[size_t(b)], N));
    res.trees.insert(res.trees.end(), trees.back().tokens.begin(), trees.back().tokens.end());
  }
  double t1 = now_ms();
  res.draft_ms = t1 - t0;

  // Verification: one target forward over every tree, argmax (and probabilities when sampling).
  bool sampled = false;
  for (const SamplingParams& sp : r.sampling) sampled |= sp.temperature > 0;
  HostStep v = step_over(r, std::vector<int>(size_t(B), N));
  for (int b = 0; b < B; ++b) {
    const Tree& t = trees[size_t(b)];
    int L = r.committed[size_t(b)];
    v.kv_len.push_back(L + N);
    for (int n = 0; n < N; ++n) {
      v.tokens.push_back(t.tokens[size_t(n)]);
      v.positions.push_back(L + t.depth[size_t(n)]);
      v.tree_mask.push_back(t.mask[size_t(n)]);
      v.logit_rows.push_back(b * N + n);
      v.sampling.push_back(SamplingParams{0, 0, 1, 0, 0, 0});
    }
  }
  v.want_logits = sampled;
  target_->validate(v);
  StepTensors io = target_->prepare(v);
  target_->compute(io, Executor::Sampling::Greedy);
  StepResult vr;
  target_->download(v, vr);
  double t2 = now_ms();
  res.verify_ms = t2 - t1;

  // Acceptance, then compaction of the accepted nodes' KV to consecutive positions.
  int V = target_->model().config().vocab;
  std::vector<int32_t> src_slots, dst_slots, feature_rows;
  HostStep e = step_over(r, {});
  for (int b = 0; b < B; ++b) {
    const Tree& t = trees[size_t(b)];
    const SamplingParams& sp = r.sampling[size_t(b)];
    Acceptance a;
    if (sp.temperature > 0) {
      std::vector<float> probs(static_cast<size_t>(V));
      a = accept_sampled(t, sp, V, [&](int node) {
        const float* l = vr.logits.data() + (int64_t(b) * N + node) * V;
        return filtered_probs(l, V, sp, probs);
      });
    } else {
      a = accept_greedy(t, vr.tokens.data() + int64_t(b) * N);
    }
    int L = r.committed[size_t(b)], m = int(a.path.size());
    auto slot_of = [&](int ctx) {
      return r.page_table[size_t(b) * r.max_pages + size_t(ctx / draft_kv_.page_size)] * draft_kv_.page_size +
             ctx % draft_kv_.page_size;
    };
    feature_rows.push_back(b * N);
    for (int k = 1; k <= m; ++k) {
      int node = a.path[size_t(k - 1)];
      feature_rows.push_back(b * N + node);
      if (node != k) {
        src_slots.push_back(slot_of(L + node));
        dst_slots.push_back(slot_of(L + k));
      }
      res.tokens.push_back(t.tokens[size_t(node)]);
      e.tokens.push_back(t.tokens[size_t(node)]);
    }
    res.tokens.push_back(a.bonus);
    res.counts.push_back(m + 1);
    res.drafted.push_back(N - 1);
    e.tokens.push_back(a.bonus);
    for (int k = 0; k <= m; ++k) e.positions.push_back(L + k);
    e.q_start.push_back(e.q_start.back() + m + 1);
    e.kv_len.push_back(L + m + 1);
    e.logit_rows.push_back(e.q_start.back() - 1);
  }
  if (!src_slots.empty()) {
    Tensor src = device_i32(src_slots), dst = device_i32(dst_slots);
    const KvCache& kv = target_->kv();
    int64_t n = int64_t(src_slots.size()), row = kv.k[0].dim(1) * kv.k[0].dim(2);
    if (!compact_tmp_.defined() || compact_tmp_.dim(0) < n) compact_tmp_ = Tensor::empty(ops_.device(), ops_.act_dtype(), {std::max<int64_t>(n, 64), row});
    Tensor tmp = compact_tmp_.rows(0, n).view({n, kv.k[0].dim(1), kv.k[0].dim(2)});
    for (size_t l = 0; l < kv.k.size(); ++l)
      for (const Tensor* cache : {&kv.k[l], &kv.v[l]}) {
        ops_.gather_rows(*cache, src, tmp);
        ops_.scatter_rows(tmp, dst, *cache);
      }
  }
  // Draft extend over [accepted…, bonus] with the target features of [root, accepted…].
  int64_t T = int64_t(e.tokens.size());
  Tensor feats = features_.rows(0, T);
  ops_.gather_rows(target_->hidden(), device_i32(feature_rows), feats);
  Tensor logits = logits_.rows(0, B), states = states_.rows(0, T);
  draft(e, feats, Tensor(), logits, states);
  std::vector<int32_t> last_rows(e.logit_rows.begin(), e.logit_rows.end());
  store_slots(r.slots, logits, states, last_rows);
  res.accept_ms = now_ms() - t2;
  return res;
}

}  // namespace e3
