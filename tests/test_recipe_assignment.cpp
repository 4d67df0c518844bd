// Recipe assignments (search/recipe_assignment.hpp) on the built-in model's search space: a
// manifest's chosen_recipes read back to the same candidate per group (ModelOpt and CUSTOM names),
// recipe maps with fnmatch patterns where the last matching key wins and unmatched modules stay
// unquantized, every refusal as one line naming the file and the offending key, and the committed
// golden and reference manifests.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "aq/core/error.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/report/quant_manifest.hpp"
#include "aq/report/report_model.hpp"
#include "aq/search/recipe_assignment.hpp"
#include "aq/search/scope.hpp"
#include "aq/search/search_space.hpp"

#include "cli/default_model.hpp"

namespace test_recipe_assignment {

namespace {

using namespace aq;
namespace fs = std::filesystem;

const std::vector<std::string> user_formats{"fp8_e4m3", "int8_w8a8", "w4a8"};

// The built-in model's groups (vision tower disabled, as the lm scope does), candidates
// w4a8, fp8_e4m3, int8_w8a8, NONE.
autoquant::search_space lm_space() {
  return autoquant::make_search_space(qwen3_vl::quantizable_modules(autoquant::default_model_config()), user_formats,
                                      autoquant::scope_patterns(autoquant::scope_preset::lm));
}

struct scratch_dir {
  fs::path path = fs::temp_directory_path() / ("aq_test_recipe_assignment_" + std::to_string(::getpid()));
  scratch_dir() { fs::create_directories(path); }
  ~scratch_dir() { fs::remove_all(path); }

  fs::path write(const std::string& name, std::string_view text) const {
    const fs::path file = path / name;
    std::ofstream(file, std::ios::binary) << text;
    return file;
  }
};

// The message of the aq::error `run` throws ("" when it throws none); CHECKs that it is one line.
std::string error_of(const std::function<void()>& run) {
  try {
    run();
  } catch (const aq::error& e) {
    const std::string message = e.what();
    CHECK(message.find('\n') == std::string::npos);
    return message;
  }
  return "";
}

std::size_t candidate_named(const autoquant::search_space& space, std::string_view name) {
  for (std::size_t c = 0; c < space.candidates.size(); ++c) {
    if (space.candidates[c].recipe->name == name) return c;
  }
  FAIL("no candidate " << name);
  return 0;
}

std::size_t group_named(const autoquant::search_space& space, std::string_view module) {
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (space.groups[g].name == std::string(module) + ".quant_recipe") return g;
  }
  FAIL("no group " << module);
  return 0;
}

// A selection that uses every candidate: configurable groups cycle through them, disabled ones NONE.
std::vector<std::size_t> cycling_selection(const autoquant::search_space& space) {
  std::vector<std::size_t> chosen;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    chosen.push_back(space.configurable(g) ? g % space.candidates.size() : space.none_index());
  }
  return chosen;
}

// A manifest of `chosen` as a run writes it (engine.hpp's build_report, scores made up).
io::report_model manifest_of(const autoquant::search_space& space, const std::vector<std::size_t>& chosen,
                             bool custom_names, std::vector<std::string> quant_formats) {
  io::report_model report;
  report.scheme = {"mix", 6.0, "gradient", 128, "lm_only", 1.0, std::move(quant_formats)};
  for (std::size_t m = 0; m < space.modules.size(); ++m) {
    if (space.modules[m].kind == module_kind::linear) report.layers.push_back({space.module_names[m], true, "QuantLinear"});
  }
  report.chosen_recipes.emplace();
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    io::group_sensitivity group{space.groups[g].name, {}};
    for (const std::size_t c : space.choices(g)) {
      group.candidates.push_back({space.display(c, custom_names), 0.25 * static_cast<double>(c), 1.0});
    }
    report.groups.push_back(std::move(group));
    report.chosen_recipes->push_back({space.groups[g].name, space.display(chosen[g], custom_names)});
  }
  return report;
}

// The distinct quantizing recipes of a selection in group order, as aq names.
std::vector<std::string> quantizing_names(const autoquant::search_space& space, const std::vector<std::size_t>& chosen) {
  std::vector<std::string> names;
  for (const std::size_t c : chosen) {
    const std::string name(space.candidates[c].recipe->name);
    if (space.candidates[c].recipe->quantizes && std::find(names.begin(), names.end(), name) == names.end()) {
      names.push_back(name);
    }
  }
  return names;
}

