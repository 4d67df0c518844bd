// Number formats: one conformance suite instantiated for every format of all_formats (plus two
// test-only formats that show a new format gets the suite for free), and bit-exact e4m3
// encode/decode against an independent float64 enumeration of the format.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "aq/formats/all_formats.hpp"
#include "aq/formats/minifloat.hpp"
#include "aq/formats/signed_int.hpp"
#include "aq/quant/fake_quantize.hpp"

namespace {

// Test-only formats: adding a format to aq is one struct like these plus one all_formats entry.
struct int6 : aq::formats::signed_int<6> {
  static constexpr std::string_view name = "int6";
};
struct e5m2 : aq::formats::minifloat<5, 2, aq::formats::minifloat_specials::ieee> {
  static constexpr std::string_view name = "e5m2";
};
static_assert(aq::number_format<int6> && aq::number_format<e5m2>);
static_assert(e5m2::max_bound == 57344.0f && int6::max_bound == 31.0f);

template <class F>
std::vector<std::uint32_t> all_codes() {
  std::vector<std::uint32_t> codes(std::size_t{1} << F::bits);
  for (std::uint32_t raw = 0; raw < codes.size(); ++raw) codes[raw] = raw;
  return codes;
}

template <class F>
float decode_raw(std::uint32_t raw) {
  return F::decode(static_cast<typename F::code_type>(raw));
}

// Distinct finite grid values within [min_bound, max_bound], ascending, with their codes.
template <class F>
std::vector<std::pair<float, std::uint32_t>> grid() {
  std::vector<std::pair<float, std::uint32_t>> values;
  for (std::uint32_t raw : all_codes<F>()) {
    const float v = decode_raw<F>(raw);
    if (std::isfinite(v) && v >= F::min_bound(false) && v <= F::max_bound && !(v == 0.0f && std::signbit(v))) {
      values.emplace_back(v, raw);
    }
  }
  std::sort(values.begin(), values.end());
  return values;
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("number format conformance", F, format_conformance) {
  static_assert(aq::number_format<F>);
  CAPTURE(std::string(F::name));

  SUBCASE("every finite code decodes and encodes back to itself; NaN codes stay NaN") {
    int finite = 0;
    for (std::uint32_t raw : all_codes<F>()) {
      const float v = decode_raw<F>(raw);
      if (std::isfinite(v)) {
        ++finite;
        REQUIRE(static_cast<std::uint32_t>(F::encode(v)) == raw);
      } else if (std::isnan(v)) {
        REQUIRE(std::isnan(F::decode(F::encode(v))));
      }
    }
    CHECK(finite > 0);
  }

  SUBCASE("quantizing a representable value at scale 1 returns it unchanged") {
    for (const auto& [v, raw] : grid<F>()) REQUIRE(F::quantize(v, 1.0f, false) == v);
    CHECK(F::quantize(F::max_bound, 1.0f, false) == F::max_bound);
    CHECK(F::quantize(F::min_bound(false), 1.0f, false) == F::min_bound(false));
  }

  SUBCASE("values between neighbours round to the nearer one, exact ties to the even code") {
    const auto values = grid<F>();
    REQUIRE(values.size() >= 2);
    for (std::size_t i = 0; i + 1 < values.size(); ++i) {
      const auto [a, code_a] = values[i];
      const auto [b, code_b] = values[i + 1];
      const double mid = (static_cast<double>(a) + static_cast<double>(b)) / 2.0;
      const float m = static_cast<float>(mid);
      REQUIRE(static_cast<double>(m) == mid);  // midpoints of these grids are floats
      const float even = (code_a & 1u) == 0 ? a : b;
      CAPTURE(a);
      CAPTURE(b);
      REQUIRE(F::quantize(m, 1.0f, false) == even);
      REQUIRE(F::quantize(std::nextafter(m, a), 1.0f, false) == a);
      REQUIRE(F::quantize(std::nextafter(m, b), 1.0f, false) == b);
    }
  }

  SUBCASE("out-of-range values saturate to the bounds (or overflow for pass-through bf16)") {
    const float inf = std::numeric_limits<float>::infinity();
    if constexpr (F::saturates) {
      CHECK(F::quantize(F::max_bound * 4.0f, 1.0f, false) == F::max_bound);
      CHECK(F::quantize(-F::max_bound * 4.0f, 1.0f, false) == F::min_bound(false));
      CHECK(F::quantize(inf, 1.0f, false) == F::max_bound);
      CHECK(F::quantize(-inf, 1.0f, false) == F::min_bound(false));
      CHECK(F::quantize(-F::max_bound * 4.0f, 1.0f, true) == F::min_bound(true));
      CHECK(F::quantize(1e30f, 1.0f, false) == F::max_bound);
    } else {
      CHECK(std::isinf(F::quantize(std::numeric_limits<float>::max(), 1.0f, false)));
    }
  }

  SUBCASE("NaN input stays NaN") {
    CHECK(std::isnan(F::quantize(std::numeric_limits<float>::quiet_NaN(), 1.0f, false)));
    if constexpr (!F::is_passthrough) {
      CHECK(std::isnan(aq::quant::fake_quantize<F>(std::numeric_limits<float>::quiet_NaN(), 1.0f)));
    }
  }

  SUBCASE("scaling amax by a power of two scales the fake-quantized value exactly") {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> dist(-1.25f, 1.25f);
    for (int k : {-6, -1, 1, 4}) {
      const float factor = std::ldexp(1.0f, k);
      for (int i = 0; i < 2000; ++i) {
        const float x = dist(rng) * F::max_bound;
        REQUIRE(aq::quant::fake_quantize<F>(x * factor, F::max_bound * factor) ==
                factor * aq::quant::fake_quantize<F>(x, F::max_bound));
      }
    }
  }

  SUBCASE("zero or tiny amax gives 0 (never NaN); pass-through ignores amax") {
    for (float amax : {0.0f, 0x1p-24f, 0x1p-30f, -0.0f}) {
      for (float x : {1.0f, -3.5f, 0.0f, 1e-30f, 1e30f}) {
        const float y = aq::quant::fake_quantize<F>(x, amax);
        if constexpr (F::is_passthrough) {
          REQUIRE(y == x);
        } else {
          REQUIRE(y == 0.0f);
        }
      }
    }
    if constexpr (!F::is_passthrough) {
      const float amax = 0x1p-23f;  // just above the threshold quantizes normally
      CHECK(aq::quant::fake_quantize<F>(amax, amax) == doctest::Approx(amax).epsilon(1e-6));
    }
  }

  SUBCASE("fake quantization is idempotent and stays within the scaled bounds") {
    if constexpr (!F::is_passthrough) {
      std::mt19937 rng(5);
      std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
      for (float amax : {1.0f, 0.037f, 250.0f}) {
        const float scale = aq::quant::scale_from_amax<F>(amax);
        for (int i = 0; i < 3000; ++i) {
          const float x = dist(rng) * amax;
          const float y = aq::quant::fake_quantize<F>(x, amax);
          REQUIRE(aq::quant::fake_quantize<F>(y, amax) == y);
          REQUIRE(y <= F::max_bound / scale * (1.0f + 1e-6f));
          REQUIRE(y >= F::min_bound(false) / scale * (1.0f + 1e-6f));
        }
      }
    }
  }
}

TEST_CASE_TEMPLATE_APPLY(format_conformance, aq::formats::all_formats::tuple);
TEST_CASE_TEMPLATE_INVOKE(format_conformance, int6, e5m2);

// ---------------------------------------------------------------------------------------------
// e4m3 against an independent reference: the 127 non-negative finite values enumerated in float64
// from the definition (bias 7, subnormal step 2^-9), nearest with ties to the even code,
// saturating at 448, NaN -> 0x7f (as CUDA's cvt with satfinite).
namespace {

struct e4m3_reference {
  std::vector<double> values;  // index = code 0..126

  e4m3_reference() {
    for (int code = 0; code <= 126; ++code) {
      const int e = code >> 3;
      const int m = code & 7;
      values.push_back(e == 0 ? m * std::ldexp(1.0, -9) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7));
    }
  }

  double decode(int code) const {
    if ((code & 0x7f) == 0x7f) return std::numeric_limits<double>::quiet_NaN();
    const double v = values[code & 0x7f];
    return (code & 0x80) ? -v : v;
  }

  int encode(float x) const {
    if (std::isnan(x)) return 0x7f;
    const int sign = std::signbit(x) ? 0x80 : 0;
    const double a = std::fabs(static_cast<double>(x));
    if (a >= 448.0) return sign | 0x7e;
    const auto upper = std::lower_bound(values.begin(), values.end(), a);  // first >= a
    const int hi = static_cast<int>(upper - values.begin());
    if (values[hi] == a) return sign | hi;
    const int lo = hi - 1;
    const double d_lo = a - values[lo];
    const double d_hi = values[hi] - a;
    const int code = d_lo < d_hi ? lo : d_hi < d_lo ? hi : ((lo & 1) == 0 ? lo : hi);
    return sign | code;
  }
};

}  // namespace

TEST_CASE("e4m3 decodes all 256 codes like the float64 definition") {
  const e4m3_reference ref;
  using aq::formats::e4m3;
  int nan_codes = 0;
  for (int code = 0; code < 256; ++code) {
    const float v = e4m3::decode(static_cast<std::uint8_t>(code));
    const double expected = ref.decode(code);
    if (std::isnan(expected)) {
      ++nan_codes;
      REQUIRE(std::isnan(v));
    } else {
      REQUIRE(static_cast<double>(v) == expected);
      REQUIRE(std::signbit(v) == ((code & 0x80) != 0));
    }
  }
  CHECK(nan_codes == 2);  // 0x7f and 0xff
  CHECK(e4m3::decode(0x7e) == 448.0f);
  CHECK(e4m3::decode(0x08) == 0x1p-6f);   // smallest normal
  CHECK(e4m3::decode(0x01) == 0x1p-9f);   // smallest subnormal
  CHECK(e4m3::decode(0x07) == 7 * 0x1p-9f);
}

TEST_CASE("e4m3 encodes every finite code back and matches the reference on midpoints and random floats") {
  const e4m3_reference ref;
  using aq::formats::e4m3;
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) continue;
    REQUIRE(e4m3::encode(e4m3::decode(static_cast<std::uint8_t>(code))) == code);
  }
  // Every midpoint between neighbours (ties to even), and one float either side of it.
  for (int code = 0; code < 126; ++code) {
    const float mid = static_cast<float>((ref.values[code] + ref.values[code + 1]) / 2.0);
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1000.0f)}) {
      REQUIRE(e4m3::encode(x) == ref.encode(x));
      REQUIRE(e4m3::encode(-x) == ref.encode(-x));
    }
    REQUIRE(e4m3::encode(mid) == ((code & 1) == 0 ? code : code + 1));
  }
  // Random bit patterns over the whole float range (most saturate or flush) and over [-512, 512].
  std::mt19937 rng(3);
  std::uniform_int_distribution<std::uint32_t> bits;
  std::uniform_real_distribution<float> near(-512.0f, 512.0f);
  for (int i = 0; i < 300000; ++i) {
    const float x = std::bit_cast<float>(bits(rng));
    REQUIRE(e4m3::encode(x) == ref.encode(x));
    const float y = near(rng);
    REQUIRE(e4m3::encode(y) == ref.encode(y));
    const float z = std::ldexp(near(rng), -14);  // subnormal range of e4m3
    REQUIRE(e4m3::encode(z) == ref.encode(z));
  }
}

