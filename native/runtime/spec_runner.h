// EAGLE-3 speculative decoding on one backend: the target executor, the draft head with its own
// paged KV cache (sharing the target's page tables), and per-slot draft state kept between rounds.
// A round drafts a tree, verifies it with one target forward, accepts, compacts the KV cache and
// extends the draft over the accepted tokens (eagle3-reference.md §3–4).
#pragma once
#include <memory>
#include <vector>

#include "runtime/draft_model.h"
#include "runtime/spec_tree.h"
#include "runtime/step.h"

namespace e3 {

// A target prefill step (with feature capture) followed by the draft extend over the same tokens.
struct HostSpecPrefill {
  HostStep step;                       // the target step; its logit rows are the sequences' last tokens
  std::vector<int32_t> slots;          // [S] draft state slot of each sequence
  std::vector<int32_t> next_tokens;    // [T] token at context position p + 1 for each new token p;
                                       // -1 = the token this step samples (a prompt's final chunk)
  std::vector<uint8_t> final_chunk;    // [S] the chunk ends the prompt: keep the draft's state
};

struct HostSpecRound {
  TreeShape shape;
  std::vector<int32_t> slots, committed, roots;  // [B]: state slot, tokens in the KV cache, last token
  std::vector<int32_t> page_table;               // [B · max_pages]
  int max_pages = 0;
  std::vector<SamplingParams> sampling;          // [B]
};

struct SpecRoundResult {
  std::vector<int32_t> tokens;      // accepted drafts then the bonus, sequences one after another
  std::vector<int32_t> counts;      // [B] tokens of each sequence (accepted + 1)
  std::vector<int32_t> drafted;     // [B] tree nodes verified (without the root)
  std::vector<int32_t> trees;       // [B · N] the verified trees' tokens, root first (diagnostics)
  double draft_ms = 0, verify_ms = 0, accept_ms = 0;
};

class SpecRunner {
 public:
  SpecRunner(std::unique_ptr<Executor> target, DraftConfig cfg, DraftWeights weights, int slots, int max_tokens);
  Executor& target() { return *target_; }
  int max_topk() const { return kMaxTopk; }
  StepResult prefill(const HostSpecPrefill& p);
  SpecRoundResult round(const HostSpecRound& r);
  // The draft's top-K probabilities and target ids a slot holds for its next round (inspection).
  void candidates(int slot, std::vector<float>& probs, std::vector<int32_t>& ids);

 private:
  static constexpr int kMaxTopk = 16;
  // Draft forward over prepared inputs; logits of `rows` rows and the states of every token.
  void draft(const HostStep& s, const Tensor& features, const Tensor& recurrent, Tensor& logits, Tensor& states);
  Tensor device_i32(const std::vector<int32_t>& v);
  void store_slots(const std::vector<int32_t>& slots, const Tensor& logits, const Tensor& states, const std::vector<int32_t>& state_rows);

  std::unique_ptr<Executor> target_;
  Ops& ops_;
  DraftModel draft_;
  KvCache draft_kv_;
  StepUploader draft_inputs_;
  Tensor cand_probs_, cand_ids_, state_;   // per slot: [slots, kMaxTopk] ×2, [slots, H]
  Tensor logits_, states_, states_next_, features_, topk_probs_, topk_ids_, compact_tmp_;
  std::vector<Tensor> index_bufs_;  // see device_i32
  size_t next_index_ = 0;
};

}  // namespace e3
