// Storage dtypes of checkpoint tensors (BF16, F16, F32): one small descriptor per dtype with its
// safetensors name and element size, plus the exact f16 <-> float conversions. Readers turn a
// header's dtype string into a descriptor here; conversions to float32 dispatch on it once per tensor.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "aq/core/bf16.hpp"
#include "aq/core/config.hpp"
#include "aq/core/error.hpp"

namespace aq {

// IEEE binary16 storage type (F16 tensors).
struct f16 {
  std::uint16_t bits = 0;

  static constexpr f16 from_bits(std::uint16_t raw) {
    f16 value;
    value.bits = raw;
    return value;
  }
};

// Exact: every f16 value (subnormals, infinities, NaN payloads) is representable as a float.
AQ_HD constexpr float f16_to_float(f16 value) {
  const std::uint32_t sign = static_cast<std::uint32_t>(value.bits & 0x8000u) << 16;
  const std::uint32_t exponent = (value.bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = value.bits & 0x3ffu;
  if (exponent == 0x1fu) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    // Subnormal (or zero): mantissa * 2^-24, exact in float.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign != 0 ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// Round to nearest even (as torch's .to(float16)); overflow goes to infinity, NaN stays NaN.
AQ_HD constexpr f16 float_to_f16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return f16::from_bits(static_cast<std::uint16_t>(sign | 0x7e00u));
  if (magnitude >= 0x477ff000u) return f16::from_bits(static_cast<std::uint16_t>(sign | 0x7c00u));  // >= 65520
  if (magnitude >= 0x38800000u) {  // normal f16 range: rebias the exponent, round the 13 dropped bits
    std::uint32_t rebased = magnitude - 0x38000000u;
    rebased += 0x0fffu + ((rebased >> 13) & 1u);
    return f16::from_bits(static_cast<std::uint16_t>(sign | (rebased >> 13)));
  }
  // Subnormal f16: adding 0.5 makes the float's ulp 2^-24, so the FPU's own rounding (nearest even)
  // lands on the f16 subnormal grid; the low mantissa bits are then the f16 bits.
  const float shifted = std::bit_cast<float>(magnitude) + 0.5f;
  return f16::from_bits(static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(shifted) - 0x3f000000u)));
}

// A tensor storage dtype: the spelling used in safetensors headers and the element size in bytes.
struct dtype {
  std::string_view name;
  std::size_t size = 0;

  friend constexpr bool operator==(const dtype& a, const dtype& b) { return a.name == b.name; }
};

inline constexpr dtype dtype_bf16{"BF16", 2};
inline constexpr dtype dtype_f16{"F16", 2};
inline constexpr dtype dtype_f32{"F32", 4};
// Integer dtypes appear in reference/activation fixtures (token ids, grids), never in weights.
inline constexpr dtype dtype_i32{"I32", 4};
inline constexpr dtype dtype_i64{"I64", 8};

// The dtypes aq reads and writes as weights; anything else in a checkpoint is rejected by name.
inline constexpr std::array<dtype, 3> supported_dtypes{dtype_bf16, dtype_f16, dtype_f32};
// What a reader may be asked to accept besides: the float dtypes and the integer ones.
inline constexpr std::array<dtype, 5> readable_dtypes{dtype_bf16, dtype_f16, dtype_f32, dtype_i32, dtype_i64};

// "BF16, F16, F32": the list used in "not supported (...)" messages.
inline std::string dtype_names(std::span<const dtype> types) {
  std::string out;
  for (const dtype& type : types) {
    if (!out.empty()) out += ", ";
    out += type.name;
  }
  return out;
}

inline constexpr std::optional<dtype> find_dtype(std::string_view name, std::span<const dtype> among = supported_dtypes) {
  for (const dtype& candidate : among) {
    if (candidate.name == name) return candidate;
  }
  return std::nullopt;
}

// Element type tags for compile-time dispatch: visit_dtype calls f(bf16{}), f(f16{}) or f(float{}),
// so conversion loops are written once as templates and the dtype is tested once per tensor.
template <class F>
constexpr decltype(auto) visit_dtype(const dtype& type, F&& f) {
  if (type == dtype_bf16) return f(bf16{});
  if (type == dtype_f16) return f(f16{});
  if (type == dtype_f32) return f(float{});
  throw error("dtype " + std::string(type.name) + " not supported (" + dtype_names(supported_dtypes) + ")");
}

template <class T>
inline constexpr dtype dtype_of = dtype_f32;
template <>
inline constexpr dtype dtype_of<std::int32_t> = dtype_i32;
template <>
inline constexpr dtype dtype_of<std::int64_t> = dtype_i64;
template <>
inline constexpr dtype dtype_of<bf16> = dtype_bf16;
template <>
inline constexpr dtype dtype_of<f16> = dtype_f16;

AQ_HD constexpr float to_float(bf16 value) { return bf16_to_float(value); }
AQ_HD constexpr float to_float(f16 value) { return f16_to_float(value); }
AQ_HD constexpr float to_float(float value) { return value; }

// One stored value as Out (float, bf16 or f16), rounding to nearest even where Out is narrower.
template <class Out, class In>
constexpr Out convert_element(In value) {
  if constexpr (std::is_same_v<Out, In>) {
    return value;
  } else if constexpr (std::is_same_v<Out, float>) {
    return to_float(value);
  } else if constexpr (std::is_same_v<Out, bf16>) {
    return float_to_bf16(to_float(value));
  } else {
    return float_to_f16(to_float(value));
  }
}

}  // namespace aq
