// bfloat16 storage type: the dtype of Hugging Face checkpoints and of ModelOpt's amax buffers.
// Conversion from float rounds to nearest even (as torch's .to(bfloat16)); NaN stays NaN.
#pragma once

#include <bit>
#include <cstdint>

#include "aq/core/config.hpp"

namespace aq {

struct bf16 {
  std::uint16_t bits = 0;

  static constexpr bf16 from_bits(std::uint16_t raw) {
    bf16 value;
    value.bits = raw;
    return value;
  }
};

AQ_HD constexpr float bf16_to_float(bf16 value) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(value.bits) << 16);
}

AQ_HD constexpr bf16 float_to_bf16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it quiet and NaN after truncation
    return bf16::from_bits(static_cast<std::uint16_t>((bits >> 16) | 0x0040u));
  }
  const std::uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
  return bf16::from_bits(static_cast<std::uint16_t>((bits + rounding_bias) >> 16));
}

// Rounds a float to the nearest bf16 value and back: the precision of a bf16 tensor op.
AQ_HD constexpr float round_to_bf16(float value) { return bf16_to_float(float_to_bf16(value)); }

}  // namespace aq
