// e4m3: the OCP/NVIDIA FP8 E4M3FN format (bias 7, max 448, no infinities, NaN = S.1111.111).
// ModelOpt's FP8 quantizer: scale = 448/amax, y = float(e4m3(x*scale)) * (1/scale), saturating.
#pragma once

#include <string_view>

#include "aq/formats/minifloat.hpp"

namespace aq::formats {

struct e4m3 : minifloat<4, 3, minifloat_specials::nan_only> {
  static constexpr std::string_view name = "e4m3";
};

static_assert(e4m3::max_bound == 448.0f && e4m3::max_finite_code == 0x7e && e4m3::nan_code == 0x7f);

}  // namespace aq::formats
