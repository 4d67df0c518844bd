// Scaling: how a quantizer turns the amax of a slot (one granularity cell) into the scale that
// maps the slot onto its format's grid, and how an element is then fake-quantized. The policy
// is the third part of a quantizer spec, beside the format and the granularity:
//   static_amax        fp32 max_bound/amax, amax calibrated (ModelOpt's max-calibrated quantizers)
//   dynamic_amax       the same rule, amax taken from the data itself at run time (per-token FP8)
//   e8m0_block_scale   MX: a shared power of two per block, from the block's own amax
//   e4m3_block_scale   NVFP4: e4m3 block scales under a calibrated per-tensor fp32 global scale
// Every function is AQ_HD and constexpr-friendly, so the host and the CUDA kernel share it.
#pragma once

#include <concepts>
#include <limits>
#include <string_view>

#include "aq/core/config.hpp"
#include "aq/formats/e4m3.hpp"
#include "aq/formats/e8m0.hpp"
#include "aq/formats/format.hpp"
#include "aq/formats/rounding.hpp"

namespace aq::quant {

// An integer quantizer with amax at or below 2^-24 outputs 0 (ModelOpt: amax < 2^-24 in CUDA,
// <= in Python). A float quantizer computes its scale down to any positive amax, as ModelOpt
// does; where the scale overflows (amax 0 or subnormal) ModelOpt's output is NaN for x = 0 and
// ±0 otherwise, aq's is ±0 throughout: aq never produces NaN from an amax (docs/formats.md).
inline constexpr float zero_amax_threshold = 0x1p-24f;

// How an fp32 scale is rounded: max_bound / amax once (ModelOpt's CUDA kernels), or as torch's
// `max_bound / amax` on a tensor computes it, reciprocal(amax) · max_bound, twice (ModelOpt's
// Python fp8 path, which 2-D blocks always take).
enum class scale_rounding { divide, reciprocal_multiply };

// What a slot's scale may depend on besides its amax, the same for every slot of a matrix.
struct scale_context {
  float global_amax = 0.0f;  // the calibrated per-tensor amax, for policies that use one
  // ModelOpt's fp8 kernels take an amax with at most one axis longer than 1; any other (2-D
  // tiles) goes through its Python path, which rounds the scale as reciprocal_multiply.
  scale_rounding rounding = scale_rounding::divide;
};

// s = max_bound / amax in fp32; 0 encodes "no usable scale: output ±0".
template <number_format F>
AQ_HD constexpr float scale_from_amax(float amax, scale_rounding rounding = scale_rounding::divide) {
  if (!F::is_float) return amax > zero_amax_threshold ? F::max_bound / amax : 0.0f;
  if (!(amax > 0.0f)) return 0.0f;
  const float scale = rounding == scale_rounding::divide ? F::max_bound / amax
                                                         : formats::detail::mul_rn(1.0f / amax, F::max_bound);
  return scale <= 0x1.fffffep127f ? scale : 0.0f;
}

// One element given a precomputed scale (kernels compute the scale once per amax slot; the
// result is identical because the scale is the same fp32 operation).
template <number_format F>
AQ_HD constexpr float fake_quantize_scaled(float x, float scale, bool narrow_range = false) {
  if constexpr (F::is_passthrough) {
    return x;
  } else {
    if (scale == 0.0f) return F::is_float ? formats::detail::copysign(0.0f, x) : 0.0f;
    return F::dequantize(F::quantize(x, scale, narrow_range), scale);
  }
}

namespace detail {

// Flush-to-zero of a subnormal (sign kept), as the device does under --use_fast_math.
AQ_HD constexpr float flush_subnormal(float value) {
  return (formats::detail::float_bits(value) & 0x7f800000u) == 0 ? formats::detail::copysign(0.0f, value) : value;
}

AQ_HD constexpr float mul_ftz(float a, float b) {
  return flush_subnormal(formats::detail::mul_rn(flush_subnormal(a), flush_subnormal(b)));
}

AQ_HD constexpr bool is_finite(float value) { return formats::detail::abs(value) <= 0x1.fffffep127f; }

// max(a, |x|) that ignores NaN (fmaxf, Triton's max): the block reductions of the MX and
// NVFP4 kernels.
AQ_HD constexpr float max_ignoring_nan(float a, float x) {
  const float magnitude = formats::detail::abs(x);
  return formats::detail::is_nan(magnitude) || magnitude <= a ? a : magnitude;
}

}  // namespace detail

// ---- static and dynamic fp32 amax ---------------------------------------------------------------

template <bool Dynamic>
struct fp32_amax_scaling {
  static constexpr std::string_view name = Dynamic ? "dynamic" : "static";
  static constexpr bool calibrated = !Dynamic;  // amax per granularity slot from calibration
  static constexpr bool uses_global_amax = false;
  struct slot_scale {
    float scale;
  };

