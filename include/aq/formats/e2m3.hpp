// e2m3: the OCP MXFP6 element format with precision over range (bias 1, no NaN, no
// infinities, max 7.5, smallest subnormal 1/8), scaled per block of 32 by an e8m0 power of two.
#pragma once

#include <string_view>

#include "aq/formats/minifloat.hpp"

namespace aq::formats {

struct e2m3 : minifloat<2, 3, minifloat_specials::finite_only> {
  static constexpr std::string_view name = "e2m3";
};

static_assert(e2m3::max_bound == 7.5f && e2m3::max_finite_code == 0x1f && e2m3::max_exponent == 2);

}  // namespace aq::formats
