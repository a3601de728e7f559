#include "runtime/cuda/cublaslt.h"

#include <dlfcn.h>
#include <library_types.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "runtime/error.h"

namespace e3 {

namespace {

// The subset of cublasLt.h used here; values as the header defines them.
using Handle = void*;
using Desc = void*;
using Layout = void*;
using Pref = void*;
struct Algo {
  uint64_t data[8];
};
struct Heuristic {
  Algo algo;
  size_t workspace_size;
  int state;
  float waves;
  int reserved[4];
};
constexpr int kCompute32F = 68;
constexpr int kOpN = 0, kOpT = 1;
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
constexpr int kEpilogueBias = 4;
constexpr int kPrefMaxWorkspace = 1;

struct Api {
  int (*create)(Handle*);
  int (*desc_create)(Desc*, int, cudaDataType_t);
  int (*desc_set)(Desc, int, const void*, size_t);
  int (*desc_destroy)(Desc);
  int (*layout_create)(Layout*, cudaDataType_t, uint64_t, uint64_t, int64_t);
  int (*layout_destroy)(Layout);
  int (*pref_create)(Pref*);
  int (*pref_set)(Pref, int, const void*, size_t);
  int (*pref_destroy)(Pref);
  int (*heuristic)(Handle, Desc, Layout, Layout, Layout, Layout, Pref, int, Heuristic*, int*);
  int (*algo_check)(Handle, Desc, Layout, Layout, Layout, Layout, const Algo*, Heuristic*);
  int (*matmul)(Handle, Desc, const void*, const void*, Layout, const void*, Layout, const void*, const void*, Layout,
                void*, Layout, const Algo*, void*, size_t, cudaStream_t);
  Handle handle = nullptr;
  std::string error;
};

template <class F>
bool sym(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  return f != nullptr;
}

Api& api() {
  static Api a;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = nullptr;
    for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"})
      if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
    if (!lib) {
      a.error = "libcublasLt.so.13/.12 not found on the library path";
      return;
    }
    bool ok = sym(lib, "cublasLtCreate", a.create) && sym(lib, "cublasLtMatmulDescCreate", a.desc_create) &&
              sym(lib, "cublasLtMatmulDescSetAttribute", a.desc_set) &&
              sym(lib, "cublasLtMatmulDescDestroy", a.desc_destroy) &&
              sym(lib, "cublasLtMatrixLayoutCreate", a.layout_create) &&
              sym(lib, "cublasLtMatrixLayoutDestroy", a.layout_destroy) &&
              sym(lib, "cublasLtMatmulPreferenceCreate", a.pref_create) &&
              sym(lib, "cublasLtMatmulPreferenceSetAttribute", a.pref_set) &&
              sym(lib, "cublasLtMatmulPreferenceDestroy", a.pref_destroy) &&
              sym(lib, "cublasLtMatmulAlgoGetHeuristic", a.heuristic) &&
              sym(lib, "cublasLtMatmulAlgoCheck", a.algo_check) && sym(lib, "cublasLtMatmul", a.matmul);
    if (!ok) {
      a.error = "libcublasLt lacks an expected symbol";
      return;
    }
    if (a.create(&a.handle) != 0) {
      a.error = "cublasLtCreate failed";
      a.handle = nullptr;
    }
  });
  return a;
}

void check(int status, const char* what) {
  if (status != 0) fail(Code::Cuda, std::string("cuBLASLt ") + what + " failed with status " + std::to_string(status));
}

// A product's descriptor and the algorithm chosen for it at one row count.
struct Choice {
  Desc desc;
  Layout a;
  Algo algo;
  size_t workspace;
};

// One problem shape: its layouts and the algorithm it runs (the choice of its row bucket, where
// that algorithm takes this shape; else its own).
struct Plan {
  Choice* choice;
  Layout b, c;
  Algo algo;
  size_t workspace;
};

// Decode and verification sizes (up to kOwnRows, replayed from graphs) keep their own algorithm.
// Row counts above share the one of their power-of-two bucket: prefill and catch-up steps come in
// ever new sizes, and a heuristic query per new size costs more than the product itself.
constexpr int kOwnRows = 64;

int row_bucket(int m) {
  if (m <= kOwnRows) return m;
  int b = 128;
  while (b < m) b *= 2;
  return b;
}

void make_layouts(Api& A, int m, int n, int k, bool out_f32, Layout& b, Layout& c) {
  check(A.layout_create(&b, CUDA_R_16BF, uint64_t(k), uint64_t(m), k), "layout B");
  check(A.layout_create(&c, out_f32 ? CUDA_R_32F : CUDA_R_16BF, uint64_t(n), uint64_t(m), n), "layout C");
}

