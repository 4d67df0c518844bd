// The real quantized codes of a weight (not fake quantization): q = quantize(w / scale) with the
// scale per tensor, per output channel or per block of 128 input columns, computed the way the
// exporting framework's tensor ops round. torch rounds `bf16_tensor / fp32_0d_tensor` to bf16
// (a 0-d tensor does not promote), while `bf16 / fp32 [out, 1]` stays fp32: the caller says
// which (division_rounding). Dequantization is code * scale.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "aq/core/bf16.hpp"
#include "aq/core/dtype.hpp"
#include "aq/formats/e4m3.hpp"
#include "aq/formats/rounding.hpp"

namespace aq::hf_export {

// The dtype the quotient w / scale is rounded to before the cast to codes.
enum class division_rounding { f32, bf16, f16 };

inline float round_quotient(float value, division_rounding rounding) {
  if (rounding == division_rounding::bf16) return round_to_bf16(value);
  if (rounding == division_rounding::f16) return f16_to_float(float_to_f16(value));
  return value;
}

// The scale amax / bound in fp32 (ModelOpt's `amax.float() / maxbound`); an amax of 0 gives 1,
// as ModelOpt's export_amax maps it to the bound (an all-zero slot then has all-zero codes).
inline float scale_from_amax(float amax, float bound) { return amax > 0.0f ? amax / bound : 1.0f; }

// e4m3 codes of w / scale (one per-tensor scale); saturating at +-448 like a clamp before the cast.
inline std::vector<std::uint8_t> fp8_codes(std::span<const float> weight, float scale, division_rounding rounding) {
  std::vector<std::uint8_t> codes(weight.size());
  for (std::size_t i = 0; i < weight.size(); ++i) {
    codes[i] = formats::e4m3::encode(round_quotient(weight[i] / scale, rounding));
  }
  return codes;
}

// Signed integer codes clamp(round_half_even(w / scale), low, high) of a row-major [rows x cols]
// weight, with one scale per row (group = cols) or per `group` consecutive columns of a row.
inline std::vector<std::int8_t> integer_codes(std::span<const float> weight, std::int64_t rows, std::int64_t cols,
                                              std::span<const float> scales, std::int64_t group, int low, int high,
                                              division_rounding rounding) {
  const std::int64_t groups_per_row = cols / group;
  std::vector<std::int8_t> codes(weight.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::size_t i = static_cast<std::size_t>(r * cols + c);
      const float scale = scales[static_cast<std::size_t>(r * groups_per_row + c / group)];
      float q = formats::detail::round_half_even(round_quotient(weight[i] / scale, rounding));
      q = q < static_cast<float>(low) ? static_cast<float>(low) : q > static_cast<float>(high) ? static_cast<float>(high) : q;
      codes[i] = static_cast<std::int8_t>(q);
    }
  }
  return codes;
}

}  // namespace aq::hf_export