// Every group at NONE but those listed (module name of the group's first member -> candidate).
std::vector<std::size_t> expected_selection(const autoquant::search_space& space,
                                            const std::vector<std::pair<std::string, std::string>>& picks) {
  std::vector<std::size_t> chosen(space.groups.size(), space.none_index());
  for (const auto& [module, recipe] : picks) chosen[group_named(space, module)] = candidate_named(space, recipe);
  return chosen;
}

const std::string layer0 = "model.language_model.layers.0.";
const std::string layer1 = "model.language_model.layers.1.";

std::vector<std::size_t> assign_map(const autoquant::search_space& space, std::string_view json) {
  return autoquant::assign_groups(space, autoquant::parse_recipe_assignment(json, "MAP.json"));
}

}  // namespace

TEST_CASE("the built-in model's lm space: candidates by ascending bits, vision disabled") {
  const autoquant::search_space space = lm_space();
  REQUIRE(space.candidates.size() == 4);
  CHECK(space.candidates[0].recipe->name == "w4a8");
  CHECK(space.candidates[1].recipe->name == "fp8_e4m3");
  CHECK(space.candidates[2].recipe->name == "int8_w8a8");
  CHECK(space.groups[0].disabled);
  CHECK_FALSE(space.groups[group_named(space, layer0 + "self_attn.q_proj")].disabled);
}

TEST_CASE("a manifest's chosen_recipes read back to the same candidate of every group") {
  const autoquant::search_space space = lm_space();
  const std::vector<std::size_t> chosen = cycling_selection(space);
  const scratch_dir dir;
  const fs::path file = dir.path / "mix_quant_manifest.json";
  io::write_quant_manifest(file, manifest_of(space, chosen, false, {"w4a8", "FP8_DEFAULT_CFG", "INT8_DEFAULT_CFG"}));

  const autoquant::recipe_assignment assignment = autoquant::read_recipe_assignment(file);
  CHECK(assignment.form == autoquant::assignment_form::manifest);
  CHECK(assignment.source == file.string());
  CHECK(assignment.entries.size() == space.groups.size());
  CHECK(autoquant::assign_groups(space, assignment) == chosen);
  CHECK(autoquant::recipe_names(assignment) == quantizing_names(space, chosen));
  // The file alone rebuilds a space with the same candidates and the same choices.
  const autoquant::search_space rebuilt =
      autoquant::make_search_space(qwen3_vl::quantizable_modules(autoquant::default_model_config()),
                                   autoquant::recipe_names(assignment),
                                   autoquant::scope_patterns(autoquant::scope_preset::lm));
  const std::vector<std::size_t> again = autoquant::assign_groups(rebuilt, assignment);
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    CHECK(rebuilt.candidates[again[g]].recipe->name == space.candidates[chosen[g]].recipe->name);
  }
}

