// JS class NativeOps: one backend's ops on NativeTensors, synchronously. This is how tests check
// every CUDA kernel against the CPU reference, and how benchmarks time single kernels.
#include <memory>

#include "addon/entry_points.h"
#include "addon/js_error.h"
#include "addon/tensor_wrap.h"
#include "runtime/cuda_util.h"
#include "runtime/error.h"
#include "runtime/ops.h"
#if EAGLE3_WITH_CUDA
#include "runtime/cuda/cuda_ops.h"
#endif

namespace e3js {

namespace {

const e3::Tensor& T(const Napi::CallbackInfo& info, size_t i, const char* what) { return TensorWrap::From(info[i], what); }

const e3::Tensor* opt_tensor(const Napi::Value& v, const char* what) {
  return v.IsUndefined() || v.IsNull() ? nullptr : &TensorWrap::From(v, what);
}

float F(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) e3::fail(e3::Code::InvalidArgument, "argument " + std::to_string(i) + " must be a number");
  return info[i].As<Napi::Number>().FloatValue();
}

e3::AttentionLayout parse_layout(const Napi::Value& v) {
  Napi::Object o = arg_object(v, "layout");
  e3::AttentionLayout L;
  L.num_seqs = int(get_int(o, "numSeqs", 0, true));
  L.num_tokens = int(get_int(o, "numTokens", 0, true));
  L.page_size = int(get_int(o, "pageSize", 0, true));
  L.max_pages = int(get_int(o, "maxPages", 0, true));
  L.max_q_len = int(get_int(o, "maxQLen", 0, true));
  L.max_kv_len = int(get_int(o, "maxKvLen", 0, true));
  L.q_start = TensorWrap::From(o.Get("qStart"), "layout.qStart");
  L.kv_len = TensorWrap::From(o.Get("kvLen"), "layout.kvLen");
  L.page_table = TensorWrap::From(o.Get("pageTable"), "layout.pageTable");
  L.token_seq = TensorWrap::From(o.Get("tokenSeq"), "layout.tokenSeq");
  L.slots = TensorWrap::From(o.Get("slots"), "layout.slots");
  if (const e3::Tensor* m = opt_tensor(o.Get("treeMask"), "layout.treeMask")) L.tree_mask = *m;
  if (const e3::Tensor* b = opt_tensor(o.Get("treeBase"), "layout.treeBase")) L.tree_base = *b;
  return L;
}

e3::TreeState parse_tree(const Napi::Value& v) {
  Napi::Object o = arg_object(v, "tree");
  e3::TreeState t;
  t.steps = int(get_int(o, "steps", 0, true));
  t.topk = int(get_int(o, "topk", 0, true));
  t.score = TensorWrap::From(o.Get("score"), "tree.score");
  t.token = TensorWrap::From(o.Get("token"), "tree.token");
  t.parent = TensorWrap::From(o.Get("parent"), "tree.parent");
  t.mask = TensorWrap::From(o.Get("mask"), "tree.mask");
  t.live = TensorWrap::From(o.Get("live"), "tree.live");
  return t;
}

e3::Tensor opt_or_none(const Napi::Value& v, const char* what) {
  const e3::Tensor* t = opt_tensor(v, what);
  return t ? *t : e3::Tensor();
}

// { dst, rows?, cols: number[] }, or nothing
e3::ResidualCapture parse_capture(const Napi::Value& v) {
  e3::ResidualCapture c;
  if (v.IsUndefined() || v.IsNull()) return c;
  Napi::Object o = arg_object(v, "capture");
  c.dst = TensorWrap::From(o.Get("dst"), "capture.dst");
  c.rows = opt_or_none(o.Get("rows"), "capture.rows");
  c.cols = parse_counts(o.Get("cols"), "capture.cols");
  return c;
}

e3::NormPlacement parse_placement(const Napi::Value& v) {
  e3::NormPlacement at;
  if (v.IsUndefined() || v.IsNull()) return at;
  Napi::Object o = arg_object(v, "at");
  at.rows = opt_or_none(o.Get("rows"), "at.rows");
  at.col = get_int(o, "col", 0);
  E3_ARG(at.col >= 0, "at.col must not be negative");
  return at;
}

class OpsWrap : public Napi::ObjectWrap<OpsWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "NativeOps", {
        InstanceMethod<&OpsWrap::Embedding>("embedding"),
        InstanceMethod<&OpsWrap::Rmsnorm>("rmsnorm"),
        InstanceMethod<&OpsWrap::AddRmsnorm>("addRmsnorm"),
        InstanceMethod<&OpsWrap::Linear>("linear"),
        InstanceMethod<&OpsWrap::QkvRopeStore>("qkvRopeStore"),
        InstanceMethod<&OpsWrap::RopeAttention>("ropeAttention"),
        InstanceMethod<&OpsWrap::Attention>("attention"),
        InstanceMethod<&OpsWrap::SiluMul>("siluMul"),
        InstanceMethod<&OpsWrap::SwigluLinear>("swigluLinear"),
        InstanceMethod<&OpsWrap::GatherRows>("gatherRows"),
        InstanceMethod<&OpsWrap::CopyColumns>("copyColumns"),
        InstanceMethod<&OpsWrap::ScatterRows>("scatterRows"),
        InstanceMethod<&OpsWrap::TopkSoftmax>("topkSoftmax"),
        InstanceMethod<&OpsWrap::Sample>("sample"),
        InstanceMethod<&OpsWrap::TreeExpand>("treeExpand"),
        InstanceMethod<&OpsWrap::TreeBuild>("treeBuild"),
        InstanceMethod<&OpsWrap::TreeAcceptGreedy>("treeAcceptGreedy"),
        InstanceMethod<&OpsWrap::TreeAcceptSampled>("treeAcceptSampled"),
        InstanceMethod<&OpsWrap::TreeCommit>("treeCommit"),
        InstanceMethod<&OpsWrap::KvCompact>("kvCompact"),
        InstanceMethod<&OpsWrap::TreeAdvance>("treeAdvance"),
        InstanceMethod<&OpsWrap::StepLayout>("stepLayout"),
        InstanceMethod<&OpsWrap::Copy>("copy"),
        InstanceMethod<&OpsWrap::Argmax>("argmax"),
        InstanceMethod<&OpsWrap::FillNormal>("fillNormal"),
        InstanceMethod<&OpsWrap::Synchronize>("synchronize"),
        InstanceMethod<&OpsWrap::TimerStart>("timerStart"),
        InstanceMethod<&OpsWrap::TimerStop>("timerStop"),
        InstanceMethod<&OpsWrap::SetGemmPath>("setGemmPath"),
        InstanceMethod<&OpsWrap::SetAttentionSplits>("setAttentionSplits"),
        InstanceMethod<&OpsWrap::Capture>("capture"),
        InstanceMethod<&OpsWrap::Replay>("replay"),
    });
    exports.Set("NativeOps", f);
  }

  // new NativeOps("cpu" | "cuda")
  explicit OpsWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OpsWrap>(info) {
    guard(info.Env(), [&] {
      if (!info[0].IsString()) e3::fail(e3::Code::InvalidArgument, "new NativeOps(device)");
      ops_ = e3::make_ops(parse_device(info[0].As<Napi::String>()));
      return 0;
    });
  }

 private:
  template <class F>
  Napi::Value run(const Napi::CallbackInfo& info, F&& f) {
    return guard(info.Env(), [&] {
      f(*ops_);
      return info.Env().Undefined();
    });
  }
  Napi::Value Embedding(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.embedding(T(i, 0, "ids"), T(i, 1, "table"), T(i, 2, "out")); });
  }
  Napi::Value Rmsnorm(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.rmsnorm(T(i, 0, "x"), T(i, 1, "w"), F(i, 2), T(i, 3, "out"), parse_placement(i[4])); });
  }
  Napi::Value AddRmsnorm(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.add_rmsnorm(T(i, 0, "residual"), T(i, 1, "x"), T(i, 2, "w"), F(i, 3), T(i, 4, "out"), parse_capture(i[5]));
    });
  }
  Napi::Value Linear(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.linear(T(i, 0, "x"), T(i, 1, "w"), opt_tensor(i[2], "bias"), T(i, 3, "out")); });
  }
  // Arguments 0-6 of qkvRopeStore and ropeAttention, with the optional invFreq and scale at `tail`.
  static e3::QkvRotation rotation(const Napi::CallbackInfo& i, size_t tail) {
    return {T(i, 0, "qkv"), opt_tensor(i[1], "qNorm"), opt_tensor(i[2], "kNorm"), F(i, 3), T(i, 4, "positions"),
            e3::Rope{int(F(i, 5)), F(i, 6), opt_or_none(i[tail], "invFreq"), i[tail + 1].IsNumber() ? F(i, tail + 1) : 1.0f}};
  }
  // qkvRopeStore(qkv, qNorm?, kNorm?, eps, positions, rotaryDim, theta, layout, qOut, kCache, vCache, invFreq?, scale?)
  Napi::Value QkvRopeStore(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.qkv_rope_store(rotation(i, 11), parse_layout(i[7]), T(i, 8, "qOut"), T(i, 9, "kCache"), T(i, 10, "vCache"));
    });
  }
  // ropeAttention(qkv, qNorm?, kNorm?, eps, positions, rotaryDim, theta, layout, q, kCache, vCache, scale, out, invFreq?, ropeScale?)
  Napi::Value RopeAttention(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.rope_attention(rotation(i, 13), parse_layout(i[7]), T(i, 8, "q"), T(i, 9, "kCache"), T(i, 10, "vCache"), F(i, 11),
                       T(i, 12, "out"));
    });
  }
  // attention(q, kCache, vCache, layout, scale, out)
  Napi::Value Attention(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.attention(T(i, 0, "q"), T(i, 1, "kCache"), T(i, 2, "vCache"), parse_layout(i[3]), F(i, 4), T(i, 5, "out"));
    });
  }
  Napi::Value SiluMul(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.silu_mul(T(i, 0, "gateUp"), T(i, 1, "out")); });
  }
  Napi::Value SwigluLinear(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.swiglu_linear(T(i, 0, "gateUp"), T(i, 1, "w"), T(i, 2, "act"), T(i, 3, "out")); });
  }
  Napi::Value GatherRows(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.gather_rows(T(i, 0, "x"), T(i, 1, "rows"), T(i, 2, "out")); });
  }
  Napi::Value CopyColumns(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.copy_columns(T(i, 0, "src"), T(i, 1, "dst"), int64_t(F(i, 2))); });
  }
  Napi::Value ScatterRows(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.scatter_rows(T(i, 0, "src"), T(i, 1, "rows"), T(i, 2, "dst")); });
  }
  // topkSoftmax(logits, k, map | null, probs, ids)
  Napi::Value TopkSoftmax(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      const e3::Tensor* map = opt_tensor(i[2], "map");
      o.topk_softmax(T(i, 0, "logits"), int(F(i, 1)), map ? *map : e3::Tensor(), T(i, 3, "probs"), T(i, 4, "ids"));
    });
  }
  Napi::Value Argmax(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.argmax(T(i, 0, "logits"), T(i, 1, "tokens")); });
  }
  Napi::Value Sample(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.sample(T(i, 0, "logits"), T(i, 1, "params"), T(i, 2, "tokens")); });
  }
  // treeExpand(tree, level, probs, ids, tokens?, mask?, parentRows?, statesIn?, statesOut?)
  Napi::Value TreeExpand(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.tree_expand(parse_tree(i[0]), int(F(i, 1)), T(i, 2, "probs"), T(i, 3, "ids"), opt_or_none(i[4], "tokens"),
                    opt_or_none(i[5], "mask"), opt_or_none(i[6], "parentRows"),
                    {opt_or_none(i[7], "statesIn"), opt_or_none(i[8], "statesOut")});
    });
  }
  // treeBuild(tree, roots, committed, tokens, positions, mask, parent)
  Napi::Value TreeBuild(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.tree_build(parse_tree(i[0]), T(i, 1, "roots"), T(i, 2, "committed"), T(i, 3, "tokens"), T(i, 4, "positions"),
                   T(i, 5, "mask"), T(i, 6, "parent"));
    });
  }
  // treeAcceptGreedy(tokens, parent, argmax, path, accepted, bonus)
  Napi::Value TreeAcceptGreedy(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.tree_accept_greedy(T(i, 0, "tokens"), T(i, 1, "parent"), T(i, 2, "argmax"), T(i, 3, "path"), T(i, 4, "accepted"),
                           T(i, 5, "bonus"));
    });
  }
  // treeAcceptSampled(tokens, parent, logits, params, path, accepted, bonus)
  Napi::Value TreeAcceptSampled(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.tree_accept_sampled(T(i, 0, "tokens"), T(i, 1, "parent"), T(i, 2, "logits"), T(i, 3, "params"), T(i, 4, "path"),
                            T(i, 5, "accepted"), T(i, 6, "bonus"));
    });
  }
  // treeCommit(tokens, path, accepted, bonus, outTokens, featureRows, lastRows)
  Napi::Value TreeCommit(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.tree_commit(T(i, 0, "tokens"), T(i, 1, "path"), T(i, 2, "accepted"), T(i, 3, "bonus"), T(i, 4, "outTokens"),
                    T(i, 5, "featureRows"), T(i, 6, "lastRows"));
    });
  }
  // kvCompact(pool, pageTable, pageSize, committed, path, accepted)
  Napi::Value KvCompact(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.kv_compact(T(i, 0, "pool"), T(i, 1, "pageTable"), int(F(i, 2)), T(i, 3, "committed"), T(i, 4, "path"),
                   T(i, 5, "accepted"));
    });
  }
  // treeAdvance(committed, accepted, bonus, nextCommitted, nextRoots)
  Napi::Value TreeAdvance(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.tree_advance(T(i, 0, "committed"), T(i, 1, "accepted"), T(i, 2, "bonus"), T(i, 3, "nextCommitted"),
                     T(i, 4, "nextRoots"));
    });
  }
  // stepLayout(committed, pageTable, pageSize, q, first, posBase, posStep, positions | null, kvLen, slots)
  Napi::Value StepLayout(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      o.step_layouts(T(i, 0, "committed"), T(i, 1, "pageTable"), int(F(i, 2)),
                     {{int(F(i, 3)), int(F(i, 4)), int(F(i, 5)), int(F(i, 6)), opt_or_none(i[7], "positions"),
                       T(i, 8, "kvLen"), T(i, 9, "slots")}});
    });
  }
  // copy(src, dst)
  Napi::Value Copy(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.copy(T(i, 0, "src"), T(i, 1, "dst")); });
  }
  // fillNormal(t, seed, mean, std)
  Napi::Value FillNormal(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.fill_normal(T(i, 0, "t"), uint64_t(F(i, 1)), F(i, 2), F(i, 3)); });
  }
  Napi::Value TimerStart(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.timer_start(); });
  }
  // Milliseconds of device work since timerStart().
  Napi::Value TimerStop(const Napi::CallbackInfo& i) {
    return guard(i.Env(), [&] { return Napi::Value(Napi::Number::New(i.Env(), ops_->timer_stop_ms())); });
  }
  Napi::Value Synchronize(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
#if EAGLE3_WITH_CUDA
      if (auto* c = dynamic_cast<e3::CudaOps*>(&o)) c->synchronize();
#endif
    });
  }
  // setGemmPath("auto" | "gemv" | "skinny" | "cublaslt"): pins the product path (where it fits), for
  // kernel tests and timings.
  Napi::Value SetGemmPath(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      std::string p = i[0].IsString() ? i[0].As<Napi::String>().Utf8Value() : "";
      if (p != "auto" && p != "gemv" && p != "skinny" && p != "cublaslt")
        e3::fail(e3::Code::InvalidArgument, "gemm path must be \"auto\", \"gemv\", \"skinny\" or \"cublaslt\"");
#if EAGLE3_WITH_CUDA
      if (auto* c = dynamic_cast<e3::CudaOps*>(&o))
        c->set_gemm_path(p == "gemv" ? e3::GemmPath::Gemv : p == "skinny" ? e3::GemmPath::Skinny
                         : p == "cublaslt" ? e3::GemmPath::CublasLt : e3::GemmPath::Auto);
#endif
    });
  }
  // setAttentionSplits(n): attention splits each sequence's context over at most n blocks (0:
  // automatic, filling the GPU), for timings.
  Napi::Value SetAttentionSplits(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) {
      double n = i[0].IsNumber() ? i[0].As<Napi::Number>().DoubleValue() : -1;
      if (!(n >= 0 && n <= 64 && n == double(int(n)))) e3::fail(e3::Code::InvalidArgument, "attention splits must be a whole number from 0 to 64");
#if EAGLE3_WITH_CUDA
      if (auto* c = dynamic_cast<e3::CudaOps*>(&o)) c->set_attention_splits(int(n));
#endif
    });
  }
  // capture(fn): the device work of the ops that fn calls, recorded as a graph for replay() instead
  // of run; its id, or -1 (fn not called) on a backend without graphs. Timings of ops in a graph
  // leave out the host's cost of each call, as a model step does.
  Napi::Value Capture(const Napi::CallbackInfo& i) {
    return guard(i.Env(), [&] {
      if (!i[0].IsFunction()) e3::fail(e3::Code::InvalidArgument, "capture(fn) needs a function");
      Napi::Function fn = i[0].As<Napi::Function>();
      return Napi::Value(Napi::Number::New(i.Env(), ops_->capture([&] { fn.Call({}); })));
    });
  }
  Napi::Value Replay(const Napi::CallbackInfo& i) {
    return run(i, [&](e3::Ops& o) { o.replay(int(F(i, 0))); });
  }

  std::unique_ptr<e3::Ops> ops_;
};

}  // namespace

void InitOps(Napi::Env env, Napi::Object exports) { OpsWrap::Init(env, exports); }

}  // namespace e3js