  // Dynamic amax is torch's amax over the slot: NaN in the slot makes it NaN (then no output
  // is a number, as in ModelOpt; aq's zero-amax rule turns that NaN into zeros instead).
  AQ_HD static constexpr float accumulate(float amax, float x) {
    const float magnitude = formats::detail::abs(x);
    return formats::detail::is_nan(magnitude) || magnitude > amax ? magnitude : amax;
  }
  static constexpr float initial_amax = 0.0f;
  template <number_format F>
  AQ_HD static constexpr slot_scale make(float slot_amax, const scale_context& context) {
    return {scale_from_amax<F>(slot_amax, context.rounding)};
  }
  template <number_format F>
  AQ_HD static constexpr float apply(float x, slot_scale s, bool narrow_range) {
    return fake_quantize_scaled<F>(x, s.scale, narrow_range);
  }
};

using static_amax = fp32_amax_scaling<false>;
using dynamic_amax = fp32_amax_scaling<true>;

// ---- MX: e8m0 shared exponents --------------------------------------------------------------------

// ModelOpt's fused_amax_convert (src/tensor_quant_mx.cu, built with --use_fast_math): block amax
// by fmaxf over |x| clamped to FLT_MAX (NaN ignored, infinity counts as FLT_MAX, subnormals
// flushed); a zero or NaN amax gives scale 1; otherwise the exponent e of
// e8m0::shared_exponent; y = ±convert(|x|·2^-e)·2^e with every product flushed to zero where
// subnormal, and the sign + only for x > 0 (its `sign` is left unset otherwise, and the
// compiled kernel gives -1: zeros and NaN come out negative). The element conversion is the
// format's saturating round-to-nearest-even (ModelOpt's tables and __nv_fp8_e4m3 give the same
// grid values); integers are clamped to ±max (narrow range), NaN becoming 0, as
// convert_int8_saturating's rint-then-int conversion does on the GPU.
struct e8m0_block_scale {
  static constexpr std::string_view name = "e8m0 block scales";
  static constexpr bool calibrated = false;
  static constexpr bool uses_global_amax = false;
  struct slot_scale {
    float scale;
    float unscale;
  };

