// Quantizer spec: a number format, a granularity and a scaling policy (or disabled), the
// type-level counterpart of one ModelOpt TensorQuantizer config such as {num_bits: 8, axis: 0}
// or {num_bits: (2, 1), block_sizes: {-1: 16, type: dynamic, scale_bits: (4, 3)}}. Recipes pair
// a weight spec with an input (activation) spec; calibrators and kernels are templates over specs.
#pragma once

#include <concepts>
#include <string>
#include <type_traits>

#include "aq/formats/format.hpp"
#include "aq/formats/none.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/scaling.hpp"

namespace aq::quant {

template <number_format F, granularity G, scaling_policy S = static_amax, bool NarrowRange = false>
struct quantizer {
  using format_type = F;
  using granularity_type = G;
  using scaling_type = S;
  // Integer formats only: [-max, max] instead of ModelOpt's default [-max-1, max].
  static constexpr bool narrow_range = NarrowRange;
  static constexpr bool enabled = !F::is_passthrough;
  // ModelOpt's compression counts a disabled quantizer as 16 bits.
  static constexpr int bits = enabled ? F::bits : 16;

  // "int8 per-channel", "int4 per-block(128)", "e2m1 per-block(32) e8m0 block scales", "disabled".
  static std::string label() {
    if constexpr (!enabled) {
      return "disabled";
    } else {
      std::string text = std::string(F::name) + " " + granularity_label<G>();
      if constexpr (!std::is_same_v<S, static_amax>) text.append(" ").append(S::name);
      if constexpr (NarrowRange) text += " narrow";
      return text;
    }
  }
};

// A quantizer that leaves values unchanged (ModelOpt {"enable": False}).
using disabled = quantizer<formats::none, per_tensor>;

template <class Q>
concept quantizer_spec = requires {
  typename Q::format_type;
  typename Q::granularity_type;
  typename Q::scaling_type;
  { Q::narrow_range } -> std::convertible_to<bool>;
  { Q::enabled } -> std::convertible_to<bool>;
  { Q::bits } -> std::convertible_to<int>;
} && number_format<typename Q::format_type> && granularity<typename Q::granularity_type> &&
                         scaling_policy<typename Q::scaling_type>;

}  // namespace aq::quant
