// JS option objects → native model, draft and step descriptions. Every missing or mistyped field
// throws ERR_INVALID_ARGUMENT naming it.
#pragma once
#include <napi.h>

#include "runtime/draft_model.h"
#include "runtime/qwen_model.h"
#include "runtime/spec_runner.h"
#include "runtime/step.h"

namespace e3js {

e3::QwenConfig parse_config(const Napi::Object& o);
e3::QwenWeights parse_weights(const Napi::Object& o);
e3::DraftConfig parse_draft_config(const Napi::Object& o);
e3::DraftWeights parse_draft_weights(const Napi::Object& o);
e3::HostStep parse_step(const Napi::Object& o);
e3::HostSpecPrefill parse_spec_prefill(const Napi::Object& o);
e3::HostSpecRound parse_spec_round(const Napi::Object& o);

}  // namespace e3js
