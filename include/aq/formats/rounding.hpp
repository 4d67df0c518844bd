// Round-half-to-even, sign and power-of-two helpers on float bits, written without <cmath> or
// CUDA intrinsics so that format code is constexpr and gives identical bits on host and device.
#pragma once

#include <bit>
#include <cstdint>
#include <type_traits>

#include "aq/core/config.hpp"

namespace aq::formats::detail {

AQ_HD constexpr std::uint32_t float_bits(float value) { return std::bit_cast<std::uint32_t>(value); }

AQ_HD constexpr float bits_float(std::uint32_t bits) { return std::bit_cast<float>(bits); }

AQ_HD constexpr bool is_nan(float value) { return (float_bits(value) & 0x7fffffffu) > 0x7f800000u; }

AQ_HD constexpr float abs(float value) { return bits_float(float_bits(value) & 0x7fffffffu); }

// Magnitude of `magnitude` with the sign of `sign` (like std::copysign, constexpr).
AQ_HD constexpr float copysign(float magnitude, float sign) {
  return bits_float((float_bits(magnitude) & 0x7fffffffu) | (float_bits(sign) & 0x80000000u));
}

// 2^k as a float for -149 <= k <= 127 (float subnormals below -126).
AQ_HD constexpr float pow2(int k) {
  return k < -126 ? bits_float(1u << (k + 149)) : bits_float(static_cast<std::uint32_t>(k + 127) << 23);
}

// floor(log2(value)) of a positive finite float, subnormals included; exact, from the bits.
AQ_HD constexpr int floor_log2(float value) {
  const std::uint32_t exponent_field = (float_bits(value) >> 23) & 0xffu;
  const std::uint32_t significand = float_bits(value) & 0x7fffffu;
  if (exponent_field == 0) return static_cast<int>(std::bit_width(significand)) - 150;
  return static_cast<int>(exponent_field) - 127;
}

// a * b rounded once to fp32. On the device this is __fmul_rn so that nvcc can never contract
// the product with a following addition into an FMA (which would skip the product's rounding
// that ModelOpt's rint(x * s) sees); on the host a plain product.
AQ_HD constexpr float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  if (!std::is_constant_evaluated()) return __fmul_rn(a, b);
#endif
  return a * b;
}

// Nearest integer, ties to even, keeping the sign of zero: the same result as rintf() in the
// default rounding mode. Adding and subtracting 2^23 makes the FPU do the rounding; values at
// or above 2^23 are already integers (and infinities/NaN pass through). A select, not a branch,
// so that loops over it vectorize.
AQ_HD constexpr float round_half_even(float value) {
  const float magnitude = abs(value);
  float rounded = magnitude + 0x1p23f;
  rounded -= 0x1p23f;
  return magnitude < 0x1p23f ? copysign(rounded, value) : value;
}

}  // namespace aq::formats::detail