TEST_CASE("a manifest with custom names: CUSTOM_<i> read through scheme.quant_formats") {
  const autoquant::search_space space = lm_space();
  const std::vector<std::size_t> chosen = cycling_selection(space);
  const scratch_dir dir;
  const auto read_back = [&](const std::vector<std::string>& quant_formats) {
    const fs::path file = dir.path / "custom_quant_manifest.json";
    io::write_quant_manifest(file, manifest_of(space, chosen, true, quant_formats));
    return autoquant::read_recipe_assignment(file);
  };

  SUBCASE("in the user's order: CUSTOM_<i> is entry i (ModelOpt's drivers)") {
    const autoquant::recipe_assignment assignment = read_back(user_formats);
    CHECK(assignment.entries[group_named(space, layer0 + "self_attn.q_proj")].recipe.custom_position.has_value());
    CHECK(autoquant::assign_groups(space, assignment) == chosen);
    CHECK(autoquant::recipe_names(assignment) == quantizing_names(space, chosen));
  }
  SUBCASE("in candidate order: entry k is the k-th quantizing candidate (aq's runs)") {
    const autoquant::recipe_assignment assignment = read_back({"w4a8", "fp8_e4m3", "int8_w8a8"});
    CHECK(autoquant::assign_groups(space, assignment) == chosen);
    CHECK(autoquant::recipe_names(assignment) == quantizing_names(space, chosen));
  }
  SUBCASE("configs aq does not know: matched by the space's display strings") {
    const autoquant::recipe_assignment assignment = read_back({"FP8_CFG_A", "INT8_CFG_B", "W4A8_CFG_C"});
    CHECK(autoquant::assign_groups(space, assignment) == chosen);
    const std::string message = error_of([&] { (void)autoquant::recipe_names(assignment); });
    std::size_t first = 0;  // the first group given a quantizing (CUSTOM) recipe
    while (!space.candidates[chosen[first]].recipe->quantizes) ++first;
    CHECK(message.starts_with(assignment.source + ": chosen_recipes." + space.groups[first].name + ": 'CUSTOM_"));
    CHECK(message.find("does not say which aq recipe this is") != std::string::npos);
  }
  SUBCASE("a CUSTOM name needs its suffix; one past quant_formats stays unresolved") {
    CHECK(error_of([] {
            (void)autoquant::parse_recipe_assignment(R"j({"chosen_recipes": {"lm_head.quant_recipe": "CUSTOM_0"}})j",
                                                     "m.json");
          }) == "m.json: chosen_recipes.lm_head.quant_recipe: 'CUSTOM_0' lacks its '(effective-bits: N)' suffix");
    const std::string json = R"j({"scheme": {"quant_formats": ["fp8_e4m3"]},
      "chosen_recipes": {"lm_head.quant_recipe": "CUSTOM_1(effective-bits: 8.0)"}})j";
    const autoquant::recipe_assignment assignment = autoquant::parse_recipe_assignment(json, "m.json");
    CHECK(assignment.entries[0].recipe.recipe == nullptr);
    CHECK(error_of([&] { (void)autoquant::recipe_names(assignment); })
              .starts_with("m.json: chosen_recipes.lm_head.quant_recipe: 'CUSTOM_1(effective-bits: 8.0)': "));
  }
}

TEST_CASE("CUSTOM names are left unresolved where the two orders of quant_formats disagree") {
  const std::vector<std::string> formats{"fp8_e4m3", "int8_w8a8"};
  const auto resolved = [&](std::vector<std::string> order) {
    std::vector<autoquant::recipe_spelling> spellings = {
        autoquant::resolve_recipe_spelling("CUSTOM_0(effective-bits: 8.0)", "m.json", true),
        autoquant::resolve_recipe_spelling("CUSTOM_1(effective-bits: 8.0)", "m.json", true)};
    autoquant::resolve_custom_names(spellings, formats, order);
    std::vector<std::string> names;
    for (const autoquant::recipe_spelling& s : spellings) names.emplace_back(s.recipe ? s.recipe->name : "?");
    return names;
  };
  // Both readings explain every name with the bits it states: agreeing, they pin it.
  CHECK(resolved({"CUSTOM_0(effective-bits: 8.0)", "CUSTOM_1(effective-bits: 8.0)"}) ==
        std::vector<std::string>{"fp8_e4m3", "int8_w8a8"});
  // Disagreeing (position: CUSTOM_0 is fp8_e4m3; order: it is the second candidate, int8_w8a8), they do not.
  CHECK(resolved({"CUSTOM_1(effective-bits: 8.0)", "CUSTOM_0(effective-bits: 8.0)"}) ==
        std::vector<std::string>{"?", "?"});
  // No layer_sensitivity rows: the position reading alone.
  CHECK(resolved({}) == std::vector<std::string>{"fp8_e4m3", "int8_w8a8"});
  // Bits that contradict the position reading: the order reading alone.
  std::vector<autoquant::recipe_spelling> w4 = {
      autoquant::resolve_recipe_spelling("CUSTOM_1(effective-bits: 4.0)", "m.json", true)};
  const std::vector<std::string> mixed{"w4a8", "fp8_e4m3"};
  const std::vector<std::string> order{"CUSTOM_1(effective-bits: 4.0)", "FP8_DEFAULT_CFG(effective-bits: 8.0)"};
  autoquant::resolve_custom_names(w4, mixed, order);
  REQUIRE(w4[0].recipe != nullptr);
  CHECK(w4[0].recipe->name == "w4a8");
}