// The heuristic's first `count` algorithms for desc over layouts (a, b, c), best predicted first;
// returns how many it found (at least one).
int heuristics(Api& A, Desc desc, Layout a, Layout b, Layout c, size_t workspace_bytes, int m, int n, int k,
               Heuristic* h, int count) {
  Pref pref;
  check(A.pref_create(&pref), "PreferenceCreate");
  check(A.pref_set(pref, kPrefMaxWorkspace, &workspace_bytes, sizeof workspace_bytes), "set workspace");
  int found = 0;
  int st = A.heuristic(A.handle, desc, a, b, c, c, pref, count, h, &found);
  A.pref_destroy(pref);
  check(st, "AlgoGetHeuristic");
  E3_CHECK(found > 0, Cuda, "cuBLASLt has no algorithm for a " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                                std::to_string(k) + " bf16 product");
  return found;
}

Heuristic best_algo(Api& A, Desc desc, Layout a, Layout b, Layout c, size_t workspace_bytes, int m, int n, int k) {
  Heuristic h[1] = {};
  heuristics(A, desc, a, b, c, workspace_bytes, m, n, k, h, 1);
  return h[0];
}

// Operands of one product, for timing its candidate algorithms.
struct Operands {
  const void* x;
  const void* w;
  void* out;
  void* workspace;
  cudaStream_t stream;
};

// Up to kOwnRows (decode and verification, replayed from graphs) the heuristic's first algorithm is
// timed against its next ones on the product's own operands, each run after the L2 is flushed (the
// model reads each weight once a step; repeated runs would read the smaller ones from L2), and the
// fastest by median is kept where it beats the first by kTuneMargin (else noise would pick between
// near-equal ones, and bits would differ from run to run more often). The output is overwritten;
// the caller runs the product after. Where the stream is capturing a graph, or timing fails, the
// heuristic's first is kept.
constexpr int kTuneCandidates = 16, kTuneRuns = 5;
constexpr float kTuneMargin = 0.97f;

Heuristic tuned_algo(Api& A, Desc desc, Layout a, Layout b, Layout c, size_t workspace_bytes, int m, int n, int k,
                     const Operands& o) {
  Heuristic h[kTuneCandidates] = {};
  const int found = heuristics(A, desc, a, b, c, workspace_bytes, m, n, k, h, kTuneCandidates);
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (found == 1 || cudaStreamIsCapturing(o.stream, &capturing) != cudaSuccess ||
      capturing != cudaStreamCaptureStatusNone)
    return h[0];
  int device = 0, l2 = 0;
  void* flush = nullptr;
  size_t flush_bytes = 0;
  if (cudaGetDevice(&device) == cudaSuccess &&
      cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device) == cudaSuccess &&
      cudaMalloc(&flush, flush_bytes = 2 * size_t(l2)) != cudaSuccess)
    flush = nullptr;  // timed without flushing: still a fair race, if a kinder one to small weights
  cudaGetLastError();  // a failed allocation is not the caller's error
  cudaEvent_t start = nullptr, stop = nullptr;
  int best = 0;
  float first_ms = 0.0f, best_ms = 0.0f;
  if (cudaEventCreate(&start) == cudaSuccess && cudaEventCreate(&stop) == cudaSuccess) {
    const float alpha = 1.0f, beta = 0.0f;
    for (int i = 0; i < found; ++i) {
      float ms[kTuneRuns];
      bool ok = true;
      for (int r = 0; r < kTuneRuns && ok; ++r) {
        ok = (!flush || cudaMemsetAsync(flush, r, flush_bytes, o.stream) == cudaSuccess) &&
             cudaEventRecord(start, o.stream) == cudaSuccess &&
             A.matmul(A.handle, desc, &alpha, o.w, a, o.x, b, &beta, o.out, c, o.out, c, &h[i].algo, o.workspace,
                      h[i].workspace_size, o.stream) == 0 &&
             cudaEventRecord(stop, o.stream) == cudaSuccess && cudaEventSynchronize(stop) == cudaSuccess &&
             cudaEventElapsedTime(&ms[r], start, stop) == cudaSuccess;
      }
      if (!ok) {
        if (i == 0) break;  // the heuristic's first cannot be timed: keep it
        continue;
      }
      std::sort(ms, ms + kTuneRuns);
      const float median = ms[kTuneRuns / 2];
      if (i == 0) first_ms = best_ms = median;
      else if (median < best_ms && median < kTuneMargin * first_ms) best = i, best_ms = median;
    }
  }
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (flush) cudaFree(flush);
  cudaGetLastError();
  return h[best];
}

}  // namespace

