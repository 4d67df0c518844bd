// int4: signed 4-bit integer, symmetric scale 7/amax, codes -8..7 (ModelOpt num_bits=4).
// Used for 128-blocks of weights (INT4_BLOCKWISE_WEIGHT_ONLY_CFG) and per-tensor activations.
#pragma once

#include <string_view>

#include "aq/formats/signed_int.hpp"

namespace aq::formats {

struct int4 : signed_int<4> {
  static constexpr std::string_view name = "int4";
};

}  // namespace aq::formats
