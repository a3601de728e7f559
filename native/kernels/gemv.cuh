// Decode-shaped products out[M, N] = x[M, K] · W[N, K]ᵀ (+ bias) for M ≤ 8: one warp per weight
// row, each weight element read once and used for all M tokens. Memory bound by design.
#pragma once
#include "kernels/types.h"

namespace e3k {

constexpr int kGemvMaxM = 8;

// out is bf16 (out_f32 null) or f32 (out null). K must be a multiple of 8.
cudaError_t gemv(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int m, int n, int k,
                 cudaStream_t s);

// The same on tensor cores for M ≤ kSkinnyMaxM rows, each weight read once (K a multiple of 64).
// K is split over `splits` blocks per 16 output features (skinny_splits picks it); with more than
// one, the product needs splits × M × N floats of `partials` and kSkinnyMaxColumnBlocks zeroed
// `arrivals` counters, which it leaves zeroed.
constexpr int kSkinnyMaxM = 32;
constexpr int kSkinnyMaxSplits = 16;
constexpr int kSkinnyMaxColumnBlocks = 4096;
// With swiglu (one row only), x is gate_up [1, 2k] and the product runs over silu(gate) · up
// (rounded to bf16 as silu_mul rounds it): decode's down product without the activation's kernel.
bool skinny_fits(int m, int k);
int skinny_splits(int n, int k, int sm_count);
cudaError_t skinny_gemm(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int m, int n, int k,
                        int splits, float* partials, unsigned* arrivals, bool swiglu, cudaStream_t s);

}  // namespace e3k
