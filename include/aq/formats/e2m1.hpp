// e2m1: the OCP FP4 element format of NVFP4 and MXFP4 (bias 1, no NaN, no infinities).
// Its 16 codes are +-{0, 0.5, 1, 1.5, 2, 3, 4, 6}; 0.5 is the only subnormal. NVFP4 scales a
// block of 16 by an e4m3 factor, MXFP4 a block of 32 by an e8m0 power of two.
#pragma once

#include <string_view>

#include "aq/formats/minifloat.hpp"

namespace aq::formats {

struct e2m1 : minifloat<2, 1, minifloat_specials::finite_only> {
  static constexpr std::string_view name = "e2m1";
};

static_assert(e2m1::max_bound == 6.0f && e2m1::max_finite_code == 0x7 && e2m1::max_exponent == 2);

}  // namespace aq::formats
