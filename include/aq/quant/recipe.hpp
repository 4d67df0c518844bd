// Recipe: a weight quantizer spec plus an input (activation) quantizer spec, with a stable name,
// ModelOpt's effective bits and display string ("INT8_DEFAULT_CFG(effective-bits: 8.0)").
// One candidate of the per-layer search; the list of all of them is quant/recipes.hpp.
#pragma once

#include <algorithm>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>

#include "aq/quant/quantizer.hpp"

namespace aq::quant {

// A string usable as a template argument, so a recipe's name is part of its type.
template <std::size_t N>
struct fixed_string {
  char chars[N]{};
  constexpr fixed_string(const char (&text)[N]) {  // NOLINT: implicit by design
    std::copy_n(text, N, chars);
  }
  constexpr std::string_view view() const { return {chars, N - 1}; }
};

// ModelOpt's estimate_quant_compression: min over every quantizer of bits/16, a disabled one
// counting 1.0 (16 bits); effective bits = 16 * compression. Activation bits count as much as
// weight bits (W8A4 -> 4.0, W4A16 -> 4.0) and block scales are free.
constexpr double effective_bits_of(int weight_bits, int input_bits) {
  return 16.0 * (std::min({weight_bits, input_bits, 16}) / 16.0);
}

// Python's repr() of a float for the values effective bits take (e.g. 8.0, 4.0, 16.0, 5.5).
inline std::string python_float_repr(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, result.ptr);
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";  // 8 -> 8.0 (n: nan/inf)
  return text;
}

// ModelOpt's str(QuantRecipe): f"{name}(effective-bits: {16 * compression})".
inline std::string modelopt_recipe_string(std::string_view display_name, double effective_bits) {
  return std::string(display_name) + "(effective-bits: " + python_float_repr(effective_bits) + ")";
}

// `ModelOptConfig` is the name of the identical ModelOpt built-in config ("" when there is none:
// ModelOpt then shows CUSTOM_<i>, i = position in the user's format list).
template <fixed_string Name, quantizer_spec Weight, quantizer_spec Input, fixed_string ModelOptConfig = "">
struct recipe {
  using weight = Weight;
  using input = Input;
  static constexpr std::string_view name = Name.view();
  static constexpr std::string_view modelopt_config = ModelOptConfig.view();
  static constexpr double effective_bits = effective_bits_of(Weight::bits, Input::bits);
  static constexpr double compression = effective_bits / 16.0;
  static constexpr bool quantizes = Weight::enabled || Input::enabled;

  // Name ModelOpt shows for this recipe when it is at `position` in the user's format list.
  static std::string modelopt_name(std::size_t position) {
    if (!modelopt_config.empty()) return std::string(modelopt_config);
    return "CUSTOM_" + std::to_string(position);
  }
  static std::string modelopt_string(std::size_t position) {
    return modelopt_recipe_string(modelopt_name(position), effective_bits);
  }
};

template <class R>
concept recipe_type = requires {
  { R::name } -> std::convertible_to<std::string_view>;
  { R::modelopt_config } -> std::convertible_to<std::string_view>;
  { R::effective_bits } -> std::convertible_to<double>;
  { R::quantizes } -> std::convertible_to<bool>;
} && quantizer_spec<typename R::weight> && quantizer_spec<typename R::input>;

// Compile-time list of recipes; `all_recipes` is one, and the run-time registry is generated from it.
template <recipe_type... Rs>
struct recipe_list {
  static constexpr std::size_t size = sizeof...(Rs);

  template <class Visitor>
  static constexpr void for_each(Visitor&& visitor) {
    (visitor.template operator()<Rs>(), ...);
  }
};

}  // namespace aq::quant