TEST_CASE("a literal manifest accepts every spelling of a recipe") {
  const autoquant::search_space space = lm_space();
  std::string json = R"j({"chosen_recipes": {)j";
  const std::vector<std::string> spellings = {"FP8_DEFAULT_CFG(effective-bits: 8.0)", "fp8_e4m3", "wfp8_afp8",
                                              "INT8_DEFAULT_CFG", "w4a8(effective-bits: 4.0)", "NONE(effective-bits: 16.0)",
                                              "none", "NONE"};
  std::vector<std::size_t> want(space.groups.size(), space.none_index());
  std::size_t used = 0;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (!space.configurable(g)) continue;
    const std::string& spelling = spellings[used++ % spellings.size()];
    json += (used > 1 ? ", \"" : "\"") + space.groups[g].name + "\": \"" + spelling + "\"";
    const std::string name = spelling.substr(0, spelling.find('('));
    want[g] = name.starts_with("FP8") || name == "fp8_e4m3" || name == "wfp8_afp8" ? candidate_named(space, "fp8_e4m3")
              : name.starts_with("INT8")                                           ? candidate_named(space, "int8_w8a8")
              : name == "w4a8"                                                     ? candidate_named(space, "w4a8")
                                                                                   : space.none_index();
  }
  json += "}}";
  REQUIRE(used >= spellings.size());
  const autoquant::recipe_assignment assignment = autoquant::parse_recipe_assignment(json, "m.json");
  const std::vector<std::size_t> got = autoquant::assign_groups(space, assignment);
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    INFO(space.groups[g].name);
    CHECK(got[g] == want[g]);
  }
  CHECK(autoquant::recipe_names(assignment) == std::vector<std::string>{"fp8_e4m3", "int8_w8a8", "w4a8"});
}

TEST_CASE("a recipe map: fnmatch patterns on module names, the last matching key wins") {
  const autoquant::search_space space = lm_space();
  const std::string layers = R"j("model.language_model.layers.*": "fp8_e4m3")j";
  const std::string mlp1 = R"j("model.language_model.layers.1.mlp.*": "INT8_DEFAULT_CFG(effective-bits: 8.0)")j";
  const std::string down = R"j("*.down_pro?": "w4a8")j";
  const std::string head = R"j("lm_head": "NONE")j";

  SUBCASE("a later key overrides an earlier one") {
    const std::string json = "{" + layers + ", " + mlp1 + ", " + down + ", " + head + "}";
    const autoquant::recipe_assignment assignment = autoquant::parse_recipe_assignment(json, "MAP.json");
    CHECK(assignment.form == autoquant::assignment_form::recipe_map);
    CHECK(autoquant::recipe_names(assignment) == std::vector<std::string>{"fp8_e4m3", "int8_w8a8", "w4a8"});
    CHECK(autoquant::assign_groups(space, assignment) ==
          expected_selection(space, {{layer0 + "self_attn.q_proj", "fp8_e4m3"},
                                     {layer0 + "self_attn.o_proj", "fp8_e4m3"},
                                     {layer0 + "mlp.gate_proj", "fp8_e4m3"},
                                     {layer0 + "mlp.down_proj", "w4a8"},
                                     {layer1 + "self_attn.q_proj", "fp8_e4m3"},
                                     {layer1 + "self_attn.o_proj", "fp8_e4m3"},
                                     {layer1 + "mlp.gate_proj", "int8_w8a8"},
                                     {layer1 + "mlp.down_proj", "w4a8"}}));
  }
  SUBCASE("the same keys in another order: the broader key now comes last") {
    const std::string json = "{" + down + ", " + layers + ", " + mlp1 + "}";
    CHECK(assign_map(space, json) == expected_selection(space, {{layer0 + "self_attn.q_proj", "fp8_e4m3"},
                                                                {layer0 + "self_attn.o_proj", "fp8_e4m3"},
                                                                {layer0 + "mlp.gate_proj", "fp8_e4m3"},
                                                                {layer0 + "mlp.down_proj", "fp8_e4m3"},
                                                                {layer1 + "self_attn.q_proj", "fp8_e4m3"},
                                                                {layer1 + "self_attn.o_proj", "fp8_e4m3"},
                                                                {layer1 + "mlp.gate_proj", "int8_w8a8"},
                                                                {layer1 + "mlp.down_proj", "int8_w8a8"}}));
  }
  SUBCASE("fused modules may name their shared recipe in different spellings") {
    const std::string json = R"j({"*.q_proj": "fp8_e4m3", "*.k_proj": "FP8_DEFAULT_CFG", "*.v_proj": "wfp8_afp8"})j";
    CHECK(assign_map(space, json) == expected_selection(space, {{layer0 + "self_attn.q_proj", "fp8_e4m3"},
                                                                {layer1 + "self_attn.q_proj", "fp8_e4m3"}}));
  }
}

