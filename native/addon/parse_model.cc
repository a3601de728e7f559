#include "addon/parse_model.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "addon/js_error.h"
#include "addon/tensor_wrap.h"
#include "runtime/error.h"

namespace e3js {

namespace {

template <class T, napi_typedarray_type Kind>
std::vector<T> typed_vector(const Napi::Object& o, const char* key, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) e3::fail(e3::Code::InvalidArgument, std::string(key) + " is required");
    return {};
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Kind)
    e3::fail(e3::Code::InvalidArgument, std::string(key) + " has the wrong typed-array type");
  Napi::TypedArray a = v.As<Napi::TypedArray>();
  const T* p = reinterpret_cast<const T*>(static_cast<const char*>(a.ArrayBuffer().Data()) + a.ByteOffset());
  return std::vector<T>(p, p + a.ElementLength());
}

}  // namespace

e3::HostStep parse_step(const Napi::Object& o) {
  e3::HostStep s;
  s.tokens = typed_vector<int32_t, napi_int32_array>(o, "tokens", true);
  s.positions = typed_vector<int32_t, napi_int32_array>(o, "positions", true);
  s.q_start = typed_vector<int32_t, napi_int32_array>(o, "qStart", true);
  s.kv_len = typed_vector<int32_t, napi_int32_array>(o, "kvLen", true);
  s.page_table = typed_vector<int32_t, napi_int32_array>(o, "pageTable", true);
  s.max_pages = int(get_int(o, "maxPages", 0, true));
  s.tree_mask = typed_vector<int64_t, napi_bigint64_array>(o, "treeMask", false);
  s.logit_rows = typed_vector<int32_t, napi_int32_array>(o, "logitRows", true);
  s.feedback = typed_vector<int32_t, napi_int32_array>(o, "feedback", false);
  std::vector<uint8_t> raw = typed_vector<uint8_t, napi_uint8_array>(o, "sampling", false);
  E3_ARG(raw.size() % sizeof(e3::SamplingParams) == 0, "sampling must hold 32 bytes per logit row");
  s.sampling.resize(raw.size() / sizeof(e3::SamplingParams));
  if (!raw.empty()) std::memcpy(s.sampling.data(), raw.data(), raw.size());
  s.want_logits = get_bool(o, "wantLogits", false);
  s.want_hidden = get_bool(o, "wantHidden", false);
  s.want_timing = get_bool(o, "wantTiming", false);
  return s;
}

namespace {

e3::Tensor optional_tensor(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return e3::Tensor();
  return TensorWrap::From(v, key);
}

e3::Tensor tensor(const Napi::Object& o, const char* key) { return TensorWrap::From(o.Get(key), key); }

}  // namespace

e3::QwenWeights parse_weights(const Napi::Object& o) {
  e3::QwenWeights w;
  w.embed = TensorWrap::From(o.Get("embed"), "weights.embed");
  w.final_norm = TensorWrap::From(o.Get("finalNorm"), "weights.finalNorm");
  w.lm_head = TensorWrap::From(o.Get("lmHead"), "weights.lmHead");
  Napi::Value layers = o.Get("layers");
  E3_ARG(layers.IsArray(), "weights.layers must be an array");
  Napi::Array a = layers.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Object l = arg_object(a.Get(i), "weights.layers[i]");
    e3::QwenLayerWeights L;
    L.input_norm = TensorWrap::From(l.Get("inputNorm"), "inputNorm");
    L.qkv = TensorWrap::From(l.Get("qkv"), "qkv");
    L.qkv_bias = optional_tensor(l, "qkvBias");
    L.q_norm = optional_tensor(l, "qNorm");
    L.k_norm = optional_tensor(l, "kNorm");
    L.o = TensorWrap::From(l.Get("o"), "o");
    L.post_norm = TensorWrap::From(l.Get("postNorm"), "postNorm");
    L.gate_up = TensorWrap::From(l.Get("gateUp"), "gateUp");
    L.down = TensorWrap::From(l.Get("down"), "down");
    w.layers.push_back(std::move(L));
  }
  return w;
}

e3::QwenConfig parse_config(const Napi::Object& o) {
  e3::QwenConfig c;
  c.hidden = int(get_int(o, "hiddenSize", 0, true));
  c.layers = int(get_int(o, "numLayers", 0, true));
  c.heads = int(get_int(o, "numHeads", 0, true));
  c.kv_heads = int(get_int(o, "numKvHeads", 0, true));
  c.head_dim = int(get_int(o, "headDim", 0, true));
  c.intermediate = int(get_int(o, "intermediateSize", 0, true));
  c.vocab = int(get_int(o, "vocabSize", 0, true));
  c.eps = float(get_number(o, "rmsNormEps", 1e-6, true));
  c.rope_theta = float(get_number(o, "ropeTheta", 10000, true));
  c.rotary_dim = int(get_int(o, "rotaryDim", c.head_dim));
  c.qk_norm = get_bool(o, "qkNorm", false);
  c.qkv_bias = get_bool(o, "attentionBias", false);
  Napi::Value cap = o.Get("captureLayers");
  if (cap.IsArray())
    for (int64_t l : parse_counts(cap, "captureLayers")) c.capture_layers.push_back(int(std::min<int64_t>(l, INT32_MAX)));
  return c;
}


