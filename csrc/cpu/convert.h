// Loads and stores between a tensor's dtype and its accumulation type (float; double for
// double tensors) that the vectoriser can see through. c10::Half's and c10::BFloat16's own
// conversions go through a struct temporary per element, and GCC then gives up on the whole
// loop ("more than one data ref in stmt"): every 16-bit CPU kernel ran as scalar code, 10-20x
// slower than its fp32 twin. These work on the raw bits, with the same rounding as c10
// (round to nearest even; NaN to c10's quiet NaN); tests/test_cpu_capability.py puts every
// 16-bit pattern through them and compares the bits with torch's own conversions.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../acc_type.h"

namespace fastgan {
namespace cpu {

namespace bits {
C10_ALWAYS_INLINE float as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
C10_ALWAYS_INLINE uint32_t of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

C10_ALWAYS_INLINE float from_bf16(uint16_t h) { return as_float(uint32_t(h) << 16); }
C10_ALWAYS_INLINE uint16_t to_bf16(float f) {
  const uint32_t u = of(f);
  return uint16_t(f != f ? 0x7FC0u : (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// IEEE half <-> float without branches: normal numbers by rescaling the exponent with one
// multiply, subnormals by a magic-number subtraction; the store lets the float adder round
// the mantissa (to nearest even) by adding a power of two that puts the half's last mantissa
// bit at the float's.
C10_ALWAYS_INLINE float from_half(uint16_t h) {
  const uint32_t w = uint32_t(h) << 16, sign = w & 0x80000000u, two_w = w + w;
  const float normal = as_float((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float subnormal = as_float((two_w >> 17) | (126u << 23)) - 0.5f;
  return as_float(sign | (two_w < (1u << 27) ? of(subnormal) : of(normal)));
}
C10_ALWAYS_INLINE uint16_t to_half(float f) {
  const uint32_t w = of(f), two_w = w + w, sign = w & 0x80000000u;
  uint32_t bias = two_w & 0xFF000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  const uint32_t rounded = of(as_float((bias >> 1) + 0x07800000u) + (std::fabs(f) * 0x1.0p+112f) * 0x1.0p-110f);
  const uint32_t magnitude = ((rounded >> 13) & 0x7C00u) + (rounded & 0x0FFFu);
  return uint16_t((sign >> 16) | (two_w > 0xFF000000u ? 0x7E00u : magnitude));
}
}  // namespace bits

template <typename scalar_t>
C10_ALWAYS_INLINE acc_type<scalar_t> load(scalar_t v) {
  if constexpr (std::is_same<scalar_t, c10::BFloat16>::value)
    return bits::from_bf16(v.x);
  else if constexpr (std::is_same<scalar_t, c10::Half>::value)
    return bits::from_half(v.x);
  else
    return v;
}

template <typename scalar_t, typename acc_t>
C10_ALWAYS_INLINE scalar_t store(acc_t v) {
  if constexpr (std::is_same<scalar_t, c10::BFloat16>::value)
    return c10::BFloat16(bits::to_bf16(float(v)), c10::BFloat16::from_bits());
  else if constexpr (std::is_same<scalar_t, c10::Half>::value)
    return c10::Half(bits::to_half(float(v)), c10::Half::from_bits());
  else
    return scalar_t(v);
}

}  // namespace cpu
}  // namespace fastgan