TEST_CASE("a recipe map leaves every module no pattern matches unquantized") {
  const autoquant::search_space space = lm_space();
  CHECK(assign_map(space, R"j({"model.language_model.layers.0.self_attn.o_proj": "int8_w8a8"})j") ==
        expected_selection(space, {{layer0 + "self_attn.o_proj", "int8_w8a8"}}));
  const autoquant::recipe_assignment empty = autoquant::parse_recipe_assignment("{}", "MAP.json");
  CHECK(autoquant::assign_groups(space, empty) == std::vector<std::size_t>(space.groups.size(), space.none_index()));
  CHECK(autoquant::recipe_names(empty).empty());
  // A disabled group may be named, unquantized.
  CHECK(assign_map(space, R"j({"model.visual.*": "none"})j") == expected_selection(space, {}));
}

TEST_CASE("recipe file errors name the file and the key") {
  const autoquant::search_space space = lm_space();
  const auto map_error = [&](std::string_view json) { return error_of([&] { (void)assign_map(space, json); }); };
  const std::string q0 = layer0 + "self_attn.q_proj.quant_recipe";

  SUBCASE("an unknown recipe name") {
    const std::string message = map_error(R"j({"lm_head": "fp9_e4m3"})j");
    CHECK(message.starts_with("MAP.json: lm_head: recipe 'fp9_e4m3' is unknown; valid recipes: "));
    CHECK(map_error(R"j({"lm_head": "CUSTOM_0(effective-bits: 8.0)"})j")
              .starts_with("MAP.json: lm_head: recipe 'CUSTOM_0(effective-bits: 8.0)' is unknown"));
  }
  SUBCASE("a suffix that does not match the recipe") {
    CHECK(map_error(R"j({"lm_head": "FP8_DEFAULT_CFG(effective-bits: 4.0)"})j") ==
          "MAP.json: lm_head: 'FP8_DEFAULT_CFG(effective-bits: 4.0)' does not match recipe 'fp8_e4m3' (expected "
          "'FP8_DEFAULT_CFG(effective-bits: 8.0)': the suffix must read as ModelOpt writes it)");
  }
  SUBCASE("a recipe that is not a candidate") {
    CHECK(map_error(R"j({"lm_head": "nvfp4"})j") ==
          "MAP.json: lm_head: recipe 'nvfp4' is not among the search space's candidates (w4a8, fp8_e4m3, int8_w8a8, "
          "none)");
  }
  SUBCASE("fused modules given different recipes") {
    CHECK(map_error(R"j({"*.q_proj": "fp8_e4m3"})j") ==
          "MAP.json: group '" + q0 + "' takes one recipe for all its modules, but '" + layer0 +
              "self_attn.q_proj' gets 'fp8_e4m3' (pattern '*.q_proj') and '" + layer0 +
              "self_attn.k_proj' gets 'none' (no pattern matches it)");
    const std::string message = map_error(R"j({"*.gate_proj": "fp8_e4m3", "*.up_proj": "int8_w8a8"})j");
    CHECK(message.starts_with("MAP.json: group '" + layer0 + "mlp.gate_proj.quant_recipe'"));
    CHECK(message.find("'fp8_e4m3' (pattern '*.gate_proj')") != std::string::npos);
    CHECK(message.find("'int8_w8a8' (pattern '*.up_proj')") != std::string::npos);
  }
  SUBCASE("a quantizing recipe for a disabled group") {
    CHECK(map_error(R"j({"model.visual.blocks.*": "w4a8"})j") ==
          "MAP.json: model.visual.blocks.*: 'w4a8' for module 'model.visual.blocks.0.attn.qkv' of group "
          "'model.visual.blocks.0.attn.qkv.quant_recipe', which is disabled (out of scope: 'model.visual*'); narrow "
          "the pattern");
    const std::string json = R"j({"chosen_recipes": {"model.visual.blocks.0.attn.qkv.quant_recipe": "w4a8"}})j";
    CHECK(error_of([&] { (void)autoquant::assign_groups(space, autoquant::parse_recipe_assignment(json, "m.json")); }) ==
          "m.json: chosen_recipes.model.visual.blocks.0.attn.qkv.quant_recipe: 'w4a8' for a group the search space "
          "has disabled (out of scope: 'model.visual*')");
  }
  SUBCASE("a pattern matching no module") {
    CHECK(map_error(R"j({"model.language_model.layers.*": "fp8_e4m3", "model.language_model.layer.*.mlp.*": "w4a8"})j") ==
          "MAP.json: model.language_model.layer.*.mlp.*: the pattern matches no module (a typo? module names look "
          "like 'model.visual.patch_embed.proj')");
  }
  SUBCASE("a key listed twice, a value that is not a string") {
    CHECK(map_error(R"j({"lm_head": "fp8_e4m3", "lm_head": "none"})j") ==
          "MAP.json: lm_head: listed twice (a JSON object keeps only one of them)");
    CHECK(map_error(R"j({"lm_head": 8})j") == "MAP.json: lm_head: is an integer, expected a string");
  }
  SUBCASE("a manifest group the space does not have, or a configurable group it misses") {
    const std::vector<std::size_t> chosen = cycling_selection(space);
    io::report_model report = manifest_of(space, chosen, false, {});
    report.chosen_recipes->push_back({"model.language_model.layers.7.mlp.down_proj.quant_recipe", "NONE"});
    report.groups.push_back({"model.language_model.layers.7.mlp.down_proj.quant_recipe", {{"NONE", 0.0, 1.0}}});
    const std::string extra = io::render_quant_manifest(report);
    CHECK(error_of([&] { (void)autoquant::assign_groups(space, autoquant::parse_recipe_assignment(extra, "m.json")); }) ==
          "m.json: chosen_recipes.model.language_model.layers.7.mlp.down_proj.quant_recipe: the search space has no "
          "such group (its " + std::to_string(space.groups.size()) +
              " groups are named like 'model.visual.patch_embed.proj.quant_recipe')");

    report = manifest_of(space, chosen, false, {});
    const std::size_t dropped = group_named(space, layer1 + "mlp.down_proj");
    report.chosen_recipes->erase(report.chosen_recipes->begin() + static_cast<std::ptrdiff_t>(dropped));
    const std::string missing = io::render_quant_manifest(report);
    CHECK(error_of([&] { (void)autoquant::assign_groups(space, autoquant::parse_recipe_assignment(missing, "m.json")); }) ==
          "m.json: chosen_recipes: configurable group '" + layer1 + "mlp.down_proj.quant_recipe' is missing");

    // A disabled group may be left out: it stays NONE.
    report = manifest_of(space, chosen, false, {});
    report.chosen_recipes->erase(report.chosen_recipes->begin());
    const std::string no_disabled = io::render_quant_manifest(report);
    CHECK(autoquant::assign_groups(space, autoquant::parse_recipe_assignment(no_disabled, "m.json")) == chosen);
  }
  SUBCASE("reports that hold no chosen recipes") {
    io::report_model report = manifest_of(space, cycling_selection(space), false, {});
    report.chosen_recipes.reset();
    CHECK(error_of([&] { (void)autoquant::parse_recipe_assignment(io::render_quant_manifest(report), "m.json"); }) ==
          "m.json: is a quant manifest without chosen_recipes (written by ModelOpt, or by a run that chose nothing); "
          "give a manifest of an aq run or a recipe map");
    CHECK(error_of([&] {
            (void)autoquant::parse_recipe_assignment(R"j({"layer_sensitivity": [], "chosen_recipes": {}})j", "s.json");
          }) == "s.json: is a per-layer sensitivity report; give the run's <scheme>_quant_manifest.json");
    CHECK(error_of([&] { (void)autoquant::parse_recipe_assignment(R"j({"chosen_recipes": ["w4a8"]})j", "m.json"); }) ==
          "m.json: chosen_recipes: is an array, expected an object");
  }
}

