// Every preset reproduces the search space of the ModelOpt run it is named after (data/reference/):
// the module it was given, its groups in order with their names, candidate lists and costs, its
// quantized layers, its budget and scheme fields; and the built-in default searches the inner
// model, so that its tied lm_head does not decide the effective bits, and meets the requested bits.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "aq/backend/cpu/qwen3_vl/model_runner.hpp"
#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/engine/engine.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/io/tokenizer/tokenizer.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/search/cost_model.hpp"
#include "aq/search/scope.hpp"
#include "aq/search/search_space.hpp"

#include "cli/calib_inputs.hpp"
#include "cli/default_model.hpp"
#include "cli/options.hpp"

namespace test_presets {

namespace {

using namespace aq;
namespace fs = std::filesystem;

qwen3_vl::config config_4b() {
  return read_qwen3_vl_config(fs::path(AQ_TEST_FIXTURES) / "configs" / "qwen3_vl_4b_instruct.json");
}

autoquant::search_space preset_space(const autoquant::preset& p, const qwen3_vl::config& cfg) {
  const std::vector<std::string> formats = autoquant::split_list(p.formats);
  return autoquant::make_search_space(qwen3_vl::quantizable_modules(cfg), formats,
                                      autoquant::scope_patterns(p.scope, p.root), p.root);
}

std::vector<std::string> keys(simdjson::dom::element object) {
  std::vector<std::string> out;
  const simdjson::dom::object fields = object.get_object().value();
  for (const auto field : fields) out.emplace_back(field.key);
  return out;
}

}  // namespace

TEST_CASE("each preset's search space is its reference run's: groups, names, candidates, costs, budget") {
  const qwen3_vl::config cfg = config_4b();
  int compared = 0;
  for (const autoquant::preset& p : autoquant::presets) {
    if (p.reference.empty()) continue;
    CAPTURE(p.name);
    const fs::path manifest_path = fs::path(AQ_DATA_DIR) / "reference" / std::string(p.reference) /
                                   (std::string(p.scheme) + "_quant_manifest.json");
    REQUIRE_MESSAGE(fs::exists(manifest_path), manifest_path.string());
    simdjson::dom::parser parser;
    const simdjson::dom::element manifest = parser.load(manifest_path.string());
    const autoquant::search_space space = preset_space(p, cfg);
    ++compared;

    // Groups: ModelOpt's layer_sensitivity keys in order (first member + ".quant_recipe").
    const simdjson::dom::element sensitivity = manifest["layer_sensitivity"];
    const std::vector<std::string> reference_groups = keys(sensitivity);
    std::vector<std::string> groups;
    for (const autoquant::search_group& g : space.groups) groups.push_back(g.name);
    REQUIRE(groups.size() == reference_groups.size());
    CHECK(groups == reference_groups);

    // Each group's candidates as ModelOpt shows them (a disabled group: NONE alone) and their costs.
    for (std::size_t g = 0; g < space.groups.size(); ++g) {
      const simdjson::dom::element entry = sensitivity[reference_groups[g]];
      const simdjson::dom::array formats = entry["formats"].get_array().value();
      const simdjson::dom::array costs = entry["costs"].get_array().value();
      const std::vector<std::size_t> choices = space.choices(g);
      REQUIRE_MESSAGE(formats.size() == choices.size(), reference_groups[g]);
      for (std::size_t i = 0; i < choices.size(); ++i) {
        CHECK(space.display(choices[i], p.custom_names) == std::string_view(formats.at(i).get_string().value()));
        CHECK(autoquant::modelopt_cost(space.groups[g].numel, space.candidates[choices[i]].recipe->effective_bits) ==
              costs.at(i).get_double().value());
      }
    }

    // Layers: the QuantLinear modules under the root's names.
    std::vector<std::string> layers;
    for (std::size_t m = 0; m < space.modules.size(); ++m) {
      if (space.modules[m].kind == module_kind::linear) layers.push_back(space.module_names[m]);
    }
    CHECK(layers == keys(manifest["layers"]));
    CHECK(static_cast<std::int64_t>(layers.size()) == manifest["num_quantized_layers"].get_int64().value());

    // Scheme: name, coverage, formats and the whole-model budget B' (or b itself).
    const simdjson::dom::element scheme = manifest["scheme"];
    CHECK(std::string_view(scheme["name"].get_string().value()) == p.scheme);
    CHECK(std::string_view(scheme["coverage_mode"].get_string().value()) == p.coverage_mode);
    const simdjson::dom::array quant_formats = scheme["quant_formats"].get_array().value();
    REQUIRE(quant_formats.size() == 1);
    CHECK(std::string_view((*quant_formats.begin()).get_string().value()) == p.quant_format);
    const double budget = p.adjust_budget ? autoquant::adjusted_budget_bits(p.bits, space.total_params, space.disabled_params)
                                          : p.bits;
    CHECK(budget == doctest::Approx(scheme["auto_quantize_bits"].get_double().value()).epsilon(1e-15));
  }
  CHECK(compared == 5);
}

TEST_CASE("int8_autoquant_lm_default searches the inner model: 249 groups, no lm_head, no model. prefix") {
  const autoquant::search_space space = preset_space(autoquant::find_preset("int8_autoquant_lm_default"), config_4b());
  CHECK(space.root == autoquant::module_root::inner);
  CHECK(space.groups.size() == 249);
  CHECK(space.groups.front().name == "visual.patch_embed.proj.quant_recipe");
  CHECK(space.groups.back().name == "language_model.layers.35.mlp.down_proj.quant_recipe");
  for (const autoquant::search_group& g : space.groups) CHECK(g.name.find("lm_head") == std::string::npos);
  CHECK(space.modules.front().name == "model.visual.patch_embed.proj");  // the forward's names, for calibration
  CHECK(space.module_names.front() == "visual.patch_embed.proj");

  // The whole model: 250 groups, lm_head last.
  const autoquant::search_space whole = preset_space(autoquant::find_preset("wint8_aint8_autoquant_lm"), config_4b());
  CHECK(whole.groups.size() == 250);
  CHECK(whole.groups.back().name == "lm_head.quant_recipe");
}

TEST_CASE("module roots: names under a root, scope patterns in its names, --module-root and its default") {
  CHECK(*autoquant::name_under(autoquant::module_root::whole, "lm_head") == "lm_head");
  CHECK(*autoquant::name_under(autoquant::module_root::inner, "model.language_model.layers.0.mlp.up_proj") ==
        "language_model.layers.0.mlp.up_proj");
  CHECK(!autoquant::name_under(autoquant::module_root::inner, "lm_head"));
  CHECK(autoquant::scope_patterns(autoquant::scope_preset::lm) == std::vector<std::string>{"model.visual*"});
  CHECK(autoquant::scope_patterns(autoquant::scope_preset::lm, autoquant::module_root::inner) ==
        std::vector<std::string>{"visual*"});
  CHECK(autoquant::scope_patterns(autoquant::scope_preset::all, autoquant::module_root::inner).empty());

  const auto parse = [](std::vector<std::string> args) { return autoquant::parse_arguments(args); };
  CHECK(autoquant::effective_module_root(parse({})) == autoquant::module_root::inner);  // built-in model
  CHECK(autoquant::effective_module_root(parse({"--model", "m"})) == autoquant::module_root::whole);
  CHECK(autoquant::effective_module_root(parse({"--module-root", "whole"})) == autoquant::module_root::whole);
  CHECK(autoquant::effective_module_root(parse({"--model", "m", "--preset", "int8_autoquant_lm_default"})) ==
        autoquant::module_root::inner);
  CHECK(autoquant::effective_module_root(parse({"--preset", "wint8_aint4_autoquant_lm"})) ==
        autoquant::module_root::whole);
  CHECK_THROWS_WITH_AS(parse({"--module-root", "outer"}), doctest::Contains("valid: whole, inner"), aq::error);
}

TEST_CASE("the built-in default run (no flags) meets the requested effective bits on the groups it searches") {
  const autoquant::driver_options o = autoquant::parse_arguments(std::vector<std::string>{});
  const qwen3_vl::config cfg = autoquant::default_model_config();
  const autoquant::generated_model gm = autoquant::make_generated_model(cfg, o.seed);
  const qwen3_vl::vl_model model{cfg, gm.text, gm.vision};
  const io::tokenizer tok = io::tokenizer::from_file(fs::path(AQ_DATA_DIR) / "qwen3-tokenizer" / "tokenizer.json");
  const std::vector<io::calib_batch> batches = autoquant::make_caption_batches(
      tok, fs::path(AQ_DATA_DIR) / "captions" / "coco2017_captions_medium.txt", 16, o.batch_size, 32);
  const autoquant::model_runner runner = autoquant::make_model_runner(model, batches);

  const autoquant::module_root root = autoquant::effective_module_root(o);
  const autoquant::search_space space = autoquant::make_search_space(
      qwen3_vl::quantizable_modules(cfg), o.formats, autoquant::scope_patterns(o.scope, root), root);
  for (const autoquant::search_group& g : space.groups) CHECK(g.name.find("lm_head") == std::string::npos);

  autoquant::engine_options e;
  e.effective_bits = o.effective_bits;
  e.num_calib_steps = io::num_calib_steps(static_cast<std::int64_t>(batches.size()));
  e.num_score_steps = io::num_score_steps(static_cast<std::int64_t>(batches.size()), o.batch_size);
  e.scheme_name = "autoquant_lm";
  autoquant::cpu_scoring_backend backend(space, runner);
  const autoquant::autoquant_result r = autoquant::run_autoquant(space, backend, e);
  CHECK(r.allocation.is_satisfied);
  // The vision tower (never run on captions) stays at 16 bits and counts in the whole-model
  // figure, as in ModelOpt; the groups searched get the requested budget.
  const double searched = autoquant::searched_effective_bits(space, r.chosen);
  CHECK(searched <= o.effective_bits + 1e-9);
  CHECK(searched >= o.effective_bits - 0.25);
}

}  // namespace test_presets
