// EAGLE-3 speculative decoding on one backend: the target executor, the draft head with its own
// paged KV cache (sharing the target's page tables), and per-slot draft state kept between rounds.
// A round drafts a tree, verifies it with one target forward, accepts, compacts the KV cache and
// extends the draft over the accepted tokens (eagle3-reference.md §3–4). Every step of a round
// stays on the device: the host uploads the round's plan once and reads its tokens once, and a
// round replays a graph captured per (batch bucket, tree shape, context bucket, sampling). The
// steps' cache layouts are derived on the device from the committed lengths, so that a round can
// be chained: launched before the previous one's tokens are read, on the lengths and roots that
// round's acceptance left on the device.
#pragma once
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "runtime/draft_model.h"
#include "runtime/spec_tree.h"
#include "runtime/step.h"

namespace e3 {

// A target prefill step (with feature capture) followed by the draft extend over the same tokens;
// or, with stored_features, the draft alone over tokens that plain steps already ran (the draft
// catching up), its features read from where those steps kept them.
struct HostSpecPrefill {
  HostStep step;                       // the target step; its logit rows are the sequences' last tokens
  std::vector<int32_t> slots;          // [S] draft state slot of each sequence
  std::vector<int32_t> next_tokens;    // [T] token at context position p + 1 for each new token p;
                                       // -1 = the token this step samples (a prompt's final chunk)
  std::vector<uint8_t> final_chunk;    // [S] the chunk ends the prompt: keep the draft's state
  bool stored_features = false;
};

struct HostSpecRound {
  TreeShape shape;
  std::vector<int32_t> slots, committed, roots;  // [B]: state slot, tokens in the KV cache, last token
  std::vector<int32_t> page_table;               // [B · max_pages]
  int max_pages = 0;
  std::vector<SamplingParams> sampling;          // [B]
  bool profile = false;  // time the phases on the device, each replayed from its own graph (or eager)
  // The same sequences as the previous call, which was a round: committed and roots are where its
  // acceptance left them on the device. `committed` then holds upper bounds (for the page checks
  // and the context bucket) and `roots` is not read.
  bool chained = false;
};

struct SpecRoundResult {
  std::vector<int32_t> tokens;      // accepted drafts then the bonus, sequences one after another
  std::vector<int32_t> counts;      // [B] tokens of each sequence (accepted + 1)
  std::vector<int32_t> drafted;     // [B] tree nodes verified (without the root)
  std::vector<int32_t> trees;       // [B · N] the verified trees' tokens, root first (diagnostics)
  double draft_ms = 0, verify_ms = 0, accept_ms = 0;  // device time per phase, when profiled
  double device_ms = 0;                               // device time of the whole round
  double stage_ms = 0, read_ms = 0;                   // host time checking and uploading it, unpacking its tokens
  bool captured = false;                              // it recorded a new graph (so it was slower)
  double call_ms = 0;                                 // wall time of the whole call on its worker thread
};

// A launched round: its result once finish_round() has waited for the read-back.
struct PendingRound {
  SpecRoundResult res;
  std::unique_ptr<Ops::PendingRead> read;
  std::unique_ptr<Ops::DeviceTimer> timer;  // the whole round, where not profiled
  std::vector<int32_t> out, accepted;       // [B · (S + 1)], [B]
  int steps = 0, nodes = 0;
};

class SpecRunner {
 public:
  SpecRunner(std::unique_ptr<Executor> target, DraftConfig cfg, DraftWeights weights, int slots, int max_tokens);
  Executor& target() { return *target_; }
  int max_topk() const { return kMaxTopk; }
  StepResult prefill(const HostSpecPrefill& p);
  SpecRoundResult round(const HostSpecRound& r) { return finish_round(*launch_round(r)); }
  // round() in two halves, as Executor::launch() and finish(): the next round may launch (chained)
  // before this one's tokens are read.
  std::unique_ptr<PendingRound> launch_round(const HostSpecRound& r);
  static SpecRoundResult finish_round(PendingRound& p);
  // The draft's top-K probabilities and target ids a slot holds for its next round (inspection).
  void candidates(int slot, std::vector<float>& probs, std::vector<int32_t>& ids);

