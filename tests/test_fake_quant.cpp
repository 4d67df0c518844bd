// Fake quantization against float64 references written from ModelOpt's formulas: integers
// q = clamp(rint(x*s), lo, hi), x' = q/s with s = fp32(maxbound/amax); e4m3 y = e4m3(x*s) * fp32(1/s).
// The references round to fp32 exactly where ModelOpt's fp32 code rounds (float(double op) is
// the correctly rounded fp32 op for + - * /), so EXACT equality is expected: tolerance 0.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/formats/all_formats.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/quantizer.hpp"

namespace test_fake_quant {

namespace {

using aq::quant::output_rounding;
using aq::quant::per_block;
using aq::quant::per_channel;
using aq::quant::per_tensor;
using aq::quant::quantizer;

float reference_int(float x, float amax, int bits, bool narrow) {
  if (!(static_cast<double>(amax) > std::ldexp(1.0, -24))) return 0.0f;
  const double bound = std::ldexp(1.0, bits - 1) - 1.0;
  const double lowest = narrow ? -bound : -bound - 1.0;
  const auto scale = static_cast<float>(bound / static_cast<double>(amax));
  const auto scaled = static_cast<float>(static_cast<double>(x) * static_cast<double>(scale));
  const double q = std::clamp(std::nearbyint(static_cast<double>(scaled)), lowest, bound);  // default mode: ties to even
  return static_cast<float>(q / static_cast<double>(scale));
}

// e4m3 reference by float64 search over the 127 non-negative finite values (ties to even code).
double reference_e4m3_round(double a) {
  static const std::vector<double> values = [] {
    std::vector<double> v;
    for (int code = 0; code <= 126; ++code) {
      const int e = code >> 3;
      const int m = code & 7;
      v.push_back(e == 0 ? m * std::ldexp(1.0, -9) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7));
    }
    return v;
  }();
  const double magnitude = std::fabs(a);
  double result = 448.0;
  if (magnitude < 448.0) {
    const auto hi = static_cast<std::size_t>(std::lower_bound(values.begin(), values.end(), magnitude) - values.begin());
    if (values[hi] == magnitude) {
      result = magnitude;
    } else {
      const double d_lo = magnitude - values[hi - 1];
      const double d_hi = values[hi] - magnitude;
      result = d_lo < d_hi ? values[hi - 1] : d_hi < d_lo ? values[hi] : ((hi - 1) % 2 == 0 ? values[hi - 1] : values[hi]);
    }
  }
  return std::copysign(result, a);
}

float reference_e4m3(float x, float amax) {
  if (!(static_cast<double>(amax) > std::ldexp(1.0, -24))) return 0.0f;
  const auto scale = static_cast<float>(448.0 / static_cast<double>(amax));
  const auto inv = static_cast<float>(1.0 / static_cast<double>(scale));
  const auto scaled = static_cast<float>(static_cast<double>(x) * static_cast<double>(scale));
  return static_cast<float>(reference_e4m3_round(scaled) * static_cast<double>(inv));
}

std::vector<float> random_matrix(std::int64_t rows, std::int64_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::uniform_real_distribution<float> row_scale(0.01f, 4.0f);
  std::vector<float> m(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float s = row_scale(rng);
    for (std::int64_t c = 0; c < cols; ++c) m[static_cast<std::size_t>(r * cols + c)] = aq::round_to_bf16(dist(rng) * s);
  }
  return m;
}

}  // namespace

TEST_CASE("int8 and int4 fake quantization equals the float64 reference exactly on random data") {
  std::mt19937 rng(1);
  std::normal_distribution<float> values(0.0f, 1.0f);
  std::uniform_real_distribution<float> amaxes(1e-3f, 10.0f);
  for (int i = 0; i < 200000; ++i) {
    const float amax = amaxes(rng);
    const float x = values(rng) * amax * 0.7f;
    for (bool narrow : {false, true}) {
      REQUIRE(aq::quant::fake_quantize<aq::formats::int8>(x, amax, narrow) == reference_int(x, amax, 8, narrow));
      REQUIRE(aq::quant::fake_quantize<aq::formats::int4>(x, amax, narrow) == reference_int(x, amax, 4, narrow));
    }
  }
}

