// int8: signed 8-bit integer, symmetric scale 127/amax, codes -128..127 (ModelOpt num_bits=8).
// Used for per-channel weights and per-tensor activations (INT8_DEFAULT_CFG).
#pragma once

#include <string_view>

#include "aq/formats/signed_int.hpp"

namespace aq::formats {

struct int8 : signed_int<8> {
  static constexpr std::string_view name = "int8";
};

}  // namespace aq::formats