TEST_CASE("e4m3 rounds ties to even, saturates to 448 and keeps NaN") {
  using aq::formats::e4m3;
  CHECK(e4m3::encode(1.0625f) == 0x38);   // 1 + 1/16: tie between 1.0 (0x38) and 1.125 -> even
  CHECK(e4m3::encode(1.1875f) == 0x3a);   // tie between 1.125 (0x39) and 1.25 (0x3a) -> even
  CHECK(e4m3::encode(0x1p-10f) == 0x00);  // half the smallest subnormal -> 0
  CHECK(e4m3::encode(0x1.8p-9f) == 0x02); // 1.5 steps -> 2 steps (even)
  CHECK(e4m3::encode(-0x1p-11f) == 0x80); // tiny negative -> -0
  CHECK(e4m3::encode(448.0f) == 0x7e);
  CHECK(e4m3::encode(464.0f) == 0x7e);    // tie between 448 and (non-finite) 480
  CHECK(e4m3::encode(500.0f) == 0x7e);
  CHECK(e4m3::encode(-1e38f) == 0xfe);
  CHECK(e4m3::encode(std::numeric_limits<float>::infinity()) == 0x7e);
  CHECK(e4m3::encode(-std::numeric_limits<float>::infinity()) == 0xfe);
  CHECK(e4m3::encode(std::numeric_limits<float>::quiet_NaN()) == 0x7f);
  CHECK(e4m3::encode(-std::numeric_limits<float>::quiet_NaN()) == 0x7f);
  CHECK(std::isnan(e4m3::decode(0xff)));
  // constexpr: usable at compile time, no intrinsics.
  static_assert(e4m3::encode(0.3f) == 0x2a && e4m3::decode(0x2a) == 0.3125f);
}