 private:
  static constexpr int kMaxTopk = 16;
  // One round's device inputs and intermediates for B sequences of one tree shape; a captured
  // graph owns one and reads it at fixed addresses.
  struct Round {
    UploadArena inputs;                          // per round, at the same addresses each time
    UploadArena constants;                       // once: the steps' q_start, token_seq and logit rows
    Tensor slots, slot_rows, committed, roots;   // uploaded: [B], [B·K], [B], [B] (chained: see stage())
    Tensor page_table;                           // uploaded: [B, pages], shared by every step
    Tensor sampling;                             // uploaded: SamplingParams [B]
    // S − 1 draft steps, the target's tree step and the draft extend: tokens, masks and layouts
    // written on the device.
    std::vector<StepTensors> drafts;
    StepTensors verify, extend;
    TreeState tree;
    Tensor parent_rows, tree_parent, feature_rows;
    Tensor path, accepted, bonus;                // [B, S], [B], [B]
    int graph = -1;                              // the whole round
    int phase_graphs[3] = {-1, -1, -1};          // its phases on their own, for profiled rounds
  };
  struct RoundKey {
    int batch, steps, topk, nodes, kv_bucket, pages;
    bool sampled;
    bool operator<(const RoundKey& o) const {
      return std::tie(batch, steps, topk, nodes, kv_bucket, pages, sampled) <
             std::tie(o.batch, o.steps, o.topk, o.nodes, o.kv_bucket, o.pages, o.sampled);
    }
  };
  void check_round(const HostSpecRound& r) const;
  // Whether B sequences of shape s fit the draft's and the target's step buffers.
  bool fits(int64_t B, const TreeShape& s) const;
  // Allocates a Round's device-written tensors for B sequences of shape s.
  std::unique_ptr<Round> make_round(int B, const TreeShape& s);
  // Stages r (padded to B sequences of max_pages, every step's context bounded by max_kv) and
  // uploads it; a chained round takes its committed lengths and roots from the last.
  void stage(Round& rb, const HostSpecRound& r, int B, int max_pages, int max_kv);
  // The device work of a round, phase by phase: the draft tree (after the steps' layouts), its
  // verification, acceptance and the commit (KV compaction, draft extend, the next round's
  // inputs). phase(i) runs one of the three.
  void phase(Round& rb, int i, bool sampled);
  void layouts(Round& rb);
  void draft_tree(Round& rb);
  void verify_tree(Round& rb);
  void accept(Round& rb, bool sampled);
  void commit(Round& rb);
  // Enqueues the read-back of the accepted tokens (the round's one synchronisation, in finish_round()).
  void read_back(Round& rb, int B, PendingRound& p);
  // Draft forward over prepared inputs; logits of its logit rows (all_rows: every token, in order)
  // and the states of every token. A recurrent input is used up.
  void draft(const StepTensors& in, const Tensor& features, const Tensor& recurrent, const Tensor& logits,
             const Tensor& states, bool all_rows = false);
  // Keeps, per slot, the draft's top-K after its last extended token and that token's state.
  void store_slots(const Tensor& slots, const Tensor& logits, const Tensor& states, const Tensor& last_rows);

  std::unique_ptr<Executor> target_;
  Ops& ops_;
  DraftModel draft_;
  KvCache draft_kv_;
  int spare_slot_;  // state slot of graph padding sequences
  Tensor cand_probs_, cand_ids_, state_;   // per slot: [slots + 1, kMaxTopk] ×2, [slots + 1, H]
  Tensor logits_, states_, states_next_, features_, topk_probs_, topk_ids_;
  Tensor feature_store_;  // [cache rows, 3·Ht]: features of the tokens plain steps ran
  UploadArena prefill_inputs_;
  // What every round's acceptance leaves for a chained next round: committed lengths and roots
  // [max batch], and which round that was (its slots, and the target's uses() after it).
  Tensor next_committed_, next_roots_;
  std::vector<int32_t> chain_slots_;
  uint64_t chain_uses_ = 0;
  bool chain_valid_ = false;
  std::unique_ptr<Round> eager_;
  std::map<RoundKey, std::unique_ptr<Round>> graphs_;
};

}  // namespace e3
