// Max calibrator: running max of |x| per amax slot over batches, compared with a brute-force
// max over the concatenated batches (exact: max is exact); merge, "never saw data", NaN/inf errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "aq/calib/max_calibrator.hpp"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/formats/all_formats.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/quantizer.hpp"

namespace {

using aq::quant::per_block;
using aq::quant::per_channel;
using aq::quant::per_tensor;
using aq::quant::quantizer;

std::vector<float> random_batch(std::int64_t rows, std::int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> b(static_cast<std::size_t>(rows * cols));
  for (float& v : b) v = dist(rng);
  return b;
}

}  // namespace

TEST_CASE("per-tensor max calibration over batches of varying shape equals the max over all of them") {
  aq::calib::max_calibrator<quantizer<aq::formats::int8, per_tensor>> calibrator("layers.0.q_proj.input_quantizer");
  CHECK_FALSE(calibrator.has_data());
  std::mt19937 rng(1);
  double expected = 0.0;
  for (std::int64_t tokens : {16, 5, 33}) {
    const auto batch = random_batch(tokens, 64, rng);
    for (float v : batch) expected = std::max(expected, std::fabs(static_cast<double>(v)));
    calibrator.collect(batch, tokens, 64);
  }
  REQUIRE(calibrator.has_data());
  CHECK(calibrator.batches() == 3);
  REQUIRE(calibrator.amax().size() == 1);
  CHECK(static_cast<double>(calibrator.amax()[0]) == expected);
  CHECK(calibrator.amax_shape().empty());
  CHECK(calibrator.amax_bf16()[0] == aq::round_to_bf16(static_cast<float>(expected)));
}

TEST_CASE("merging calibrators equals calibrating on the concatenation of their batches") {
  using Q = quantizer<aq::formats::int4, per_block<128>>;
  std::mt19937 rng(2);
  aq::calib::max_calibrator<Q> a("a"), b("b"), all("all");
  for (int i = 0; i < 6; ++i) {
    const auto batch = random_batch(4, 300, rng);
    (i % 2 == 0 ? a : b).collect(batch, 4, 300);
    all.collect(batch, 4, 300);
  }
  aq::calib::max_calibrator<Q> merged("merged");
  merged.merge(a);
  merged.merge(aq::calib::max_calibrator<Q>("empty"));  // a calibrator without data changes nothing
  merged.merge(b);
  REQUIRE(merged.amax().size() == 12);
  CHECK(std::vector<float>(merged.amax().begin(), merged.amax().end()) ==
        std::vector<float>(all.amax().begin(), all.amax().end()));
  CHECK(merged.batches() == 6);
  CHECK(merged.amax_shape() == std::vector<std::int64_t>{12, 1});
}

TEST_CASE("per-channel weight calibration is the row max of |W|") {
  std::mt19937 rng(3);
  const auto w = random_batch(9, 40, rng);
  const auto amax = aq::calib::calibrate_weight<quantizer<aq::formats::int8, per_channel>>(w, 9, 40);
  REQUIRE(amax.size() == 9);
  for (int r = 0; r < 9; ++r) {
    float expected = 0.0f;
    for (int c = 0; c < 40; ++c) expected = std::max(expected, std::fabs(w[r * 40 + c]));
    CHECK(amax[r] == expected);
  }
}

TEST_CASE("a calibrator that never saw data is distinguishable and refuses to give an amax") {
  aq::calib::max_calibrator<quantizer<aq::formats::e4m3, per_tensor>> calibrator("lm_head.input_quantizer");
  CHECK_FALSE(calibrator.has_data());
  CHECK(calibrator.batches() == 0);
  CHECK_THROWS_WITH(calibrator.amax(), doctest::Contains("lm_head.input_quantizer: amax requested but the max calibrator never saw data"));
}

TEST_CASE("NaN or infinity in a batch is an aq::error naming the tensor and the batch") {
  aq::calib::max_calibrator<quantizer<aq::formats::int8, per_tensor>> calibrator("x");
  std::vector<float> batch(8, 1.0f);
  calibrator.collect(batch, 2, 4);
  batch[5] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(calibrator.collect(batch, 2, 4), doctest::Contains("x (batch 1): amax input must be finite, found inf at element 5"));
  batch[5] = -std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(calibrator.collect(batch, 2, 4), aq::error);
  CHECK(calibrator.amax()[0] == 1.0f);  // failed batches leave the state unchanged
}

TEST_CASE("per-channel and per-block calibration reject a batch of another layout") {
  aq::calib::max_calibrator<quantizer<aq::formats::int8, per_channel>> calibrator("w");
  std::vector<float> batch(12, 1.0f);
  calibrator.collect(batch, 3, 4);
  CHECK_THROWS_WITH(calibrator.collect(batch, 4, 3), doctest::Contains("w: batch 1 is 4 x 3, expected 3 x 4"));
  aq::calib::max_calibrator<quantizer<aq::formats::int8, per_channel>> other("v");
  other.collect(batch, 2, 6);
  CHECK_THROWS_AS(calibrator.merge(other), aq::error);
}