TEST_CASE("e4m3 fake quantization equals the float64 reference exactly on random data") {
  std::mt19937 rng(2);
  std::normal_distribution<float> values(0.0f, 1.0f);
  std::uniform_real_distribution<float> amaxes(1e-3f, 10.0f);
  for (int i = 0; i < 200000; ++i) {
    const float amax = amaxes(rng);
    const float x = values(rng) * amax * 0.5f;  // tails beyond amax exercise saturation
    REQUIRE(aq::quant::fake_quantize<aq::formats::e4m3>(x, amax) == reference_e4m3(x, amax));
  }
}

TEST_CASE("bf16 output rounding equals rounding the fp32 result to bf16") {
  std::mt19937 rng(3);
  std::normal_distribution<float> values(0.0f, 1.0f);
  for (int i = 0; i < 50000; ++i) {
    const float x = aq::round_to_bf16(values(rng));
    const float amax = aq::round_to_bf16(2.5f);  // ModelOpt stores amax in bf16
    REQUIRE(aq::quant::fake_quantize_bf16<aq::formats::int8>(x, amax) == aq::round_to_bf16(reference_int(x, amax, 8, false)));
    REQUIRE(aq::quant::fake_quantize_bf16<aq::formats::e4m3>(x, amax) == aq::round_to_bf16(reference_e4m3(x, amax)));
  }
}

TEST_CASE("narrow range clamps integers to [-maxbound, maxbound], full range reaches -maxbound-1") {
  const float amax = 1.0f;
  const float x = -amax * 128.0f / 127.0f;
  CHECK(aq::quant::fake_quantize<aq::formats::int8>(x, amax) * 127.0f == doctest::Approx(-128.0f).epsilon(1e-6));
  CHECK(aq::quant::fake_quantize<aq::formats::int8>(x, amax, true) == doctest::Approx(-1.0f).epsilon(1e-6));
  CHECK(aq::quant::fake_quantize<aq::formats::int4>(-2.0f, 1.0f) == -8.0f / 7.0f);
  CHECK(aq::quant::fake_quantize<aq::formats::int4>(-2.0f, 1.0f, true) == -1.0f);
  CHECK(aq::quant::fake_quantize<aq::formats::int4>(2.0f, 1.0f) == 1.0f);
}

TEST_CASE("zero amax gives 0 for every format, never NaN (ModelOpt fp8 would give NaN)") {
  for (float x : {0.5f, -7.0f, 1e-20f}) {
    CHECK(aq::quant::fake_quantize<aq::formats::e4m3>(x, 0.0f) == 0.0f);
    CHECK(aq::quant::fake_quantize<aq::formats::int8>(x, 0.0f) == 0.0f);
    CHECK(aq::quant::fake_quantize<aq::formats::int4>(x, 0x1p-24f) == 0.0f);
    CHECK(aq::quant::fake_quantize<aq::formats::none>(x, 0.0f) == x);
  }
  std::vector<float> m = {1.0f, 2.0f, 0.0f, 0.0f};  // second row all zero: its channel amax is 0
  std::vector<float> out(4);
  aq::quant::fake_quantize_weight<quantizer<aq::formats::e4m3, per_channel>>(m, out, 2, 2);
  CHECK(out[2] == 0.0f);
  CHECK(out[3] == 0.0f);
  CHECK(out[1] == 2.0f);
}

TEST_CASE("per-channel amax is the max |x| of each row and scales each row independently") {
  const std::int64_t rows = 7, cols = 300;
  const auto w = random_matrix(rows, cols, 4);
  using Q = quantizer<aq::formats::int8, per_channel>;
  const auto amax = aq::quant::compute_amax<per_channel>(w, rows, cols);
  REQUIRE(amax.size() == static_cast<std::size_t>(rows));
  CHECK(per_channel::amax_shape(rows, cols) == std::vector<std::int64_t>{rows, 1});
  std::vector<float> out(w.size());
  const auto returned = aq::quant::fake_quantize_weight<Q>(w, out, rows, cols);
  CHECK(returned == amax);
  for (std::int64_t r = 0; r < rows; ++r) {
    double expected = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) expected = std::max(expected, std::fabs(static_cast<double>(w[r * cols + c])));
    REQUIRE(static_cast<double>(amax[r]) == expected);
    for (std::int64_t c = 0; c < cols; ++c) {
      REQUIRE(out[r * cols + c] == reference_int(w[r * cols + c], static_cast<float>(expected), 8, false));
    }
  }
}

