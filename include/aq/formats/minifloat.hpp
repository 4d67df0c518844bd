// Small sign-exponent-mantissa float formats (e4m3, e5m2, e2m1, e3m2, e2m3, ...): bit-exact
// encode/decode with round-to-nearest-even and saturation to the largest finite value, as CUDA's
// __nv_fp8_* with __NV_SATFINITE, but in portable integer code (constexpr, identical on host and
// device).
#pragma once

#include <cstdint>
#include <type_traits>

#include "aq/core/config.hpp"
#include "aq/formats/rounding.hpp"

namespace aq::formats {

// Which codes are not finite numbers.
enum class minifloat_specials {
  nan_only,  // "fn" formats (e4m3fn): no infinities, only S.1111...1 is NaN
  ieee,      // IEEE-like (e5m2): exponent all ones is infinity (mantissa 0) or NaN
  // OCP MX element formats (e2m1, e3m2, e2m3): every code is a finite number, the top binade
  // included, so the largest value is S.11...1 (6 for e2m1, not the 4 `nan_only` would leave).
  finite_only,
};

namespace detail {

// Value of a finite, non-negative code (sign bit clear) of an E/M minifloat with bias 2^(E-1)-1.
template <int E, int M>
AQ_HD constexpr float minifloat_magnitude(unsigned magnitude) {
  constexpr int bias = (1 << (E - 1)) - 1;
  const unsigned exponent = magnitude >> M;
  const unsigned mantissa = magnitude & ((1u << M) - 1u);
  if (exponent == 0) return static_cast<float>(mantissa) * pow2(1 - bias - M);  // exact: few bits
  return bits_float((static_cast<std::uint32_t>(static_cast<int>(exponent) - bias + 127) << 23) |
                    (static_cast<std::uint32_t>(mantissa) << (23 - M)));
}

// Largest finite code with the sign bit clear: S.11...1 where every code is finite, one below
// it where only that code is NaN, the top of the second-highest binade for IEEE-like formats.
template <int E, int M>
constexpr unsigned max_finite_magnitude(minifloat_specials specials) {
  const unsigned all_ones = (1u << (E + M)) - 1u;
  if (specials == minifloat_specials::finite_only) return all_ones;
  if (specials == minifloat_specials::nan_only) return all_ones - 1u;
  return (((1u << E) - 2u) << M) | ((1u << M) - 1u);
}

}  // namespace detail

template <int E, int M, minifloat_specials Specials>
struct minifloat {
  static_assert(E >= 2 && E <= 8 && M >= 1 && M <= 10 && 1 + E + M <= 16, "minifloat: unsupported layout");

  using code_type = std::conditional_t<(1 + E + M <= 8), std::uint8_t, std::uint16_t>;

  static constexpr int exponent_bits = E;
  static constexpr int mantissa_bits = M;
  static constexpr int bias = (1 << (E - 1)) - 1;
  static constexpr int bits = 1 + E + M;
  static constexpr bool is_float = true;
  static constexpr bool is_passthrough = false;
  static constexpr bool saturates = true;
  static constexpr bool has_nan = Specials != minifloat_specials::finite_only;
  static constexpr bool has_inf = Specials == minifloat_specials::ieee;

  static constexpr unsigned magnitude_mask = (1u << (E + M)) - 1u;
  static constexpr unsigned sign_bit = 1u << (E + M);
  static constexpr unsigned max_finite_code = detail::max_finite_magnitude<E, M>(Specials);
  // Every NaN input encodes to this positive code: the NaN S.11...1 where the format has one, as
  // CUDA's conversion does (0x7f for e4m3). A finite_only format has no NaN; S.11...1 is then
  // +max, which is what ModelOpt's fake quantization of these formats gives for NaN
  // (convert_to_table_types in modelopt/torch/quantization/src/tensor_quant_mx.h saturates
  // "infs and nans" to +-max, and NaN fails its `x < 0` sign test, so it becomes +max).
  static constexpr unsigned nan_code = magnitude_mask;
  static constexpr float max_bound = detail::minifloat_magnitude<E, M>(max_finite_code);
  // floor(log2(max_bound)): the OCP MX "emax_elem" (8 for e4m3, 2 for e2m1, 4 for e3m2).
  static constexpr int max_exponent = static_cast<int>(max_finite_code >> M) - bias;

