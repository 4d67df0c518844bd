// The real quantized codes of a weight (not fake quantization): q = quantize(w / scale) with the
// scale per tensor, per output channel or per block of 128 input columns, computed the way the
// exporting framework's tensor ops round. torch rounds `bf16_tensor / fp32_0d_tensor` to bf16
// (a 0-d tensor does not promote), while `bf16 / fp32 [out, 1]` stays fp32: the caller says
// which (division_rounding). Dequantization is code * scale. The compressed-tensors layout
// stores instead the codes aq's fake quantizer rounds to (fake_quantizer_*_codes).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "aq/core/bf16.hpp"
#include "aq/core/dtype.hpp"
#include "aq/formats/e2m1.hpp"
#include "aq/formats/e4m3.hpp"
#include "aq/formats/rounding.hpp"
#include "aq/quant/scaling.hpp"

namespace aq::hf_export {

// The dtype the quotient w / scale is rounded to before the cast to codes.
enum class division_rounding { f32, bf16, f16 };

inline float round_quotient(float value, division_rounding rounding) {
  if (rounding == division_rounding::bf16) return round_to_bf16(value);
  if (rounding == division_rounding::f16) return f16_to_float(float_to_f16(value));
  return value;
}

// The scale amax / bound in fp32 (ModelOpt's `amax.float() / maxbound`); an amax of 0 gives 1,
// as ModelOpt's export_amax maps it to the bound (an all-zero slot then has all-zero codes), and
// so does an amax so small that the quotient underflows (ModelOpt asserts a positive scale).
inline float scale_from_amax(float amax, float bound) {
  // ModelOpt computes `amax.float() / bound` with a Python number on the GPU, where torch multiplies
  // by the fp32 reciprocal (div_true with a CPU scalar): the same product here, bit for bit.
  const float scale = amax * (1.0f / bound);
  return scale > 0.0f ? scale : 1.0f;
}

inline std::vector<float> scales_from_amax(std::span<const float> amax, float bound) {
  std::vector<float> scales;
  for (const float a : amax) scales.push_back(scale_from_amax(a, bound));
  return scales;
}

// Calls fn with `rounding` as a compile-time constant, so the loop inside sees no branch on it.
template <class Fn>
void with_rounding(division_rounding rounding, Fn&& fn) {
  if (rounding == division_rounding::bf16) {
    fn(std::integral_constant<division_rounding, division_rounding::bf16>{});
  } else if (rounding == division_rounding::f16) {
    fn(std::integral_constant<division_rounding, division_rounding::f16>{});
  } else {
    fn(std::integral_constant<division_rounding, division_rounding::f32>{});
  }
}

// e4m3 codes of w / scale (one per-tensor scale); saturating at +-448 like a clamp before the cast.
inline std::vector<std::uint8_t> fp8_codes(std::span<const float> weight, float scale, division_rounding rounding) {
  std::vector<std::uint8_t> codes(weight.size());
  // Raw pointers: a byte store may alias anything, the vector's own pointer included, which
  // would otherwise be reloaded every iteration and keep the loop from vectorizing.
  std::uint8_t* const out = codes.data();
  const float* const in = weight.data();
  const std::size_t count = weight.size();
  with_rounding(rounding, [&](auto tag) {
    for (std::size_t i = 0; i < count; ++i) out[i] = formats::e4m3::encode(round_quotient(in[i] / scale, decltype(tag)::value));
  });
  return codes;
}

// Signed integer codes clamp(round_half_even(w / scale), low, high) of a row-major [rows x cols]
// weight, with one scale per row (group = cols) or per `group` consecutive columns of a row.
// Each slot's loop sees one scale and no branch on the rounding, so the compiler vectorizes it.
inline std::vector<std::int8_t> integer_codes(std::span<const float> weight, std::int64_t rows, std::int64_t cols,
                                              std::span<const float> scales, std::int64_t group, int low, int high,
                                              division_rounding rounding) {
  std::vector<std::int8_t> codes(weight.size());
  const std::int64_t slots = rows * (cols / group);
  std::int8_t* const out = codes.data();  // raw pointers: see fp8_codes
  const float* const in = weight.data();
  const float lowest = static_cast<float>(low), highest = static_cast<float>(high);
  with_rounding(rounding, [&](auto tag) {
    for (std::int64_t s = 0; s < slots; ++s) {
      const float scale = scales[static_cast<std::size_t>(s)];
      const std::int64_t begin = s * group;
      for (std::int64_t i = begin; i < begin + group; ++i) {
        float q = formats::detail::round_half_even(round_quotient(in[i] / scale, decltype(tag)::value));
        q = q < lowest ? lowest : q;
        q = q > highest ? highest : q;
        out[i] = static_cast<std::int8_t>(q);
      }
    }
  });
  return codes;
}

// ModelOpt's NVFP4QTensor (quantization/qtensor/nvfp4_tensor.py) for a [rows x cols] weight in
// blocks of 16 input columns: global scale g = amax / (6 * 448); block scale
// e4m3(block_amax / (6 * g)), 1 where that is 0; codes e2m1(w / (block_scale * g)) (round to
// nearest even, saturating at 6) with the sign bit set for w < 0; two codes per byte, the even
// column in the low nibble.
struct nvfp4_weight {
  std::vector<std::uint8_t> packed;        // [rows, cols / 2]
  std::vector<std::uint8_t> block_scales;  // e4m3 codes [rows, cols / 16]
  float global_scale = 1.0f;               // weight_scale_2
};

inline nvfp4_weight nvfp4_codes(std::span<const float> weight, std::int64_t rows, std::int64_t cols,
                                float global_amax) {
  constexpr std::int64_t block = 16;
  nvfp4_weight out;
  out.global_scale = scale_from_amax(global_amax, formats::e2m1::max_bound * formats::e4m3::max_bound);
  const float block_bound = formats::e2m1::max_bound * out.global_scale;
  out.packed.assign(static_cast<std::size_t>(rows * cols / 2), 0);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t b = 0; b < cols / block; ++b) {
      const std::size_t first = static_cast<std::size_t>(r * cols + b * block);
      float block_amax = 0.0f;
      for (std::size_t i = first; i < first + block; ++i) block_amax = std::max(block_amax, std::fabs(weight[i]));
      float ratio = block_amax / block_bound;
      if (ratio == 0.0f) ratio = 1.0f;
      const std::uint8_t scale_code = formats::e4m3::encode(ratio);
      out.block_scales.push_back(scale_code);
      const float divisor = formats::e4m3::decode(scale_code) * out.global_scale;
      for (std::size_t i = first; i < first + block; ++i) {
        const float q = weight[i] / divisor;
        const auto code = static_cast<std::uint8_t>(formats::e2m1::encode(std::fabs(q)) | (q < 0.0f ? 0x8u : 0u));
        out.packed[i / 2] |= static_cast<std::uint8_t>(i % 2 == 0 ? code : code << 4);
      }
    }
  }
  return out;
}