TEST_CASE("recipe files that are not readable JSON objects are refused by name") {
  const scratch_dir dir;
  const auto read_error = [](const fs::path& file) {
    return error_of([&] { (void)autoquant::read_recipe_assignment(file); });
  };
  const fs::path fifo = dir.path / "fifo.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);  // nobody writes: reading it would wait forever
  CHECK(read_error(fifo) == fifo.string() + ": not a regular file");
  CHECK(read_error(dir.path) == dir.path.string() + ": not a regular file");
  CHECK(read_error(dir.path / "absent.json").starts_with((dir.path / "absent.json").string() + ": cannot open: "));

  const fs::path huge = dir.write("huge.json", "{}");
  fs::resize_file(huge, autoquant::recipe_file_max_bytes + 1);  // sparse: no disk space taken
  CHECK(read_error(huge) == huge.string() + ": more than 67108864 bytes; a recipe file (manifest or recipe map) is far smaller");
  // The bound holds while reading too (a file may grow after it was opened); a small one shows it.
  const fs::path eleven = dir.write("eleven.json", "{\"a\": \"bc\"}");
  CHECK(error_of([&] { (void)autoquant::detail::read_bounded(eleven, 10); }) ==
        eleven.string() + ": more than 10 bytes; a recipe file (manifest or recipe map) is far smaller");
  CHECK(autoquant::detail::read_bounded(eleven, 11) == "{\"a\": \"bc\"}");

  CHECK(read_error(dir.write("latin1.json", "{\"lm_head\": \"caf\xe9\"}")) ==
        (dir.path / "latin1.json").string() + ": invalid UTF-8 at byte 16");
  CHECK(read_error(dir.write("broken.json", R"j({"lm_head": "w4a8")j")).starts_with(
      (dir.path / "broken.json").string() + ": not valid JSON: "));
  CHECK(read_error(dir.write("empty.json", "")) == (dir.path / "empty.json").string() + ": empty file");
  CHECK(read_error(dir.write("array.json", R"j(["w4a8"])j")) ==
        (dir.path / "array.json").string() + ": is an array, expected an object");

  const autoquant::recipe_assignment map = autoquant::read_recipe_assignment(dir.write("MAP.json", R"j({"lm_head": "w4a8"})j"));
  CHECK(map.source == (dir.path / "MAP.json").string());
  REQUIRE(map.entries.size() == 1);
  CHECK(map.entries[0].where == (dir.path / "MAP.json").string() + ": lm_head");
}

