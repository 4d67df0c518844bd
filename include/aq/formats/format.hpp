// What a number format must provide: the `number_format` concept and the `format_list` type list.
// Formats are the bottom of the pipeline: quantizers, recipes, calibrators and kernels are
// templates over a format struct and never name int8 or e4m3 themselves.
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>
#include <tuple>
#include <type_traits>

namespace aq {

// A format is a stateless struct of static constexpr facts and AQ_HD functions.
// `quantize(x, scale, narrow_range)` returns the grid value nearest to x*scale (round to nearest
// even, saturating where `saturates`), `dequantize(q, scale)` maps it back to the model's range;
// `encode`/`decode` convert grid values to/from the format's raw bit pattern (`code_type`,
// `bits` wide, two's complement for integers, sign-magnitude for floats). `has_nan`/`has_inf`
// say whether some code decodes to NaN/infinity; where none does, NaN input cannot stay NaN and
// the format says in its header what it becomes instead.
// The nested requirements force the functions to be constant-evaluable, so the same code runs
// in constexpr tests, on the host and on the device.
template <class F>
concept number_format =
    std::is_empty_v<F> &&
    requires(float x, float scale, bool narrow_range, typename F::code_type code) {
      { F::name } -> std::convertible_to<std::string_view>;
      { F::bits } -> std::convertible_to<int>;
      { F::max_bound } -> std::convertible_to<float>;
      { F::is_float } -> std::convertible_to<bool>;
      { F::is_passthrough } -> std::convertible_to<bool>;
      { F::saturates } -> std::convertible_to<bool>;
      { F::has_nan } -> std::convertible_to<bool>;
      { F::has_inf } -> std::convertible_to<bool>;
      { F::min_bound(narrow_range) } -> std::same_as<float>;
      { F::quantize(x, scale, narrow_range) } -> std::same_as<float>;
      { F::dequantize(x, scale) } -> std::same_as<float>;
      { F::encode(x) } -> std::same_as<typename F::code_type>;
      { F::decode(code) } -> std::same_as<float>;
      requires F::bits > 0 && F::bits <= 16;
      requires F::decode(F::encode(0.0f)) == 0.0f;
      requires F::quantize(1.0f, 1.0f, false) == F::quantize(1.0f, 1.0f, false);
      requires F::dequantize(0.0f, 1.0f) == 0.0f;
    };

// Compile-time list of formats; `all_formats` (formats/all_formats.hpp) is one of these and
// drives the conformance tests and generated tables.
template <number_format... Fs>
struct format_list {
  static constexpr std::size_t size = sizeof...(Fs);
  using tuple = std::tuple<Fs...>;

  // Calls f.template operator()<F>() for each format in order.
  template <class Visitor>
  static constexpr void for_each(Visitor&& visitor) {
    (visitor.template operator()<Fs>(), ...);
  }
};

}  // namespace aq