  static constexpr float initial_amax = 0.0f;
  AQ_HD static constexpr float accumulate(float amax, float x) {
    const float magnitude = formats::detail::abs(detail::flush_subnormal(x));
    return detail::max_ignoring_nan(amax, magnitude > 0x1.fffffep127f ? 0x1.fffffep127f : magnitude);
  }
  template <number_format F>
  AQ_HD static constexpr slot_scale make(float slot_amax, const scale_context& /*context*/) {
    if (!(slot_amax > 0.0f) || !detail::is_finite(slot_amax)) return {1.0f, 1.0f};
    int exponent = formats::e8m0::shared_exponent(slot_amax, F::max_bound);
    // The fast-math division flushes a subnormal ratio to 0, whose exponent is the lowest.
    if (slot_amax / F::max_bound < 0x1p-126f) exponent = formats::e8m0::min_exponent;
    return {formats::detail::pow2(-exponent), formats::detail::pow2(exponent)};
  }
  template <number_format F>
  AQ_HD static constexpr float apply(float x, slot_scale s, bool /*narrow_range*/) {
    const float scaled = detail::mul_ftz(formats::detail::abs(x), s.scale);
    const float grid = !F::is_float && formats::detail::is_nan(scaled) ? 0.0f : F::quantize(scaled, 1.0f, true);
    const float magnitude = detail::mul_ftz(grid, s.unscale);
    return detail::flush_subnormal(x) > 0.0f ? magnitude : -magnitude;
  }
};

// ---- NVFP4: e4m3 block scales under an fp32 global scale ------------------------------------------

// ModelOpt's NVFP4 fake quantization as its Triton kernel computes it (fp4_fake_quant_block in
// modelopt/torch/quantization/triton/fp4_kernel.py, the path taken on sm_89 and newer): global
// scale g = amax · fp32(1 / (6 · 448)) from the calibrated per-tensor amax (torch's division by
// a number); block scale
// s = e4m3(min(block_amax / (6·g), 448)) · g, replaced by 1 below 1e-5; y = ±e2m1(|x| / s) · s
// for x >= 0, 0 - that otherwise (Triton negates by subtraction: -0 never appears).
// Differences, documented in docs/formats.md: divisions are correctly rounded here (Triton's
// div.full.f32 is within 2 ulp), and a global amax at or below 2^-24 gives zeros where ModelOpt
// divides by zero.
struct e4m3_block_scale {
  static constexpr std::string_view name = "e4m3 block scales";
  static constexpr bool calibrated = true;  // one per-tensor global amax
  static constexpr bool uses_global_amax = true;
  static constexpr float scale_max = formats::e4m3::max_bound;
  struct slot_scale {
    float scale;  // the dequantization scale s; 0: output 0
  };

  // Triton's block max starts from the block's first element: NaN only when every one is NaN,
  // and then the scale clamps to 448 (its minimum drops NaN).
  static constexpr float initial_amax = std::numeric_limits<float>::quiet_NaN();
  AQ_HD static constexpr float accumulate(float amax, float x) { return detail::max_ignoring_nan(amax, x); }
  template <number_format F>
  AQ_HD static constexpr slot_scale make(float slot_amax, const scale_context& context) {
    const float global_amax = context.global_amax;
    if (!(global_amax > zero_amax_threshold)) return {0.0f};
    // torch divides a tensor by a Python number as a product with its fp32 reciprocal.
    const float global_scale = formats::detail::mul_rn(global_amax, 1.0f / (F::max_bound * scale_max));
    const float ratio = slot_amax / formats::detail::mul_rn(F::max_bound, global_scale);
    const float block = formats::e4m3::decode(formats::e4m3::encode(ratio < scale_max ? ratio : scale_max));
    const float scale = formats::detail::mul_rn(block, global_scale);
    return {scale < 1e-5f ? 1.0f : scale};
  }
  template <number_format F>
  AQ_HD static constexpr float apply(float x, slot_scale s, bool /*narrow_range*/) {
    if (s.scale == 0.0f) return 0.0f;
    const float grid = F::decode(F::encode(formats::detail::abs(x) / s.scale));
    const float magnitude = formats::detail::mul_rn(formats::detail::abs(grid), s.scale);
    return x >= 0.0f ? magnitude : 0.0f - magnitude;
  }
};

template <class S>
concept scaling_policy = requires {
  { S::name } -> std::convertible_to<std::string_view>;
  { S::calibrated } -> std::convertible_to<bool>;
  { S::uses_global_amax } -> std::convertible_to<bool>;
  { S::initial_amax } -> std::convertible_to<float>;
  typename S::slot_scale;
};

}  // namespace aq::quant
