// Quantizer spec: a number format plus a granularity (or disabled), the type-level counterpart
// of one ModelOpt TensorQuantizer config such as {num_bits: 8, axis: 0}. Recipes pair a weight
// spec with an input (activation) spec; calibrators and kernels are templates over specs.
#pragma once

#include <concepts>
#include <string>

#include "aq/formats/format.hpp"
#include "aq/formats/none.hpp"
#include "aq/quant/granularity.hpp"

namespace aq::quant {

template <number_format F, granularity G, bool NarrowRange = false>
struct quantizer {
  using format_type = F;
  using granularity_type = G;
  // Integer formats only: [-max, max] instead of ModelOpt's default [-max-1, max].
  static constexpr bool narrow_range = NarrowRange;
  static constexpr bool enabled = !F::is_passthrough;
  // ModelOpt's compression counts a disabled quantizer as 16 bits.
  static constexpr int bits = enabled ? F::bits : 16;

  // "int8 per-channel", "int4 per-block(128)", "disabled".
  static std::string label() {
    if constexpr (!enabled) {
      return "disabled";
    } else {
      return std::string(F::name) + " " + granularity_label<G>() + (NarrowRange ? " narrow" : "");
    }
  }
};

// A quantizer that leaves values unchanged (ModelOpt {"enable": False}).
using disabled = quantizer<formats::none, per_tensor>;

template <class Q>
concept quantizer_spec = requires {
  typename Q::format_type;
  typename Q::granularity_type;
  { Q::narrow_range } -> std::convertible_to<bool>;
  { Q::enabled } -> std::convertible_to<bool>;
  { Q::bits } -> std::convertible_to<int>;
} && number_format<typename Q::format_type> && granularity<typename Q::granularity_type>;

}  // namespace aq::quant
