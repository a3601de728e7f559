#include "runtime/dtype.h"

#include <cmath>

#include "runtime/error.h"

namespace e3 {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::BF16: case DType::F16: return 2;
    case DType::F32: case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: case DType::BOOL: case DType::F8E4M3: return 1;
  }
  fail(Code::Internal, "unknown dtype");
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::F32: return "f32";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::U8: return "u8";
    case DType::BOOL: return "bool";
    case DType::F8E4M3: return "f8_e4m3";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (int i = 0; i <= int(DType::F8E4M3); ++i)
    if (name == dtype_name(DType(i))) return DType(i);
  fail(Code::InvalidArgument, "unknown dtype '" + name + "' (expected bf16, f16, f32, i32, i64, u8, bool or f8_e4m3)");
}

float f16_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do { man <<= 1; ++e; } while (!(man & 0x400));
      u = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 112) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// OCP FP8 E4M3 (the "fn" variant torch uses): no infinities, 0x7f/0xff are NaN.
float f8e4m3_to_float(uint8_t v) {
  int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
  if (exp == 15 && man == 7) return NAN;
  float mag = exp == 0 ? std::ldexp(float(man), -9) : std::ldexp(1.0f + man / 8.0f, exp - 7);
  return sign ? -mag : mag;
}

static float load_float(const void* p, DType t, size_t i) {
  switch (t) {
    case DType::BF16: return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F8E4M3: return f8e4m3_to_float(static_cast<const uint8_t*>(p)[i]);
    default: fail(Code::Internal, "not a float dtype");
  }
}

void convert_elements(const void* src, DType from, void* dst, DType to, size_t n) {
  if (from == to) {
    std::memcpy(dst, src, n * dtype_size(from));
    return;
  }
  bool float_from = from == DType::BF16 || from == DType::F16 || from == DType::F32 || from == DType::F8E4M3;
  E3_ARG(float_from && (to == DType::BF16 || to == DType::F32),
         std::string("cannot convert ") + dtype_name(from) + " to " + dtype_name(to));
  if (to == DType::F32) {
    float* d = static_cast<float*>(dst);
    for (size_t i = 0; i < n; ++i) d[i] = load_float(src, from, i);
  } else {
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (size_t i = 0; i < n; ++i) d[i] = float_to_bf16(load_float(src, from, i));
  }
}

}  // namespace e3