// The stored scale: the fp32 reciprocal of the forward scale (quant::scale_from_amax, bound /
// amax, what aq's fake quantizer multiplies by; 1 where that is 0: the slot quantizes to 0), so that
// code * stored scale is the fake-quantized value: exactly for e4m3, whose fake quantization
// multiplies by that reciprocal, within an ulp for integers, which divide by the forward scale.
inline float stored_scale(float forward) { return forward == 0.0f ? 1.0f : 1.0f / forward; }

// The integer codes F::quantize(w, bound / amax) of a [rows x cols] weight with one amax per row
// (group = cols) or per `group` consecutive columns of a row, and their stored scales.
template <class F>
std::pair<std::vector<std::int8_t>, std::vector<float>> fake_quantizer_int_codes(std::span<const float> weight,
                                                                               std::span<const float> amax,
                                                                               std::int64_t group) {
  std::vector<float> forward, stored;
  for (const float a : amax) {
    forward.push_back(quant::scale_from_amax<F>(a));
    stored.push_back(stored_scale(forward.back()));
  }
  std::vector<std::int8_t> codes(weight.size());
  std::int8_t* const out = codes.data();  // raw pointers: see fp8_codes
  const float* const in = weight.data();
  for (std::size_t s = 0; s < forward.size(); ++s) {
    const float scale = forward[s];
    const std::size_t begin = s * static_cast<std::size_t>(group);
    for (std::size_t i = begin; i < begin + static_cast<std::size_t>(group); ++i) {
      out[i] = scale == 0.0f ? 0 : static_cast<std::int8_t>(F::quantize(in[i], scale));
    }
  }
  return {std::move(codes), std::move(stored)};
}

// e4m3 codes of w * (448 / amax), saturating, as aq's fp8 fake quantizer encodes them.
inline std::vector<std::uint8_t> fake_quantizer_fp8_codes(std::span<const float> weight, float forward) {
  std::vector<std::uint8_t> codes(weight.size());
  std::uint8_t* const out = codes.data();
  const float* const in = weight.data();
  for (std::size_t i = 0; i < weight.size(); ++i) {
    out[i] = formats::e4m3::encode(forward == 0.0f ? 0.0f : formats::detail::mul_rn(in[i], forward));
  }
  return codes;
}

}  // namespace aq::hf_export