TEST_CASE("integer formats store two's complement codes and use the full range by default") {
  using aq::formats::int4;
  using aq::formats::int8;
  CHECK(int8::max_bound == 127.0f);
  CHECK(int8::min_bound(false) == -128.0f);
  CHECK(int8::min_bound(true) == -127.0f);
  CHECK(int4::max_bound == 7.0f);
  CHECK(int4::min_bound(false) == -8.0f);
  CHECK(int4::encode(-1.0f) == 0xf);
  CHECK(int4::decode(0x8) == -8.0f);
  CHECK(int8::encode(-128.0f) == 0x80);
  CHECK(int8::quantize(2.5f, 1.0f) == 2.0f);   // half to even
  CHECK(int8::quantize(-2.5f, 1.0f) == -2.0f);
  CHECK(int8::quantize(3.5f, 1.0f) == 4.0f);
  CHECK(std::signbit(int8::quantize(-0.25f, 1.0f)));  // rint keeps the sign of zero
  CHECK(int4::quantize(-9.0f, 1.0f, false) == -8.0f);
  CHECK(int4::quantize(-9.0f, 1.0f, true) == -7.0f);
}

TEST_CASE("the format table lists every format of all_formats") {
  const std::string table = aq::formats::format_table();
  aq::formats::all_formats::for_each([&]<class F>() { CHECK(table.find("| " + std::string(F::name) + " |") != std::string::npos); });
  CHECK(table.find("| e4m3 | 8 | float | 448 |") != std::string::npos);
  CHECK(table.find("| int4 | 4 | signed integer | 7 |") != std::string::npos);
}
