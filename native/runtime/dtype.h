// Element types shared by tensors, checkpoints and kernels, and the scalar conversions between them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace e3 {

enum class DType : int32_t { BF16 = 0, F16, F32, I32, I64, U8, BOOL, F8E4M3 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);      // "bf16", "f16", ... as the TypeScript side names them
DType dtype_from_name(const std::string& name);  // throws ERR_INVALID_ARGUMENT

inline float bf16_to_float(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_float(uint16_t h);
float f8e4m3_to_float(uint8_t v);

// Converts n elements of `src` (type from) into `dst` (type to); only float types convert.
void convert_elements(const void* src, DType from, void* dst, DType to, size_t n);

}  // namespace e3
