// Signed symmetric integer formats (int8, int4, ...) as ModelOpt fake-quantizes them:
// q = clamp(rint(x * s), min, max), x' = q / s, with s = max_bound / amax chosen by the caller.
// A concrete format derives from signed_int<Bits> and adds its `name` (see int8.hpp, int4.hpp).
#pragma once

#include <cstdint>
#include <type_traits>

#include "aq/core/config.hpp"
#include "aq/formats/rounding.hpp"

namespace aq::formats {

template <int Bits>
struct signed_int {
  static_assert(Bits >= 2 && Bits <= 16, "signed_int: 2 to 16 bits");

  using code_type = std::conditional_t<(Bits <= 8), std::uint8_t, std::uint16_t>;

  static constexpr int bits = Bits;
  static constexpr bool is_float = false;
  static constexpr bool is_passthrough = false;
  static constexpr bool saturates = true;
  // No code is NaN, but quantize() passes NaN through as a float (see below).
  static constexpr bool has_nan = false;
  static constexpr bool has_inf = false;
  // ModelOpt's bound = 2^(bits-1) - 1 (127 for int8, 7 for int4); the scale maps amax onto it.
  static constexpr float max_bound = static_cast<float>((1 << (Bits - 1)) - 1);

  // Full range by default (ModelOpt narrow_range=False): -128 is reachable for int8, -8 for int4.
  AQ_HD static constexpr float min_bound(bool narrow_range) {
    return narrow_range ? -max_bound : -max_bound - 1.0f;
  }

  // NaN stays NaN (the comparisons below are false for it), as in ModelOpt's CUDA kernel.
  AQ_HD static constexpr float quantize(float x, float scale, bool narrow_range = false) {
    float q = detail::round_half_even(detail::mul_rn(x, scale));
    q = q > max_bound ? max_bound : q;
    const float lowest = min_bound(narrow_range);
    q = q < lowest ? lowest : q;
    return q;
  }

  // Division, not multiplication by a reciprocal: ModelOpt computes q / s.
  AQ_HD static constexpr float dequantize(float q, float scale) { return q / scale; }

  // Two's complement bit pattern of a grid value (an integer within the full range).
  AQ_HD static constexpr code_type encode(float q) {
    const int value = static_cast<int>(q);
    return static_cast<code_type>(static_cast<unsigned>(value) & ((1u << Bits) - 1u));
  }

  AQ_HD static constexpr float decode(code_type code) {
    const int raw = static_cast<int>(code) & ((1 << Bits) - 1);
    const int value = raw >= (1 << (Bits - 1)) ? raw - (1 << Bits) : raw;
    return static_cast<float>(value);
  }
};

}  // namespace aq::formats