TEST_CASE("committed manifests: an aq run's applies to its search space, ModelOpt's has no choice to apply") {
  const fs::path golden = fs::path(AQ_TEST_FIXTURES) / "autoquant" / "golden_autoquant_lm_quant_manifest.json";
  const autoquant::recipe_assignment assignment = autoquant::read_recipe_assignment(golden);
  CHECK(autoquant::recipe_names(assignment) == std::vector<std::string>{"int8_w8a8"});
  // The run's formats (w8a4 shows as CUSTOM_0 in its layer_sensitivity); module names as the default model's.
  const std::vector<std::string> formats{"w8a4", "int8_w8a8", "fp8_e4m3"};
  const autoquant::search_space space =
      autoquant::make_search_space(qwen3_vl::quantizable_modules(autoquant::default_model_config()), formats,
                                   autoquant::scope_patterns(autoquant::scope_preset::lm));
  const std::vector<std::size_t> chosen = autoquant::assign_groups(space, assignment);
  REQUIRE(assignment.entries.size() == space.groups.size());
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    CHECK(assignment.entries[g].key == space.groups[g].name);
    CHECK(space.display(chosen[g]) == assignment.entries[g].recipe.text);
  }

  const fs::path reference = fs::path(AQ_DATA_DIR) / "reference" / "lm-only" / "wfp8_afp8" /
                             "wfp8_afp8_autoquant_lm_quant_manifest.json";
  CHECK(error_of([&] { (void)autoquant::read_recipe_assignment(reference); })
            .starts_with(reference.string() + ": is a quant manifest without chosen_recipes"));
}

}  // namespace test_recipe_assignment
