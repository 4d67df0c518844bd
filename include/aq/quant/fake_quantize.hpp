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
#include "aq/quant/scaling.hpp"

namespace aq::quant {

// Whether results are kept in fp32 or rounded to bf16 as ModelOpt's cast back to the bf16 model dtype.
enum class output_rounding { fp32, bf16 };

AQ_HD constexpr float round_output(float value, output_rounding rounding) {
  return rounding == output_rounding::bf16 ? round_to_bf16(value) : value;
}

// One element of a static or dynamic fp32-scaled quantizer: fp32 result.
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

// How many calibrated amax values Q takes for a [rows x cols] matrix: one per granularity slot
// for static scaling, one per-tensor global amax for NVFP4-style block scales, none for
// dynamic scaling (or a disabled quantizer).
template <quantizer_spec Q>
std::size_t calibrated_amax_count(std::int64_t rows, std::int64_t cols) {
  using S = typename Q::scaling_type;
  if constexpr (!Q::enabled || !S::calibrated) return 0;
  if constexpr (S::uses_global_amax) return 1;
  return static_cast<std::size_t>(Q::granularity_type::amax_count(rows, cols));
}

// ModelOpt's `_amax` shape for that amax: the granularity's for static scaling, [] for a global one.
template <quantizer_spec Q>
std::vector<std::int64_t> calibrated_amax_shape(std::int64_t rows, std::int64_t cols) {
  using S = typename Q::scaling_type;
  if constexpr (!Q::enabled || !S::calibrated || S::uses_global_amax) return {};
  return Q::granularity_type::amax_shape(rows, cols);
}

// Max calibration of one tensor for Q (the layout of calibrated_amax_count).
template <quantizer_spec Q>
std::vector<float> calibrate_amax(std::span<const float> data, std::int64_t rows, std::int64_t cols,
                                  std::string_view what = "tensor") {
  using S = typename Q::scaling_type;
  if constexpr (!Q::enabled || !S::calibrated) return {};
  if constexpr (S::uses_global_amax) return compute_amax<per_tensor>(data, rows, cols, what);
  return compute_amax<typename Q::granularity_type>(data, rows, cols, what);
}

// The context of Q's scales for a [rows x cols] matrix (see scale_context).
template <quantizer_spec Q>
scale_context make_scale_context(std::int64_t rows, std::int64_t cols, std::span<const float> amax) {
  scale_context context;
  if constexpr (Q::scaling_type::uses_global_amax) context.global_amax = amax.empty() ? 0.0f : amax.front();
  if constexpr (Q::format_type::is_float) {
    int long_axes = 0;
    for (const std::int64_t e : Q::granularity_type::amax_shape(rows, cols)) long_axes += e > 1 ? 1 : 0;
    if (long_axes > 1) context.rounding = scale_rounding::reciprocal_multiply;
  }
  return context;
}

// The scale of every granularity slot of a matrix: from the calibrated amax (static scaling) or
// from the slot's own values (dynamic and block scales, with the calibrated global amax if any).
template <quantizer_spec Q>
std::vector<typename Q::scaling_type::slot_scale> slot_scales(std::span<const float> input, std::int64_t rows,
                                                               std::int64_t cols, std::span<const float> amax) {
  using F = typename Q::format_type;
  using G = typename Q::granularity_type;
  using S = typename Q::scaling_type;
  const auto slots = static_cast<std::size_t>(G::amax_count(rows, cols));
  const scale_context context = make_scale_context<Q>(rows, cols, amax);
  std::vector<typename S::slot_scale> scales(slots);
  if constexpr (S::calibrated && !S::uses_global_amax) {
    for (std::size_t s = 0; s < slots; ++s) scales[s] = S::template make<F>(amax[s], context);
  } else {
    std::vector<float> slot_amax(slots, S::initial_amax);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < cols; ++c) {
        float& slot = slot_amax[static_cast<std::size_t>(G::amax_index(r, c, cols))];
        slot = S::accumulate(slot, input[static_cast<std::size_t>(r * cols + c)]);
      }
    }
    for (std::size_t s = 0; s < slots; ++s) scales[s] = S::template make<F>(slot_amax[s], context);
  }
  return scales;
}

// Fake-quantizes a row-major [rows x cols] matrix with the given calibrated amax (layout of
// calibrated_amax_count; may be empty when Q needs none). input and output may alias.
template <quantizer_spec Q>
void fake_quantize_matrix(std::span<const float> input, std::span<float> output, std::int64_t rows,
                          std::int64_t cols, std::span<const float> amax,
                          output_rounding rounding = output_rounding::fp32, std::string_view what = "tensor") {
  using F = typename Q::format_type;
  using G = typename Q::granularity_type;
  using S = typename Q::scaling_type;
  detail::check_matrix(input.size(), rows, cols, what, "input");
  detail::check_matrix(output.size(), rows, cols, what, "output");
  if constexpr (!Q::enabled) {
    for (std::size_t i = 0; i < input.size(); ++i) output[i] = round_output(input[i], rounding);
  } else {
    const std::size_t expected = calibrated_amax_count<Q>(rows, cols);
    if (amax.size() != expected) {
      throw error(std::string(what) + ": amax has " + std::to_string(amax.size()) + " values, expected " +
                  std::to_string(expected) + " for " + Q::label() + " of a " + std::to_string(rows) + " x " +
                  std::to_string(cols) + " matrix");
    }
    const auto scales = slot_scales<Q>(input, rows, cols, amax);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < cols; ++c) {
        const std::size_t index = static_cast<std::size_t>(r * cols + c);
        const auto& scale = scales[static_cast<std::size_t>(G::amax_index(r, c, cols))];
        output[index] = round_output(S::template apply<F>(input[index], scale, Q::narrow_range), rounding);
      }
    }
  }
}

// Weights are calibrated from themselves: computes their amax, fake-quantizes them and returns
// the calibrated amax (empty when Q needs none).
template <quantizer_spec Q>
std::vector<float> fake_quantize_weight(std::span<const float> weight, std::span<float> output, std::int64_t rows,
                                        std::int64_t cols, output_rounding rounding = output_rounding::fp32,
                                        std::string_view what = "weight") {
  std::vector<float> amax = calibrate_amax<Q>(weight, rows, cols, what);
  fake_quantize_matrix<Q>(weight, output, rows, cols, amax, rounding, what);
  return amax;
}

}  // namespace aq::quant
