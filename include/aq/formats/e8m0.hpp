// e8m0: the OCP MX shared block scale. Unsigned and exponent-only: code c means 2^(c-127) for
// c = 0..254 and 0xff is NaN; there is no sign, no zero and no infinity. It is only ever a
// power-of-two scale, so it is a small struct of its own rather than a minifloat or a
// number_format: its encoding plus the rule that picks a block's exponent from the block amax.
#pragma once

#include <cstdint>
#include <string_view>

#include "aq/core/config.hpp"
#include "aq/formats/rounding.hpp"

namespace aq::formats {

struct e8m0 {
  using code_type = std::uint8_t;

  static constexpr std::string_view name = "e8m0";
  static constexpr int bits = 8;
  static constexpr int bias = 127;
  static constexpr int min_exponent = -127;  // code 0
  static constexpr int max_exponent = 127;   // code 254
  static constexpr bool has_nan = true;
  static constexpr bool has_inf = false;
  static constexpr code_type nan_code = 0xff;

  AQ_HD static constexpr float decode(code_type code) {
    if (code == nan_code) return detail::bits_float(0x7fc00000u);
    return detail::pow2(static_cast<int>(code) - bias);
  }

  // Code of 2^exponent; exponents outside [-127, 127] saturate (there is no zero or infinity).
  AQ_HD static constexpr code_type encode_exponent(int exponent) {
    const int clamped = exponent < min_exponent ? min_exponent : (exponent > max_exponent ? max_exponent : exponent);
    return static_cast<code_type>(clamped + bias);
  }

  // Code of a power-of-two scale: exact for 2^-127 .. 2^127. Any other positive finite value
  // gets the power of two of its binade (floor), saturating. NaN, infinities, zero and negative
  // values have no e8m0 value and give the NaN code, which marks the block invalid.
  AQ_HD static constexpr code_type encode(float power_of_two) {
    if (!(power_of_two > 0.0f) || power_of_two > 0x1.fffffep127f) return nan_code;
    return encode_exponent(detail::floor_log2(power_of_two));
  }

  // The block exponent aq uses, ModelOpt's: the smallest power of two that brings the block amax
  // within the element range, 2^ceil(log2(amax / element_max)), clamped to [-127, 127]. This is
  // compute_scale_e8m0_NV in modelopt/torch/quantization/src/tensor_quant_mx.cu (ModelOpt 0.39),
  // chosen by compute_scale there for an E8M0 scale format; MXFP4QTensor.quantize in
  // modelopt/torch/quantization/qtensor/mxfp4_tensor.py computes the same
  // ceil(max(log2(amax / 6), -127)). Like ModelOpt, amax / element_max is one fp32 division
  // (rounded to nearest) before the ceiling. amax of 0, infinity or NaN gives exponent 0
  // (scale 1), as ModelOpt's compute_scale does. Elements divided by 2^result never exceed
  // element_max, so nothing saturates (unlike the OCP rule below).
  AQ_HD static constexpr int shared_exponent(float amax, float element_max) {
    if (!is_usable_amax(amax)) return 0;
    const float ratio = amax / element_max;
    if (ratio <= detail::pow2(min_exponent)) return min_exponent;  // zero and tiny ratios included
    if (ratio > detail::pow2(max_exponent)) return max_exponent;
    const int below = detail::floor_log2(ratio);
    return detail::pow2(below) == ratio ? below : below + 1;
  }

  // The OCP MX v1.0 rule (section 6.3): 2^(floor(log2(amax)) - emax_elem), clamped to
  // [-127, 127], where emax_elem is the element format's `max_exponent` (2 for e2m1); block
  // values up to 2x element_max then saturate. ModelOpt has it too (compute_scale_e8m0_OCP in
  // tensor_quant_mx.cu) but does not use it; it is here for comparing the two rules.
  // Degenerate amax gives 0, as above.
  AQ_HD static constexpr int ocp_shared_exponent(float amax, int element_max_exponent) {
    if (!is_usable_amax(amax)) return 0;
    const int exponent = detail::floor_log2(amax) - element_max_exponent;
    return exponent < min_exponent ? min_exponent : (exponent > max_exponent ? max_exponent : exponent);
  }

 private:
  AQ_HD static constexpr bool is_usable_amax(float amax) { return amax > 0.0f && amax <= 0x1.fffffep127f; }
};

static_assert(e8m0::decode(127) == 1.0f && e8m0::encode(1.0f) == 127 && e8m0::shared_exponent(6.0f, 6.0f) == 0);

}  // namespace aq::formats
