// Every recipe with a ModelOpt config against ModelOpt's own fake quantization, bit for bit: the
// vectors in fixtures/formats/ were made by NVIDIA ModelOpt 0.39.0 on a GPU (its CUDA and Triton
// kernels, through mtq.quantize on a one-layer model; make_modelopt_vectors.py, README.md there).
// For each recipe, quantizer (weight, input), case (random, heavy-tailed, zero blocks, values at
// the formats' maxima and ties, beyond the calibrated amax, tiny, subnormal, NaN/Inf) and dtype
// (fp32, bf16): aq's calibrated amax equals ModelOpt's, and aq's output equals ModelOpt's except
// where docs/formats.md documents a difference, each of which is checked here to be that
// difference and nothing else.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "aq/core/bf16.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/io/json_parser.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/recipe_registry.hpp"
#include "aq/quant/recipes.hpp"

namespace test_modelopt_vectors {

namespace {

namespace quant = aq::quant;

const std::string vectors_path = std::string(AQ_TEST_FIXTURES) + "/formats/modelopt_fake_quant_vectors.safetensors";

const aq::safetensors_file& vectors() {
  static const aq::safetensors_file file(vectors_path);
  return file;
}

std::vector<float> read(const std::string& name) { return aq::to_float_vector(vectors().at(name)); }

// The tensor a case is calibrated on (make_modelopt_vectors.py's CALIBRATE_ON); NaN/Inf are
// zeroed for calibration, as the generator did for the `nonfinite` cases.
std::vector<float> calibration_tensor(const std::string& the_case, const std::string& dtype) {
  std::string source = the_case;
  if (the_case == "beyond_amax") source = "normal";
  if (the_case == "tall_beyond_amax") source = "tall_normal";
  std::vector<float> x = read("inputs." + source + "." + dtype + ".x");
  for (float& v : x) v = std::isfinite(v) ? v : 0.0f;
  return x;
}

struct tally {
  std::size_t compared = 0;
  std::size_t equal = 0;
  std::size_t modelopt_nan = 0;      // ModelOpt NaN where aq gives ±0 or saturates (see below)
  std::size_t division_ties = 0;     // ModelOpt's approximate division on a rounding tie
  std::size_t unexplained = 0;
  std::string first_unexplained;
};

bool same_value(float a, float b) {
  return std::memcmp(&a, &b, sizeof(float)) == 0 || (std::isnan(a) && std::isnan(b));
}

// One NVFP4 element that aq and ModelOpt round to neighbouring e2m1 values because ModelOpt's
// Triton kernel divides approximately (div.full.f32, within 2 ulp) and the exact quotient
// |x| / s lies within 2 ulp of a rounding threshold: aq's value and ModelOpt's are the grid
// values just below and just above that threshold.
bool explained_by_division(float x, float scale, float ours, float theirs) {
  static constexpr double thresholds[] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0};
  static constexpr double grid[] = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0};
  const auto grid_index = [](double v) {  // nearest grid value (outputs are bf16-rounded)
    int best = 0;
    for (int i = 1; i < 8; ++i) best = std::abs(grid[i] - v) < std::abs(grid[best] - v) ? i : best;
    return best;
  };
  const double quotient = std::abs(static_cast<double>(x)) / scale;
  const int a = grid_index(std::abs(static_cast<double>(ours)) / scale);
  const int b = grid_index(std::abs(static_cast<double>(theirs)) / scale);
  if (std::abs(a - b) != 1) return false;
  const double threshold = thresholds[std::min(a, b)];
  const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(threshold)) - 23);
  return std::abs(quotient - threshold) <= 2.0 * ulp;
}

template <class Scales>
float slot_scale(const Scales& scales, std::size_t i, std::int64_t cols) {
  if constexpr (std::is_same_v<typename Scales::value_type, quant::e4m3_block_scale::slot_scale>) {
    return scales[i / 16].scale;
  } else {
    (void)scales, (void)i, (void)cols;
    return 0.0f;
  }
}

