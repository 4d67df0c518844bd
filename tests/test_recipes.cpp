// Recipes: effective bits and display strings exactly as ModelOpt writes them in manifests,
// candidate ordering, and the run-time registry generated from all_recipes.
#include <doctest/doctest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/quant/recipe.hpp"
#include "aq/quant/recipe_registry.hpp"
#include "aq/quant/recipes.hpp"

namespace test_recipes {

namespace recipes = aq::recipes;

TEST_CASE("effective bits are 16 x min(weight bits, activation bits) / 16, disabled counting 16") {
  static_assert(recipes::fp8_e4m3::effective_bits == 8.0);
  static_assert(recipes::int8_w8a8::effective_bits == 8.0);
  static_assert(recipes::w4a8::effective_bits == 4.0);
  static_assert(recipes::w4a8_fp8::effective_bits == 4.0);
  static_assert(recipes::w8a4::effective_bits == 4.0);
  static_assert(recipes::w4a4::effective_bits == 4.0);
  static_assert(recipes::w4a16::effective_bits == 4.0);
  static_assert(recipes::w8a16::effective_bits == 8.0);
  static_assert(recipes::none::effective_bits == 16.0);
  static_assert(recipes::w8a4::compression == 0.25 && recipes::none::compression == 1.0);
  CHECK(aq::quant::effective_bits_of(6, 16) == 6.0);
}

TEST_CASE("ModelOpt display strings use the built-in config name or CUSTOM_<position>") {
  CHECK(recipes::int8_w8a8::modelopt_string(0) == "INT8_DEFAULT_CFG(effective-bits: 8.0)");
  CHECK(recipes::fp8_e4m3::modelopt_string(3) == "FP8_DEFAULT_CFG(effective-bits: 8.0)");
  CHECK(recipes::w8a16::modelopt_string(0) == "INT8_WEIGHT_ONLY_CFG(effective-bits: 8.0)");
  CHECK(recipes::w4a16::modelopt_string(0) == "INT4_BLOCKWISE_WEIGHT_ONLY_CFG(effective-bits: 4.0)");
  CHECK(recipes::w8a4::modelopt_string(0) == "CUSTOM_0(effective-bits: 4.0)");
  CHECK(recipes::w4a8::modelopt_string(2) == "CUSTOM_2(effective-bits: 4.0)");
  CHECK(recipes::none::modelopt_string(1) == "NONE(effective-bits: 16.0)");
  CHECK(aq::quant::python_float_repr(5.5) == "5.5");
  CHECK(aq::quant::python_float_repr(16.0) == "16.0");
}

TEST_CASE("display strings match the recipes named in the reference manifests") {
  // Each reference run searched one format (named by its downstream alias) + NONE.
  for (const std::string pair : {"wint8_aint4", "wint8_aint8", "wfp8_afp8"}) {
    CAPTURE(pair);
    std::ifstream in(std::string(AQ_DATA_DIR) + "/reference/lm-only/" + pair + "/" + pair + "_autoquant_lm_quant_manifest.json");
    REQUIRE(in.good());
    std::stringstream text;
    text << in.rdbuf();
    const std::vector<std::string> user = {pair};
    const auto ordered = aq::quant::order_candidates(user);
    REQUIRE(ordered.size() == 2);
    const std::string expected =
        "\"" + ordered[0].modelopt_string + "\",\n        \"" + ordered[1].modelopt_string + "\"";
    CHECK(text.str().find(expected) != std::string::npos);
  }
  CHECK(aq::quant::order_candidates(std::vector<std::string>{"wint8_aint4"})[0].modelopt_string ==
        "CUSTOM_0(effective-bits: 4.0)");
}

TEST_CASE("candidates are ordered by ascending compression, ties in the user's order, NONE last") {
  const std::vector<std::string> user = {"int8_w8a8", "w4a16", "fp8_e4m3", "w8a4", "w4a8"};
  const auto ordered = aq::quant::order_candidates(user);
  std::vector<std::string> names;
  std::vector<std::string> strings;
  for (const auto& c : ordered) {
    names.emplace_back(c.recipe->name);
    strings.push_back(c.modelopt_string);
  }
  CHECK(names == std::vector<std::string>{"w4a16", "w8a4", "w4a8", "int8_w8a8", "fp8_e4m3", "none"});
  CHECK(strings == std::vector<std::string>{"INT4_BLOCKWISE_WEIGHT_ONLY_CFG(effective-bits: 4.0)",
                                            "CUSTOM_3(effective-bits: 4.0)", "CUSTOM_4(effective-bits: 4.0)",
                                            "INT8_DEFAULT_CFG(effective-bits: 8.0)",
                                            "FP8_DEFAULT_CFG(effective-bits: 8.0)", "NONE(effective-bits: 16.0)"});
  CHECK(ordered[1].position == 3);

  const std::vector<std::string> with_none = {"none", "w8a16"};
  const auto two = aq::quant::order_candidates(with_none);
  REQUIRE(two.size() == 2);
  CHECK(two[0].recipe->name == "w8a16");
  CHECK(two[0].modelopt_string == "INT8_WEIGHT_ONLY_CFG(effective-bits: 8.0)");
  CHECK(two[1].recipe->name == "none");

  const std::vector<std::string> twice = {"w8a4", "wint8_aint4"};
  CHECK_THROWS_WITH(aq::quant::order_candidates(twice), doctest::Contains("repeats recipe 'w8a4' from position 0"));
}

TEST_CASE("registry round trip: every recipe of all_recipes is found by its name, with the same facts") {
  const auto& registry = aq::quant::recipe_registry();
  CHECK(registry.size() == recipes::all_recipes::size);
  std::set<std::string_view> names;
  std::size_t index = 0;
  recipes::all_recipes::for_each([&]<class R>() {
    const auto& info = aq::quant::find_recipe(R::name);
    CHECK(info.name == R::name);
    CHECK(info.index == index++);
    CHECK(info.effective_bits == R::effective_bits);
    CHECK(info.weight.enabled == R::weight::enabled);
    CHECK(info.input.enabled == R::input::enabled);
    CHECK(info.weight.label == R::weight::label());
    CHECK(info.modelopt_string(7) == R::modelopt_string(7));
    bool visited = false;
    aq::quant::visit_recipe(R::name, [&]<class V>(std::type_identity<V>) { visited = std::is_same_v<V, R>; });
    CHECK(visited);
    names.insert(R::name);
  });
  CHECK(names.size() == registry.size());  // names are unique
  CHECK(aq::quant::find_recipe("w4a8").weight.label == "int4 per-block(128)");
  CHECK(aq::quant::find_recipe("w4a8").input.label == "int8 per-tensor");
  CHECK(aq::quant::find_recipe("w8a16").input.label == "disabled");
}

TEST_CASE("aliases resolve to their recipes and every alias target exists") {
  CHECK(aq::quant::find_recipe("wint8_aint8").name == "int8_w8a8");
  CHECK(aq::quant::find_recipe("wint8_aint4").name == "w8a4");
  CHECK(aq::quant::find_recipe("wfp8_afp8").name == "fp8_e4m3");
  CHECK(aq::quant::find_recipe("wint4_aint8").name == "w4a8");
  CHECK(aq::quant::find_recipe("wint4_afp16").name == "w4a16");
  for (const auto& [alias, target] : recipes::recipe_aliases) CHECK(aq::quant::find_recipe(target).name == target);
}

TEST_CASE("an unknown recipe name is an aq::error listing the valid names") {
  CHECK_THROWS_AS(aq::quant::find_recipe("int3"), aq::error);
  CHECK_THROWS_WITH(aq::quant::find_recipe("int3"),
                    doctest::Contains("recipe 'int3' is unknown; valid recipes: fp8_e4m3, int8_w8a8, w4a8, w4a8_fp8, "
                                      "w8a4, w4a4, w4a16, w8a16, nvfp4, w4a8_nvfp4_fp8, mxfp8, mxfp6, mxfp4, "
                                      "w4a8_mxfp4_fp8, mxint8, fp8_pc_pt, fp8_2d_blockwise, none (aliases: "
                                      "wfp8_afp8 -> fp8_e4m3"));
}

TEST_CASE("the registry table has one row per recipe, generated from the list") {
  const std::string table = aq::quant::recipe_table();
  std::size_t lines = 0;
  for (char c : table) lines += c == '\n';
  CHECK(lines == 2 + recipes::all_recipes::size);
  CHECK(table.find("| int8_w8a8 | int8 per-channel | int8 per-tensor | 8.0 | INT8_DEFAULT_CFG | wint8_aint8 |") !=
        std::string::npos);
  CHECK(table.find("| w8a4 | int8 per-channel | int4 per-tensor | 4.0 | CUSTOM_<i> | wint8_aint4 |") != std::string::npos);
  CHECK(table.find("| none | disabled | disabled | 16.0 | NONE |  |") != std::string::npos);
}

TEST_CASE("docs/formats.md shows the format and recipe tables generated from the lists") {
  std::ifstream in(std::string(AQ_SOURCE_DIR) + "/docs/formats.md");
  REQUIRE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  CHECK(text.str().find(aq::formats::format_table()) != std::string::npos);
  CHECK(text.str().find(aq::quant::recipe_table()) != std::string::npos);
}

}  // namespace test_recipes
