// e3m2: the OCP MXFP6 element format with range over precision (bias 3, no NaN, no
// infinities, max 28, smallest subnormal 1/16), scaled per block of 32 by an e8m0 power of two.
#pragma once

#include <string_view>

#include "aq/formats/minifloat.hpp"

namespace aq::formats {

struct e3m2 : minifloat<3, 2, minifloat_specials::finite_only> {
  static constexpr std::string_view name = "e3m2";
};

static_assert(e3m2::max_bound == 28.0f && e3m2::max_finite_code == 0x1f && e3m2::max_exponent == 4);

}  // namespace aq::formats
