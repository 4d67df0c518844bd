// none: the pass-through "format" of a disabled quantizer. Values stay as the model holds them
// (bf16); no amax is used. Its grid is bf16, so it still fits the number_format concept.
#pragma once

#include <cstdint>
#include <string_view>

#include "aq/core/bf16.hpp"
#include "aq/core/config.hpp"
#include "aq/formats/rounding.hpp"

namespace aq::formats {

struct none {
  using code_type = std::uint16_t;

  static constexpr std::string_view name = "none";
  static constexpr int bits = 16;  // ModelOpt counts a disabled quantizer as 16 bits
  static constexpr bool is_float = true;
  static constexpr bool is_passthrough = true;
  static constexpr bool saturates = false;  // bf16 rounding overflows to infinity
  static constexpr bool has_nan = true;     // its grid is bf16, which keeps NaN and infinities
  static constexpr bool has_inf = true;
  static constexpr float max_bound = 0x1.fep127f;  // largest finite bf16

  AQ_HD static constexpr float min_bound(bool /*narrow_range*/) { return -max_bound; }

  // Only meaningful as the bf16 grid; fake_quantize() short-circuits pass-through formats.
  AQ_HD static constexpr float quantize(float x, float scale, bool /*narrow_range*/ = false) {
    return round_to_bf16(detail::mul_rn(x, scale));
  }
  AQ_HD static constexpr float dequantize(float q, float scale) { return q / scale; }
  AQ_HD static constexpr code_type encode(float q) { return float_to_bf16(q).bits; }
  AQ_HD static constexpr float decode(code_type code) { return bf16_to_float(bf16::from_bits(code)); }
};

}  // namespace aq::formats
