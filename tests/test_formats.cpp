// Number formats: one conformance suite instantiated for every format of all_formats (plus two
// test-only formats that show a new format gets the suite for free), bit-exact e4m3
// encode/decode against an independent float64 enumeration of the format, the OCP MX element
// formats (e2m1, e3m2, e2m3) against hand-written value tables, and the e8m0 block scale.
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
#include "aq/formats/e2m1.hpp"
#include "aq/formats/e2m3.hpp"
#include "aq/formats/e3m2.hpp"
#include "aq/formats/e8m0.hpp"
#include "aq/formats/minifloat.hpp"
#include "aq/formats/signed_int.hpp"
#include "aq/quant/fake_quantize.hpp"

namespace test_formats {

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

  SUBCASE("NaN input stays NaN, or becomes +max in a format without NaN codes") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    if constexpr (F::is_float && !F::has_nan) {
      CHECK(F::quantize(nan, 1.0f, false) == F::max_bound);  // ModelOpt's MX conversion of NaN
      CHECK(aq::quant::fake_quantize<F>(nan, F::max_bound) == F::max_bound);
    } else {
      CHECK(std::isnan(F::quantize(nan, 1.0f, false)));
      if constexpr (!F::is_passthrough) CHECK(std::isnan(aq::quant::fake_quantize<F>(nan, 1.0f)));
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

  SUBCASE("an amax without a usable scale gives ±0 (never NaN); pass-through ignores amax") {
    // Integers: amax <= 2^-24 (ModelOpt's threshold). Floats: zero or negative amax, or one so
    // small that max_bound / amax overflows; any other positive amax quantizes, as in ModelOpt.
    const std::vector<float> unusable = F::is_float ? std::vector<float>{0.0f, -0.0f, -1.0f, 0x1p-140f}
                                                    : std::vector<float>{0.0f, 0x1p-24f, 0x1p-30f, -0.0f};
    for (float amax : unusable) {
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
      const float amax = F::is_float ? 0x1p-30f : 0x1p-23f;  // small but usable: quantizes normally
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

// ---------------------------------------------------------------------------------------------
// OCP MX element formats (e2m1, e3m2, e2m3): every code finite, values written out by hand from
// the OCP MX v1.0 spec (section 5.3) and checked against an independent nearest-value search.
namespace {

// Non-negative values by code (sign bit clear), written out by hand.
const std::vector<double> e2m1_values = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
const std::vector<double> e3m2_values = {0,   0.0625, 0.125, 0.1875, 0.25, 0.3125, 0.375, 0.4375,
                                         0.5, 0.625,  0.75,  0.875,  1,    1.25,   1.5,   1.75,
                                         2,   2.5,    3,     3.5,    4,    5,      6,     7,
                                         8,   10,     12,    14,     16,   20,     24,    28};
const std::vector<double> e2m3_values = {0,   0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875,
                                         1,   1.125, 1.25, 1.375, 1.5, 1.625, 1.75, 1.875,
                                         2,   2.25,  2.5,  2.75,  3,   3.25,  3.5,  3.75,
                                         4,   4.5,   5,    5.5,   6,   6.5,   7,    7.5};

// Nearest value by a search over the table in float64, ties to the even code, saturating at the
// largest value; NaN -> +max (no NaN code: ModelOpt's convert_to_table_types).
struct finite_table_reference {
  const std::vector<double>& values;
  int sign_bit() const { return static_cast<int>(values.size()); }

  int encode(float x) const {
    const int max_code = static_cast<int>(values.size()) - 1;
    if (std::isnan(x)) return max_code;
    const int sign = std::signbit(x) ? sign_bit() : 0;
    const double a = std::fabs(static_cast<double>(x));
    if (a >= values.back()) return sign | max_code;
    const int hi = static_cast<int>(std::lower_bound(values.begin(), values.end(), a) - values.begin());
    if (values[hi] == a) return sign | hi;
    const int lo = hi - 1;
    const double d_lo = a - values[lo];
    const double d_hi = values[hi] - a;
    return sign | (d_lo < d_hi ? lo : d_hi < d_lo ? hi : ((lo & 1) == 0 ? lo : hi));
  }
};

template <class F>
void check_decode_table(const std::vector<double>& values) {
  REQUIRE(values.size() * 2 == (std::size_t{1} << F::bits));
  const unsigned sign_bit = static_cast<unsigned>(values.size());
  for (unsigned code = 0; code < 2 * sign_bit; ++code) {
    CAPTURE(code);
    const float v = F::decode(static_cast<typename F::code_type>(code));
    const double magnitude = values[code & (sign_bit - 1)];
    REQUIRE(std::isfinite(v));
    REQUIRE(static_cast<double>(v) == ((code & sign_bit) != 0 ? -magnitude : magnitude));
    REQUIRE(std::signbit(v) == ((code & sign_bit) != 0));  // 0x8 of e2m1 is -0
  }
}

template <class F>
void check_round_trip(const std::vector<double>& values) {
  for (unsigned code = 0; code < 2 * values.size(); ++code) {
    CAPTURE(code);
    REQUIRE(F::encode(F::decode(static_cast<typename F::code_type>(code))) == code);
  }
}

// Every midpoint between neighbours goes to the even code, one float either side to the nearer.
template <class F>
void check_midpoints(const std::vector<double>& values) {
  const unsigned sign_bit = static_cast<unsigned>(values.size());
  for (unsigned code = 0; code + 1 < values.size(); ++code) {
    const double mid = (values[code] + values[code + 1]) / 2.0;
    const float m = static_cast<float>(mid);
    REQUIRE(static_cast<double>(m) == mid);
    CAPTURE(m);
    const unsigned even = (code & 1u) == 0 ? code : code + 1;
    REQUIRE(F::encode(m) == even);
    REQUIRE(F::encode(-m) == (sign_bit | even));
    REQUIRE(F::encode(std::nextafter(m, 0.0f)) == code);
    REQUIRE(F::encode(std::nextafter(m, 100.0f)) == code + 1);
    REQUIRE(F::encode(-std::nextafter(m, 0.0f)) == (sign_bit | code));
    REQUIRE(F::encode(-std::nextafter(m, 100.0f)) == (sign_bit | (code + 1)));
    REQUIRE(F::quantize(m, 1.0f) == static_cast<float>(values[even]));
  }
}

template <class F>
void check_saturation(float next_binade_step) {
  const float inf = std::numeric_limits<float>::infinity();
  const unsigned max_code = F::max_finite_code;
  const unsigned negative_max = F::sign_bit | max_code;
  // Up to the tie with the value the next code would have had, and beyond.
  const float tie = F::max_bound + next_binade_step / 2.0f;
  for (float x : {std::nextafter(F::max_bound, inf), tie, std::nextafter(tie, inf), F::max_bound * 1.5f,
                  F::max_bound * 4.0f, 1e30f, std::numeric_limits<float>::max(), inf}) {
    CAPTURE(x);
    REQUIRE(F::encode(x) == max_code);
    REQUIRE(F::encode(-x) == negative_max);
    REQUIRE(F::quantize(x, 1.0f) == F::max_bound);
    REQUIRE(F::quantize(-x, 1.0f) == -F::max_bound);
  }
}

template <class F>
void check_against_reference(const std::vector<double>& values, unsigned seed) {
  const finite_table_reference ref{values};
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::uint32_t> bits;
  std::uniform_real_distribution<float> near(-2.0f * F::max_bound, 2.0f * F::max_bound);
  for (int i = 0; i < 100000; ++i) {
    const float x = std::bit_cast<float>(bits(rng));
    REQUIRE(F::encode(x) == ref.encode(x));
    const float y = near(rng);
    REQUIRE(F::encode(y) == ref.encode(y));
  }
}

}  // namespace

TEST_CASE("e2m1 has 16 finite codes +-{0, 0.5, 1, 1.5, 2, 3, 4, 6}") {
  using aq::formats::e2m1;
  static_assert(aq::number_format<e2m1> && e2m1::bits == 4 && e2m1::max_bound == 6.0f);
  check_decode_table<e2m1>(e2m1_values);
  check_round_trip<e2m1>(e2m1_values);
  check_midpoints<e2m1>(e2m1_values);
  check_saturation<e2m1>(2.0f);  // 6 + 2 would be the next value: 7 is the tie, saturates to 6
  check_against_reference<e2m1>(e2m1_values, 21);
  CHECK(e2m1::min_bound(false) == -6.0f);
  CHECK(e2m1::decode(0xf) == -6.0f);
  CHECK(e2m1::encode(7.0f) == 0x7);  // tie between 6 (0x7) and 8 (no code): saturates
}

TEST_CASE("e3m2 has 64 finite codes up to 28") {
  using aq::formats::e3m2;
  static_assert(aq::number_format<e3m2> && e3m2::bits == 6 && e3m2::max_bound == 28.0f);
  check_decode_table<e3m2>(e3m2_values);
  check_round_trip<e3m2>(e3m2_values);
  check_midpoints<e3m2>(e3m2_values);
  check_saturation<e3m2>(4.0f);
  check_against_reference<e3m2>(e3m2_values, 22);
}

TEST_CASE("e2m3 has 64 finite codes up to 7.5") {
  using aq::formats::e2m3;
  static_assert(aq::number_format<e2m3> && e2m3::bits == 6 && e2m3::max_bound == 7.5f);
  check_decode_table<e2m3>(e2m3_values);
  check_round_trip<e2m3>(e2m3_values);
  check_midpoints<e2m3>(e2m3_values);
  check_saturation<e2m3>(0.5f);
  check_against_reference<e2m3>(e2m3_values, 23);
}

TEST_CASE("MX element formats: subnormals are exact, underflow rounds to even (signed) zero") {
  using aq::formats::e2m1;
  using aq::formats::e2m3;
  using aq::formats::e3m2;
  CHECK(e2m1::encode(0.5f) == 0x1);      // the only subnormal of e2m1
  CHECK(e2m1::decode(0x1) == 0.5f);
  CHECK(e2m1::encode(-0.5f) == 0x9);
  CHECK(e2m1::encode(0.25f) == 0x0);     // tie between 0 and 0.5 -> 0 (even)
  CHECK(e2m1::encode(std::nextafter(0.25f, 1.0f)) == 0x1);
  CHECK(e2m1::encode(0.75f) == 0x2);     // tie between 0.5 and 1 -> 1 (even)
  CHECK(e2m1::encode(-0.2f) == 0x8);     // tiny negative -> -0
  CHECK(e2m1::encode(0x1p-126f) == 0x0);
  CHECK(e2m1::encode(0x1p-149f) == 0x0);
  CHECK(e3m2::encode(0.0625f) == 0x01);  // smallest subnormal 2^-4
  CHECK(e3m2::encode(0.1875f) == 0x03);  // largest subnormal
  CHECK(e3m2::encode(0.25f) == 0x04);    // smallest normal
  CHECK(e3m2::encode(0.03125f) == 0x00); // half the smallest step -> 0
  CHECK(e3m2::encode(0.09375f) == 0x02); // 1.5 steps -> 2 (even)
  CHECK(e2m3::encode(0.125f) == 0x01);   // smallest subnormal 2^-3
  CHECK(e2m3::encode(0.875f) == 0x07);   // largest subnormal
  CHECK(e2m3::encode(0.0625f) == 0x00);
  CHECK(e2m3::encode(-0.1875f) == 0x22); // 1.5 steps -> 2 (even), negative
  CHECK(e2m3::encode(0.9375f) == 0x08);  // tie between 0.875 and 1 -> 1 (even): into the normals
}

TEST_CASE("MX element formats have no NaN: NaN input becomes +max, as ModelOpt's MX fake quantization") {
  using aq::formats::e2m1;
  using aq::formats::e2m3;
  using aq::formats::e3m2;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(e2m1::encode(nan) == 0x7);
  CHECK(e2m1::encode(-nan) == 0x7);
  CHECK(e3m2::encode(nan) == 0x1f);
  CHECK(e2m3::encode(-nan) == 0x1f);
  CHECK(e2m1::quantize(nan, 1.0f) == 6.0f);
  CHECK(e3m2::quantize(nan, 1.0f) == 28.0f);
  CHECK(e2m3::quantize(nan, 1.0f) == 7.5f);
  // constexpr: usable at compile time, no intrinsics.
  static_assert(e2m1::encode(2.6f) == 0x5 && e2m1::decode(0x5) == 3.0f && e2m1::decode(0xc) == -2.0f);
  static_assert(e3m2::encode(-27.0f) == 0x3f && e2m3::encode(5.1f) == 0x1a);
}

TEST_CASE("has_nan and has_inf of every format") {
  using namespace aq::formats;
  static_assert(!int8::has_nan && !int8::has_inf && !int4::has_nan && !int4::has_inf);
  static_assert(!int6::has_nan && !int6::has_inf);
  static_assert(e4m3::has_nan && !e4m3::has_inf);
  static_assert(e5m2::has_nan && e5m2::has_inf);
  static_assert(none::has_nan && none::has_inf);  // bf16 grid
  static_assert(!e2m1::has_nan && !e2m1::has_inf);
  static_assert(!e3m2::has_nan && !e3m2::has_inf);
  static_assert(!e2m3::has_nan && !e2m3::has_inf);
  static_assert(e8m0::has_nan && !e8m0::has_inf);
  // has_nan says whether some code decodes to NaN.
  auto any_nan_code = []<class F>() {
    for (std::uint32_t raw : all_codes<F>()) {
      if (std::isnan(decode_raw<F>(raw))) return true;
    }
    return false;
  };
  all_formats::for_each([&]<class F>() { CHECK(any_nan_code.template operator()<F>() == F::has_nan); });
  CHECK(any_nan_code.template operator()<e2m1>() == false);
  CHECK(any_nan_code.template operator()<e3m2>() == false);
  CHECK(any_nan_code.template operator()<e2m3>() == false);
  CHECK(any_nan_code.template operator()<e5m2>() == true);
  CHECK(any_nan_code.template operator()<int6>() == false);
  static_assert(e4m3::max_exponent == 8 && e5m2::max_exponent == 15 && e2m1::max_exponent == 2 &&
                e3m2::max_exponent == 4 && e2m3::max_exponent == 2);
}

TEST_CASE("MX element formats fake-quantize through the quant layer like any number_format") {
  using aq::formats::e2m1;
  CHECK(aq::quant::fake_quantize<e2m1>(6.0f, 6.0f) == 6.0f);
  CHECK(aq::quant::fake_quantize<e2m1>(-2.5f, 6.0f) == -2.0f);  // tie between 2 and 3 -> 2 (even)
  CHECK(aq::quant::fake_quantize<e2m1>(0.3f, 12.0f) == 0.0f);   // 0.15 -> 0
  CHECK(aq::quant::fake_quantize<e2m1>(100.0f, 12.0f) == 12.0f);
}

// ---------------------------------------------------------------------------------------------
// e8m0: the MX shared scale, 2^(code - 127), 0xff NaN.
TEST_CASE("e8m0 decodes every code to 2^(code-127) and 0xff to NaN") {
  using aq::formats::e8m0;
  CHECK(e8m0::decode(0) == 0x1p-127f);  // a float subnormal
  CHECK(e8m0::decode(1) == 0x1p-126f);
  CHECK(e8m0::decode(127) == 1.0f);
  CHECK(e8m0::decode(254) == 0x1p127f);
  CHECK(std::isnan(e8m0::decode(255)));
  for (int code = 0; code < 255; ++code) {
    CAPTURE(code);
    REQUIRE(e8m0::decode(static_cast<std::uint8_t>(code)) == std::ldexp(1.0f, code - 127));
    REQUIRE(e8m0::encode(e8m0::decode(static_cast<std::uint8_t>(code))) == code);
    REQUIRE(e8m0::encode_exponent(code - 127) == code);
  }
}

TEST_CASE("e8m0 encodes powers of two, saturates exponents and has no zero, sign or infinity") {
  using aq::formats::e8m0;
  CHECK(e8m0::encode(0.25f) == 125);
  CHECK(e8m0::encode(3.0f) == 128);        // not a power of two: the power of its binade
  CHECK(e8m0::encode(0x1p-130f) == 0);     // below 2^-127: saturates
  CHECK(e8m0::encode_exponent(-200) == 0);
  CHECK(e8m0::encode_exponent(128) == 254);
  const float inf = std::numeric_limits<float>::infinity();
  for (float x : {0.0f, -0.0f, -1.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN()}) {
    CAPTURE(x);
    CHECK(e8m0::encode(x) == e8m0::nan_code);
  }
  static_assert(e8m0::encode(0x1p-5f) == 122 && e8m0::decode(130) == 8.0f);
}

TEST_CASE("e8m0 shared exponent: ModelOpt's 2^ceil(log2(amax / element max))") {
  using aq::formats::e2m1;
  using aq::formats::e4m3;
  using aq::formats::e8m0;
  const float inf = std::numeric_limits<float>::infinity();
  auto exponent = [](float amax) { return e8m0::shared_exponent(amax, e2m1::max_bound); };
  // amax exactly element_max * 2^k gives k; just above it k + 1; just below it still k.
  for (int k : {-20, -3, 0, 1, 5, 40}) {
    const float amax = std::ldexp(6.0f, k);
    CAPTURE(k);
    CHECK(exponent(amax) == k);
    CHECK(exponent(std::nextafter(amax, inf)) == k + 1);
    CHECK(exponent(std::nextafter(amax, 0.0f)) == k);
  }
  // Exact powers of two and the floats just below them (6 is not a power of two).
  CHECK(exponent(4.0f) == 0);  // 4/6 -> ceil(-0.58) = 0
  CHECK(exponent(std::nextafter(4.0f, 0.0f)) == 0);
  CHECK(exponent(8.0f) == 1);  // 8/6 -> ceil(0.42) = 1
  CHECK(exponent(std::nextafter(8.0f, 0.0f)) == 1);
  CHECK(exponent(1.0f) == -2);  // 1/6: 2^-2 scales it to 4 <= 6, 2^-3 would give 8
  CHECK(exponent(std::nextafter(1.5f, 0.0f)) == -2);
  CHECK(exponent(1.5f) == -2);  // 1.5 / 0.25 = 6 exactly
  CHECK(exponent(std::nextafter(1.5f, 2.0f)) == -1);
  CHECK(e8m0::shared_exponent(448.0f, e4m3::max_bound) == 0);
  CHECK(e8m0::shared_exponent(449.0f, e4m3::max_bound) == 1);
  CHECK(e8m0::shared_exponent(1.0f, e4m3::max_bound) == -8);
  // Clamped to the e8m0 range; degenerate amax gives scale 1, as ModelOpt's compute_scale.
  CHECK(exponent(std::numeric_limits<float>::max()) == 126);
  CHECK(e8m0::shared_exponent(std::numeric_limits<float>::max(), 1.0f) == 127);
  CHECK(e8m0::shared_exponent(std::numeric_limits<float>::max(), 0.25f) == 127);  // 2^130 clamps
  CHECK(exponent(0x1p-149f) == -127);
  CHECK(exponent(0x1p-120f) == -122);  // 2^-120 / 6 -> ceil(-122.58)
  for (float amax : {0.0f, -0.0f, inf, std::numeric_limits<float>::quiet_NaN()}) CHECK(exponent(amax) == 0);
  // The chosen power of two is the smallest that brings amax within the element range.
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  std::uniform_int_distribution<int> binade(-100, 100);
  for (int i = 0; i < 100000; ++i) {
    const float amax = std::ldexp(mantissa(rng), binade(rng));
    const int e = exponent(amax);
    REQUIRE(std::ldexp(amax, -e) <= 6.0f);
    REQUIRE(std::ldexp(amax, 1 - e) > 6.0f);
  }
}

TEST_CASE("e8m0 shared exponent: the OCP MX rule floor(log2(amax)) - emax_elem") {
  using aq::formats::e2m1;
  using aq::formats::e8m0;
  auto exponent = [](float amax) { return e8m0::ocp_shared_exponent(amax, e2m1::max_exponent); };
  CHECK(exponent(4.0f) == 0);
  CHECK(exponent(std::nextafter(4.0f, 0.0f)) == -1);
  CHECK(exponent(6.0f) == 0);
  CHECK(exponent(7.0f) == 0);  // ModelOpt's rule gives 1 here; OCP's saturates 7 to 6
  CHECK(e8m0::shared_exponent(7.0f, e2m1::max_bound) == 1);
  CHECK(exponent(8.0f) == 1);
  CHECK(exponent(std::nextafter(8.0f, 0.0f)) == 0);
  CHECK(exponent(1.0f) == -2);
  CHECK(exponent(0x1p-140f) == -127);  // clamped
  CHECK(exponent(std::numeric_limits<float>::max()) == 125);
  CHECK(exponent(0.0f) == 0);
}

}  // namespace test_formats