  AQ_HD static constexpr float min_bound(bool /*narrow_range: integer-only notion*/) { return -max_bound; }

  AQ_HD static constexpr code_type encode(float x) {
    const std::uint32_t x_bits = detail::float_bits(x);
    const unsigned sign = (x_bits >> 31) != 0 ? sign_bit : 0u;
    const std::uint32_t magnitude = x_bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return static_cast<code_type>(nan_code);

    constexpr std::uint32_t min_normal_field = static_cast<std::uint32_t>(127 + 1 - bias);
    unsigned code = 0;
    if (magnitude >= (min_normal_field << 23)) {
      // Normal in the target: drop 23-M mantissa bits with round-to-nearest-even on the whole
      // exponent|mantissa word, so a carry moves to the next binade; then re-bias.
      constexpr int shift = 23 - M;
      const std::uint32_t rounded =
          (magnitude + ((1u << (shift - 1)) - 1u) + ((magnitude >> shift) & 1u)) >> shift;
      code = static_cast<unsigned>(rounded - (static_cast<std::uint32_t>(127 - bias) << M));
      if (code > max_finite_code) code = max_finite_code;  // saturate (infinity included)
    } else {
      // Subnormal or zero in the target: count of the smallest step 2^(1-bias-M), rounded to even.
      const std::uint32_t field = magnitude >> 23;
      const std::uint32_t significand = field == 0 ? (magnitude & 0x7fffffu) : ((magnitude & 0x7fffffu) | 0x800000u);
      const int exponent = field == 0 ? 1 : static_cast<int>(field);  // value = significand * 2^(exponent-150)
      const int shift = 150 - exponent + 1 - bias - M;                // > 23 - M here
      if (shift <= 25) {
        std::uint32_t count = significand >> shift;
        const std::uint32_t remainder = significand & ((1u << shift) - 1u);
        const std::uint32_t half = 1u << (shift - 1);
        if (remainder > half || (remainder == half && (count & 1u) != 0)) ++count;
        code = static_cast<unsigned>(count);  // may reach 1 << M: the smallest normal, same bits
      }  // else below half the smallest step: rounds to zero
    }
    return static_cast<code_type>(sign | code);
  }

  AQ_HD static constexpr float decode(code_type code) {
    const unsigned magnitude = static_cast<unsigned>(code) & magnitude_mask;
    const bool negative = (static_cast<unsigned>(code) & sign_bit) != 0;
    if constexpr (Specials == minifloat_specials::nan_only) {
      if (magnitude == magnitude_mask) return detail::bits_float(0x7fc00000u);
    } else if constexpr (Specials == minifloat_specials::ieee) {
      if ((magnitude >> M) == (1u << E) - 1u) {
        if ((magnitude & ((1u << M) - 1u)) != 0) return detail::bits_float(0x7fc00000u);
        return negative ? detail::bits_float(0xff800000u) : detail::bits_float(0x7f800000u);
      }
    }
    const float value = detail::minifloat_magnitude<E, M>(magnitude);
    return negative ? -value : value;
  }

  AQ_HD static constexpr float quantize(float x, float scale, bool /*narrow_range*/ = false) {
    return decode(encode(detail::mul_rn(x, scale)));
  }

  // ModelOpt multiplies by the fp32 reciprocal of the scale (inv = 1/scale), unlike integers.
  AQ_HD static constexpr float dequantize(float q, float scale) { return q * (1.0f / scale); }
};

}  // namespace aq::formats
