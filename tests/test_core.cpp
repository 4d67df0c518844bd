// Core utilities: bf16 rounding against a float64 reference, atomic whole-file writes.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "aq/core/atomic_file.hpp"
#include "aq/core/bf16.hpp"

namespace test_core {

namespace {

// Independent reference: pick the nearer of the two bf16 neighbours in float64, ties to even;
// past the largest bf16 the upper neighbour is 2^128, which a float holds as infinity.
float reference_round_to_bf16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const float down = std::bit_cast<float>(bits & 0xffff0000u);
  const int exponent_field = static_cast<int>((bits >> 23) & 0xffu);
  const double ulp = std::ldexp(1.0, (exponent_field == 0 ? 1 : exponent_field) - 127 - 7);
  const double up = static_cast<double>(down) + ulp;
  const double distance_down = static_cast<double>(value) - down;
  const double distance_up = up - static_cast<double>(value);
  const bool choose_up = distance_up < distance_down || (distance_up == distance_down && ((bits >> 16) & 1u) != 0);
  if (!choose_up) return down;
  return up >= 0x1p128 ? std::numeric_limits<float>::infinity() : static_cast<float>(up);
}

}  // namespace

TEST_CASE("bf16 rounds to nearest even like a float64 reference") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  for (int i = 0; i < 200000; ++i) {
    const float value = std::bit_cast<float>(any_bits(rng) & 0x7f7fffffu);  // finite, positive
    REQUIRE(aq::round_to_bf16(value) == reference_round_to_bf16(value));
    REQUIRE(aq::round_to_bf16(-value) == -reference_round_to_bf16(value));
  }
  CHECK(aq::round_to_bf16(1.0f + 1.0f / 256.0f) == 1.0f);               // tie -> even (down)
  CHECK(aq::round_to_bf16(1.0f + 3.0f / 256.0f) == 1.0f + 4.0f / 256.0f);  // tie -> even (up)
  CHECK(std::isnan(aq::round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isinf(aq::round_to_bf16(std::numeric_limits<float>::infinity())));
}

TEST_CASE("atomic file writes replace the target whole and leave no temporary") {
  const auto dir = std::filesystem::temp_directory_path() / "aq_test_atomic_file";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto target = dir / "report.json";
  aq::write_file_atomic(target, "first");
  aq::write_file_atomic(target, "second version");
  std::ifstream in(target);
  std::stringstream content;
  content << in.rdbuf();
  CHECK(content.str() == "second version");
  CHECK(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()) == 1);

  SUBCASE("an unwritable target throws an error naming the file") {
    const auto bad = dir / "missing-dir" / "x.json";
    CHECK_THROWS_WITH_AS(aq::write_file_atomic(bad, "x"), doctest::Contains("missing-dir/x.json"), aq::error);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace test_core
