// e4m3: the OCP/NVIDIA FP8 E4M3FN format (bias 7, max 448, no infinities, NaN = S.1111.111).
// ModelOpt's FP8 quantizer: scale = 448/amax, y = float(e4m3(x*scale)) * (1/scale), saturating.
#pragma once

#include <string_view>
#include <type_traits>

#if defined(__CUDACC__)
#include <cuda_fp8.h>
#endif

#include "aq/formats/minifloat.hpp"

namespace aq::formats {

struct e4m3 : minifloat<4, 3, minifloat_specials::nan_only> {
  // The integer encoder, identical on host and device; the device path below must equal it.
  using portable = minifloat<4, 3, minifloat_specials::nan_only>;
  static constexpr std::string_view name = "e4m3";

  // On sm_89+ one cvt.rn.satfinite instruction does what the portable encoder's ~20 integer
  // operations do, bit for bit (checked over all 2^32 floats), and fake quantization is bound
  // by that encoding.
  AQ_HD static constexpr code_type encode(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    if (!std::is_constant_evaluated())
      return static_cast<code_type>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
#endif
    return portable::encode(x);
  }

  AQ_HD static constexpr float quantize(float x, float scale, bool /*narrow_range*/ = false) {
    return decode(encode(detail::mul_rn(x, scale)));
  }
};

static_assert(e4m3::max_bound == 448.0f && e4m3::max_finite_code == 0x7e && e4m3::nan_code == 0x7f);
static_assert(e4m3::encode(448.0f) == 0x7e && e4m3::encode(-1e9f) == 0xfe && e4m3::quantize(0.3f, 1.0f) == 0.3125f);

}  // namespace aq::formats
