// The two ceilings every timing is reported against, measured on the device in the same run:
// device-to-device copy bandwidth and the bf16 GEMM rate through cuBLASLt.
#pragma once
#include <cstddef>

namespace e3 {

// Bytes read + written per second of a cudaMemcpy of `bytes`, median of `reps` after warm-up.
double measure_copy_bandwidth(size_t bytes, int reps);
// FLOP/s of an m×n×k bf16 product (fp32 accumulate) on random data, median of `reps`.
double measure_gemm_flops(int m, int n, int k, int reps);

}  // namespace e3