e3::DraftConfig parse_draft_config(const Napi::Object& o) {
  e3::DraftConfig c;
  c.hidden = int(get_int(o, "hiddenSize", 0, true));
  c.target_hidden = int(get_int(o, "targetHiddenSize", c.hidden));
  c.heads = int(get_int(o, "numHeads", 0, true));
  c.kv_heads = int(get_int(o, "numKvHeads", 0, true));
  c.head_dim = int(get_int(o, "headDim", 0, true));
  c.intermediate = int(get_int(o, "intermediateSize", 0, true));
  c.vocab = int(get_int(o, "vocabSize", 0, true));
  c.draft_vocab = int(get_int(o, "draftVocabSize", c.vocab));
  c.eps = float(get_number(o, "rmsNormEps", 1e-6, true));
  c.rope_theta = float(get_number(o, "ropeTheta", 10000, true));
  c.rope_scale = float(get_number(o, "ropeScale", 1));
  c.rotary_dim = int(get_int(o, "rotaryDim", c.head_dim));
  c.norm_before_residual = get_bool(o, "normBeforeResidual", false);
  c.norm_before_fc = get_bool(o, "normBeforeFc", false);
  c.fc_norm = get_bool(o, "fcNorm", false);
  c.apply_final_norm = get_bool(o, "applyFinalNorm", true);
  c.feed_post_norm = get_bool(o, "feedPostNorm", false);
  return c;
}

e3::DraftWeights parse_draft_weights(const Napi::Object& o) {
  e3::DraftWeights w;
  w.embed = tensor(o, "embed");
  w.fc = tensor(o, "fc");
  w.fc_bias = optional_tensor(o, "fcBias");
  w.rope_inv_freq = optional_tensor(o, "ropeInvFreq");
  w.input_norm = optional_tensor(o, "inputNorm");
  w.fc_norm = optional_tensor(o, "fcNorm");
  w.hidden_norm = tensor(o, "hiddenNorm");
  w.input_layernorm = tensor(o, "inputLayernorm");
  w.post_norm = tensor(o, "postNorm");
  w.final_norm = tensor(o, "finalNorm");
  w.qkv = tensor(o, "qkv");
  w.o = tensor(o, "o");
  w.gate_up = tensor(o, "gateUp");
  w.down = tensor(o, "down");
  w.lm_head = tensor(o, "lmHead");
  w.vocab_map = optional_tensor(o, "vocabMap");
  return w;
}

e3::HostSpecPrefill parse_spec_prefill(const Napi::Object& o) {
  e3::HostSpecPrefill p;
  p.step = parse_step(o);
  p.slots = typed_vector<int32_t, napi_int32_array>(o, "slots", true);
  p.next_tokens = typed_vector<int32_t, napi_int32_array>(o, "nextTokens", true);
  p.final_chunk = typed_vector<uint8_t, napi_uint8_array>(o, "finalChunk", true);
  p.stored_features = get_bool(o, "storedFeatures", false);
  return p;
}

e3::HostSpecRound parse_spec_round(const Napi::Object& o) {
  e3::HostSpecRound r;
  r.shape.steps = int(get_int(o, "steps", 0, true));
  r.shape.topk = int(get_int(o, "topk", 0, true));
  r.shape.draft_tokens = int(get_int(o, "draftTokens", 0, true));
  r.slots = typed_vector<int32_t, napi_int32_array>(o, "slots", true);
  r.committed = typed_vector<int32_t, napi_int32_array>(o, "committed", true);
  r.roots = typed_vector<int32_t, napi_int32_array>(o, "roots", true);
  r.page_table = typed_vector<int32_t, napi_int32_array>(o, "pageTable", true);
  r.max_pages = int(get_int(o, "maxPages", 0, true));
  r.profile = get_bool(o, "profile", false);
  r.chained = get_bool(o, "chained", false);
  std::vector<uint8_t> raw = typed_vector<uint8_t, napi_uint8_array>(o, "sampling", true);
  E3_ARG(raw.size() == r.slots.size() * sizeof(e3::SamplingParams), "sampling must hold 32 bytes per sequence");
  r.sampling.resize(r.slots.size());
  if (!raw.empty()) std::memcpy(r.sampling.data(), raw.data(), raw.size());
  return r;
}

}  // namespace e3js
