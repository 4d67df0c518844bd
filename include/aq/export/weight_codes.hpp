// The real quantized codes of a weight (not fake quantization): q = quantize(w / scale) with the
// scale per tensor, per output channel or per block of 128 input columns, computed the way the
// exporting framework's tensor ops round. torch rounds `bf16_tensor / fp32_0d_tensor` to bf16
// (a 0-d tensor does not promote), while `bf16 / fp32 [out, 1]` stays fp32: the caller says
// which (division_rounding). Dequantization is code * scale.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "aq/core/bf16.hpp"
#include "aq/core/dtype.hpp"
#include "aq/formats/e2m1.hpp"
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
// as ModelOpt's export_amax maps it to the bound (an all-zero slot then has all-zero codes), and
// so does an amax so small that the quotient underflows (ModelOpt asserts a positive scale).
inline float scale_from_amax(float amax, float bound) {
  // ModelOpt computes `amax.float() / bound` with a Python number on the GPU, where torch multiplies
  // by the fp32 reciprocal (div_true with a CPU scalar): the same product here, bit for bit.
  const float scale = amax * (1.0f / bound);
  return scale > 0.0f ? scale : 1.0f;
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

}  // namespace aq::hf_export
