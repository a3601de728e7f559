// What kernel launchers share with host code: the element type and no device code.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace e3k {

using bf16 = __nv_bfloat16;

inline unsigned ceil_div(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

}  // namespace e3k
