// Fake quantization (quantize then dequantize, values stay float) exactly as ModelOpt computes
// it, per element (AQ_HD, shared with the CUDA kernel) and over a row-major matrix with
// per-tensor / per-channel / per-block amax. Used by calibration-aware scoring of every recipe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/bf16.hpp"
#include "aq/core/config.hpp"
#include "aq/core/error.hpp"
#include "aq/formats/format.hpp"
#include "aq/formats/rounding.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/quantizer.hpp"

namespace aq::quant {

// amax at or below 2^-24 quantizes everything to 0 for every format. ModelOpt does this for
// integers (amax < 2^-24 in CUDA, <= in Python) but returns NaN for FP8 with amax = 0; aq never
// produces NaN from a zero amax (documented in docs/formats.md).
inline constexpr float zero_amax_threshold = 0x1p-24f;

// Whether results are kept in fp32 or rounded to bf16 as ModelOpt's cast back to the bf16 model dtype.
enum class output_rounding { fp32, bf16 };

AQ_HD constexpr float round_output(float value, output_rounding rounding) {
  return rounding == output_rounding::bf16 ? round_to_bf16(value) : value;
}

// s = max_bound / amax in fp32; 0 encodes "amax too small (or not a number): output 0".
template <number_format F>
AQ_HD constexpr float scale_from_amax(float amax) {
  return amax > zero_amax_threshold ? F::max_bound / amax : 0.0f;
}

// One element given a precomputed scale (kernels compute the scale once per amax slot; the
// result is identical because the scale is the same fp32 operation).
template <number_format F>
AQ_HD constexpr float fake_quantize_scaled(float x, float scale, bool narrow_range = false) {
  if constexpr (F::is_passthrough) {
    return x;
  } else {
    if (scale == 0.0f) return 0.0f;
    return F::dequantize(F::quantize(x, scale, narrow_range), scale);
  }
}

// One element: fp32 result.
template <number_format F>
AQ_HD constexpr float fake_quantize(float x, float amax, bool narrow_range = false) {
  return fake_quantize_scaled<F>(x, scale_from_amax<F>(amax), narrow_range);
}

// One element: result rounded to bf16, as ModelOpt returns it for a bf16 model.
template <number_format F>
AQ_HD constexpr float fake_quantize_bf16(float x, float amax, bool narrow_range = false) {
  return round_to_bf16(fake_quantize<F>(x, amax, narrow_range));
}

namespace detail {

inline void check_matrix(std::size_t size, std::int64_t rows, std::int64_t cols, std::string_view what,
                         std::string_view role) {
  if (rows < 0 || cols < 0 || static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols) != size) {
    throw error(std::string(what) + ": " + std::string(role) + " has " + std::to_string(size) +
                " elements, expected rows x cols = " + std::to_string(rows) + " x " + std::to_string(cols));
  }
}

inline void throw_not_finite(std::string_view what, float value, std::size_t index) {
  throw error(std::string(what) + ": amax input must be finite, found " +
              (formats::detail::is_nan(value) ? std::string("nan") : std::string(value > 0 ? "inf" : "-inf")) +
              " at element " + std::to_string(index));
}

}  // namespace detail

// max |x| per amax slot of a row-major [rows x cols] matrix (ModelOpt's reduce_amax over the
// granularity's reduce axes). Non-finite values are an error: they would poison every scale.
template <granularity G>
std::vector<float> compute_amax(std::span<const float> data, std::int64_t rows, std::int64_t cols,
                                std::string_view what = "tensor") {
  detail::check_matrix(data.size(), rows, cols, what, "data");
  std::vector<float> amax(static_cast<std::size_t>(G::amax_count(rows, cols)), 0.0f);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::size_t index = static_cast<std::size_t>(r * cols + c);
      const float magnitude = formats::detail::abs(data[index]);
      if (!(magnitude <= 0x1.fffffep127f)) detail::throw_not_finite(what, data[index], index);
      float& slot = amax[static_cast<std::size_t>(G::amax_index(r, c, cols))];
      if (magnitude > slot) slot = magnitude;
    }
  }
  return amax;
}

// Fake-quantizes a row-major [rows x cols] matrix with the given amax (layout of Q's
// granularity; ignored and may be empty when Q is disabled). input and output may alias.
template <quantizer_spec Q>
void fake_quantize_matrix(std::span<const float> input, std::span<float> output, std::int64_t rows,
                          std::int64_t cols, std::span<const float> amax,
                          output_rounding rounding = output_rounding::fp32, std::string_view what = "tensor") {
  using F = typename Q::format_type;
  using G = typename Q::granularity_type;
  detail::check_matrix(input.size(), rows, cols, what, "input");
  detail::check_matrix(output.size(), rows, cols, what, "output");
  if constexpr (!Q::enabled) {
    for (std::size_t i = 0; i < input.size(); ++i) output[i] = round_output(input[i], rounding);
  } else {
    const auto slots = static_cast<std::size_t>(G::amax_count(rows, cols));
    if (amax.size() != slots) {
      throw error(std::string(what) + ": amax has " + std::to_string(amax.size()) + " values, expected " +
                  std::to_string(slots) + " for " + Q::label() + " of a " + std::to_string(rows) + " x " +
                  std::to_string(cols) + " matrix");
    }
    std::vector<float> scales(slots);
    for (std::size_t s = 0; s < slots; ++s) scales[s] = scale_from_amax<F>(amax[s]);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < cols; ++c) {
        const std::size_t index = static_cast<std::size_t>(r * cols + c);
        const float scale = scales[static_cast<std::size_t>(G::amax_index(r, c, cols))];
        output[index] = round_output(fake_quantize_scaled<F>(input[index], scale, Q::narrow_range), rounding);
      }
    }
  }
}

// Weights are calibrated from themselves: computes amax from the matrix, fake-quantizes it and
// returns the amax (empty when Q is disabled).
template <quantizer_spec Q>
std::vector<float> fake_quantize_weight(std::span<const float> weight, std::span<float> output, std::int64_t rows,
                                        std::int64_t cols, output_rounding rounding = output_rounding::fp32,
                                        std::string_view what = "weight") {
  std::vector<float> amax;
  if constexpr (Q::enabled) amax = compute_amax<typename Q::granularity_type>(weight, rows, cols, what);
  fake_quantize_matrix<Q>(weight, output, rows, cols, amax, rounding, what);
  return amax;
}

}  // namespace aq::quant