bool cublaslt_available() { return api().handle != nullptr; }
const char* cublaslt_error() { return api().error.c_str(); }

void cublaslt_linear(const void* x, const void* w, const void* bias, void* out, bool out_f32, int m, int n, int k,
                     void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  Api& A = api();
  E3_CHECK(A.handle, Cuda, std::string("cuBLASLt is unavailable: ") + A.error);
  using Key = std::tuple<int, int, int, bool, bool, size_t>;
  static std::mutex mu;
  static std::map<Key, Choice> choices;
  static std::map<Key, Plan> plans;
  std::unique_lock<std::mutex> lock(mu);
  auto key = std::make_tuple(m, n, k, out_f32, bias != nullptr, workspace_bytes);
  auto it = plans.find(key);
  if (it == plans.end()) {
    // Column-major view: C[N, M] = op(A)[N, K] · B[K, M] with A = W (row-major [N, K], transposed)
    // and B = x (row-major [M, K]); C is then out in row-major [M, N].
    const int mb = row_bucket(m);
    auto bucket_key = std::make_tuple(mb, n, k, out_f32, bias != nullptr, workspace_bytes);
    auto ci = choices.find(bucket_key);
    if (ci == choices.end()) {
      // Up to kOwnRows the fastest of the heuristic's candidates (tuned_algo); row buckets above,
      // whose products are long and whose sizes keep coming, the heuristic's first (a power of two
      // above is its own bucket, but is not tuned either).
      Choice ch{};
      check(A.desc_create(&ch.desc, kCompute32F, CUDA_R_32F), "MatmulDescCreate");
      int ta = kOpT, tb = kOpN;
      check(A.desc_set(ch.desc, kDescTransA, &ta, sizeof ta), "set TRANSA");
      check(A.desc_set(ch.desc, kDescTransB, &tb, sizeof tb), "set TRANSB");
      if (bias) {  // the pointer too: tuned_algo runs the product (each call sets its own below)
        int epi = kEpilogueBias;
        check(A.desc_set(ch.desc, kDescEpilogue, &epi, sizeof epi), "set EPILOGUE");
        check(A.desc_set(ch.desc, kDescBiasPointer, &bias, sizeof bias), "set BIAS_POINTER");
      }
      check(A.layout_create(&ch.a, CUDA_R_16BF, uint64_t(k), uint64_t(n), k), "layout A");
      Layout b, c;
      make_layouts(A, mb, n, k, out_f32, b, c);
      const Operands ops{x, w, out, workspace, stream};
      const Heuristic h = m <= kOwnRows ? tuned_algo(A, ch.desc, ch.a, b, c, workspace_bytes, m, n, k, ops)
                                         : best_algo(A, ch.desc, ch.a, b, c, workspace_bytes, mb, n, k);
      ch.algo = h.algo;
      ch.workspace = h.workspace_size;
      A.layout_destroy(b);
      A.layout_destroy(c);
      ci = choices.emplace(bucket_key, ch).first;
    }
    Plan p{};
    p.choice = &ci->second;
    make_layouts(A, m, n, k, out_f32, p.b, p.c);
    Heuristic h{};
    if (mb == m) {
      p.algo = p.choice->algo;
      p.workspace = p.choice->workspace;
    } else if (A.algo_check(A.handle, p.choice->desc, p.choice->a, p.b, p.c, p.c, &p.choice->algo, &h) == 0 &&
               h.workspace_size <= workspace_bytes) {
      p.algo = p.choice->algo;
      p.workspace = h.workspace_size;
    } else {
      h = best_algo(A, p.choice->desc, p.choice->a, p.b, p.c, workspace_bytes, m, n, k);
      p.algo = h.algo;
      p.workspace = h.workspace_size;
    }
    it = plans.emplace(key, p).first;
  }
  const Plan& p = it->second;  // the lock stays held: the bias pointer lives in the shared descriptor
  Desc desc = p.choice->desc;
  if (bias) check(A.desc_set(desc, kDescBiasPointer, &bias, sizeof bias), "set BIAS_POINTER");
  float alpha = 1.0f, beta = 0.0f;
  check(A.matmul(A.handle, desc, &alpha, w, p.choice->a, x, p.b, &beta, out, p.c, out, p.c, &p.algo, workspace,
                 p.workspace, stream),
        "Matmul");
}

}  // namespace e3