TEST_CASE("per-block(128) amax covers 128 consecutive columns of one row, the short last block padded") {
  const std::int64_t rows = 3, cols = 300;  // blocks of 128, 128 and 44 columns per row
  const auto w = random_matrix(rows, cols, 5);
  using G = per_block<128>;
  using Q = quantizer<aq::formats::int4, G>;
  const auto amax = aq::quant::compute_amax<G>(w, rows, cols);
  REQUIRE(amax.size() == 9);
  CHECK(G::amax_shape(rows, cols) == std::vector<std::int64_t>{9, 1});
  CHECK(G::amax_shape(4, 2560) == std::vector<std::int64_t>{80, 1});  // rows*cols/128 when divisible
  std::vector<float> out(w.size());
  aq::quant::fake_quantize_matrix<Q>(w, out, rows, cols, amax, output_rounding::bf16);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t b = 0; b < 3; ++b) {
      double expected = 0.0;
      for (std::int64_t c = b * 128; c < std::min(cols, (b + 1) * 128); ++c) {
        expected = std::max(expected, std::fabs(static_cast<double>(w[r * cols + c])));
      }
      REQUIRE(static_cast<double>(amax[r * 3 + b]) == expected);
      for (std::int64_t c = b * 128; c < std::min(cols, (b + 1) * 128); ++c) {
        REQUIRE(out[r * cols + c] ==
                aq::round_to_bf16(reference_int(w[r * cols + c], static_cast<float>(expected), 4, false)));
      }
    }
  }
}

TEST_CASE("per-tensor fp8 over a matrix equals the element function with the global amax") {
  const std::int64_t rows = 5, cols = 64;
  const auto x = random_matrix(rows, cols, 6);
  using Q = quantizer<aq::formats::e4m3, per_tensor>;
  const auto amax = aq::quant::compute_amax<per_tensor>(x, rows, cols);
  REQUIRE(amax.size() == 1);
  CHECK(per_tensor::amax_shape(rows, cols).empty());
  std::vector<float> out(x.size());
  aq::quant::fake_quantize_matrix<Q>(x, out, rows, cols, amax);
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(out[i] == reference_e4m3(x[i], amax[0]));
  // in place
  std::vector<float> inplace = x;
  aq::quant::fake_quantize_matrix<Q>(inplace, inplace, rows, cols, amax);
  CHECK(inplace == out);
}

TEST_CASE("disabled quantizer passes values through (optionally rounded to bf16)") {
  std::vector<float> x = {1.0f + 0x1p-10f, -3.0f};
  std::vector<float> out(2);
  aq::quant::fake_quantize_matrix<aq::quant::disabled>(x, out, 1, 2, {});
  CHECK(out == x);
  aq::quant::fake_quantize_matrix<aq::quant::disabled>(x, out, 1, 2, {}, output_rounding::bf16);
  CHECK(out[0] == 1.0f);
}

TEST_CASE("shape and amax-count mismatches and non-finite data are reported as aq::error") {
  std::vector<float> x(6, 1.0f);
  std::vector<float> out(6);
  using Q = quantizer<aq::formats::int8, per_channel>;
  CHECK_THROWS_AS(aq::quant::fake_quantize_matrix<Q>(x, out, 2, 4, std::vector<float>{1, 1}), aq::error);
  CHECK_THROWS_WITH(aq::quant::fake_quantize_matrix<Q>(x, out, 2, 3, std::vector<float>{1, 1, 1}, output_rounding::fp32, "w"),
                    doctest::Contains("amax has 3 values, expected 2"));
  x[4] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(aq::quant::compute_amax<per_channel>(x, 2, 3, "layers.0.q_proj.weight"),
                    doctest::Contains("layers.0.q_proj.weight: amax input must be finite, found nan at element 4"));
}

}  // namespace test_fake_quant