template <quant::quantizer_spec Q>
void compare_case(const std::string& recipe, const std::string& role, const std::string& the_case,
                  const std::string& dtype, tally& t) {
  const std::string key = recipe + "." + role + "." + the_case + "." + dtype;
  if (vectors().find(key + ".y") == nullptr) return;
  const aq::tensor_view& xv = vectors().at("inputs." + the_case + "." + dtype + ".x");
  const std::int64_t rows = xv.shape[0], cols = xv.shape[1];
  const std::vector<float> x = aq::to_float_vector(xv);
  const std::vector<float> theirs = read(key + ".y");
  std::vector<float> amax = quant::calibrate_amax<Q>(calibration_tensor(the_case, dtype), rows, cols, key);
  if (vectors().find(key + ".amax") != nullptr) {
    const std::vector<float> their_amax = read(key + ".amax");
    INFO(key);
    REQUIRE(their_amax.size() == amax.size());
    for (std::size_t i = 0; i < amax.size(); ++i) CHECK(same_value(amax[i], their_amax[i]));
  } else {
    CHECK(amax.empty());
  }
  const auto rounding = dtype == "bfloat16" ? quant::output_rounding::bf16 : quant::output_rounding::fp32;
  std::vector<float> ours(x.size());
  quant::fake_quantize_matrix<Q>(x, ours, rows, cols, amax, rounding, key);
  constexpr bool nvfp4 = std::is_same_v<typename Q::scaling_type, quant::e4m3_block_scale>;
  // ModelOpt NaN is expected where aq outputs ±0 (no usable scale: amax zero, subnormal, NaN or
  // infinite) and, for 2-D tiles (ModelOpt's Python fp8 path, which does not saturate), where
  // x lies beyond its tile's calibrated amax or is not finite.
  constexpr bool tiles = requires { Q::granularity_type::tile_rows; };
  const auto beyond = [&](float v, std::size_t i) {
    const auto slot = static_cast<std::size_t>(Q::granularity_type::amax_index(
        static_cast<std::int64_t>(i) / cols, static_cast<std::int64_t>(i) % cols, cols));
    return !std::isfinite(v) || (slot < amax.size() && std::abs(v) > amax[slot]);
  };
  const auto scales = quant::slot_scales<Q>(x, rows, cols, amax);
  for (std::size_t i = 0; i < x.size(); ++i) {
    ++t.compared;
    if (same_value(ours[i], theirs[i])) {
      ++t.equal;
    } else if (std::isnan(theirs[i]) && (ours[i] == 0.0f || (tiles && beyond(x[i], i)))) {
      ++t.modelopt_nan;
    } else if (nvfp4 && explained_by_division(x[i], slot_scale(scales, i, cols), ours[i], theirs[i])) {
      if (std::getenv("AQ_VECTORS_VERBOSE") != nullptr) {
        std::printf("TIE %s [%zu] x=%a aq=%a modelopt=%a\n", key.c_str(), i, x[i], ours[i], theirs[i]);
      }
      ++t.division_ties;
    } else {
      if (std::getenv("AQ_VECTORS_VERBOSE") != nullptr && t.unexplained < 4000) {
        std::printf("%s [%zu] x=%a aq=%a modelopt=%a\n", key.c_str(), i, x[i], ours[i], theirs[i]);
      }
      if (t.unexplained++ == 0) {
        t.first_unexplained = key + " [" + std::to_string(i) + "] x=" + std::to_string(x[i]) +
                              " aq=" + std::to_string(ours[i]) + " modelopt=" + std::to_string(theirs[i]);
      }
    }
  }
}

const std::vector<std::string> cases = {"normal",     "heavy_t2", "zero_blocks", "format_max",       "beyond_amax",
                                        "tiny_global", "subnormal_rows", "nonfinite", "tall_normal",
                                        "tall_beyond_amax", "tall_nonfinite"};

template <class R>
std::map<std::string, tally> compare_recipe() {
  std::map<std::string, tally> by_role;
  const std::string name(R::name);
  for (const std::string& the_case : cases) {
    for (const std::string dtype : {"float32", "bfloat16"}) {
      compare_case<typename R::weight>(name, "weight", the_case, dtype, by_role["weight"]);
      compare_case<typename R::input>(name, "input", the_case, dtype, by_role["input"]);
    }
  }
  return by_role;
}

}  // namespace

TEST_CASE("every ModelOpt recipe's fake quantization equals ModelOpt's own, bit for bit") {
  std::size_t recipes_compared = 0;
  aq::recipes::all_recipes::for_each([&]<class R>() {
    if (vectors().find("inputs.normal.float32.x") == nullptr) return;
    const auto by_role = compare_recipe<R>();
    for (const auto& [role, t] : by_role) {
      if (t.compared == 0) continue;
      const std::string line = std::string(R::name) + " " + role + ": " + std::to_string(t.equal) + " of " +
                               std::to_string(t.compared) + " equal, ModelOpt NaN " + std::to_string(t.modelopt_nan) +
                               ", division ties " + std::to_string(t.division_ties) + ", unexplained " +
                               std::to_string(t.unexplained) + " " + t.first_unexplained;
      MESSAGE(line);
      CHECK(t.unexplained == 0);
      CHECK(t.division_ties * 1000 <= t.compared);  // rare by construction: exact ties only
      ++recipes_compared;
    }
  });
  CHECK(recipes_compared > 0);
}

TEST_CASE("every recipe's effective bits and report name are ModelOpt's") {
  simdjson::dom::parser parser;
  const simdjson::dom::element recipes =
      parser.load(std::string(AQ_TEST_FIXTURES) + "/formats/modelopt_fake_quant_vectors.json")["recipes"];
  for (const quant::recipe_info& info : quant::recipe_registry()) {
    if (!info.quantizes) continue;
    INFO(std::string(info.name));
    const auto entry = recipes[info.name]["auto_quantize"];
    // Every recipe that is a ModelOpt built-in has vectors; custom ones may (w4a8, w8a4, w8a16).
    if (!info.modelopt_config.empty()) REQUIRE(entry.error() == simdjson::SUCCESS);
    if (entry.error() != simdjson::SUCCESS) continue;
    CHECK(info.effective_bits == double(entry["effective_bits"]));
    if (!info.modelopt_config.empty()) CHECK(info.modelopt_string(0) == std::string_view(entry["recipe"]));
  }
}

}  // namespace test_modelopt_vectors
