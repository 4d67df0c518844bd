// The AutoQuant engine end to end on a tiny generated Qwen3-VL: ModelOpt's groups, scopes and
// disabled patterns, the cost model and budget adjustment, optimal and deterministic allocation
// (brute force over every selection), reports that parse back, and errors before any output.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <simdjson.h>

#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/engine/engine.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/quant/recipe_registry.hpp"
#include "aq/quant/scaling.hpp"
#include "aq/report/quant_manifest.hpp"
#include "aq/report/sensitivity_report.hpp"
#include "aq/score/monotone_clamp.hpp"
#include "aq/search/scope.hpp"
#include "aq/search/search_space.hpp"

#include "cli/default_model.hpp"
#include "cli/outputs.hpp"
#include "cli/result_json.hpp"
#include "support/tiny_vl_config.hpp"

namespace test_autoquant_engine {

namespace {

using namespace aq;
namespace fs = std::filesystem;

std::vector<io::calib_batch> tiny_batches(std::int64_t vocab) {
  const std::vector<std::string> captions =
      io::read_caption_lines(std::string(AQ_SOURCE_DIR) + "/data/captions/coco2017_captions_small.txt", 8);
  const auto encode = [vocab](std::string_view text) {
    std::vector<std::int32_t> ids;
    for (const char c : text) ids.push_back(static_cast<std::int32_t>(static_cast<unsigned char>(c) % (vocab - 10)));
    return ids;
  };
  io::padding_options o;
  o.max_length = 20;
  o.pad_id = static_cast<std::int32_t>(vocab - 1);
  return io::make_text_calib_batches(captions, encode, 4, o);
}

struct tiny_run {
  qwen3_vl::config cfg = test_support::tiny_vl_config();
  autoquant::generated_model gm = autoquant::make_generated_model(cfg, 11);
  qwen3_vl::vl_model model{cfg, gm.text, gm.vision};
  std::vector<io::calib_batch> batches = tiny_batches(cfg.text.vocab_size);
  autoquant::model_runner runner = autoquant::make_model_runner(model, batches);

  autoquant::search_space space(const std::vector<std::string>& formats, autoquant::scope_preset scope,
                                std::vector<std::string> extra = {}) const {
    std::vector<std::string> patterns = autoquant::scope_patterns(scope);
    patterns.insert(patterns.end(), extra.begin(), extra.end());
    return autoquant::make_search_space(qwen3_vl::quantizable_modules(cfg), formats, patterns);
  }
  autoquant::autoquant_result run(const autoquant::search_space& s, double bits,
                                  autoquant::score_method method = autoquant::score_method::gradient) const {
    autoquant::engine_options o;
    o.method = method;
    o.effective_bits = bits;
    o.num_calib_steps = 2;
    o.num_score_steps = 2;
    o.scheme_name = "tiny_autoquant_lm";
    o.model_id = "builtin:tiny";
    autoquant::cpu_scoring_backend backend(s, runner);
    return autoquant::run_autoquant(s, backend, o);
  }
};

}  // namespace

TEST_CASE("fnmatch follows Python's fnmatchcase") {
  using autoquant::fnmatch;
  CHECK(fnmatch("model.visual*", "model.visual.blocks.0.attn.qkv"));
  CHECK_FALSE(fnmatch("model.visual*", "model.language_model.layers.0.mlp.up_proj"));
  CHECK(fnmatch("*mlp.down_proj", "model.language_model.layers.3.mlp.down_proj"));
  CHECK(fnmatch("*layers.[0-2].*", "model.language_model.layers.1.self_attn.o_proj"));
  CHECK_FALSE(fnmatch("*layers.[!0-2].*", "model.language_model.layers.1.self_attn.o_proj"));
  CHECK(fnmatch("lm_hea?", "lm_head"));
  CHECK_FALSE(fnmatch("lm_head?", "lm_head"));
  CHECK(fnmatch("a[b", "a[b"));  // an unclosed '[' is literal
  CHECK(fnmatch("*", ""));
  CHECK_FALSE(fnmatch("*lm_head*x", "lm_head"));
}

TEST_CASE("Qwen3-VL-4B search space: 250 groups, lm scope disables the 105 vision groups, B' = 8.74530701482171") {
  const qwen3_vl::config cfg = read_qwen3_vl_config(fs::path(AQ_TEST_FIXTURES) / "configs" / "qwen3_vl_4b_instruct.json");
  const std::vector<std::string> formats{"w8a4"};
  const autoquant::search_space lm = autoquant::make_search_space(
      qwen3_vl::quantizable_modules(cfg), formats, autoquant::scope_patterns(autoquant::scope_preset::lm));
  CHECK(lm.groups.size() == 250);
  std::size_t disabled = 0;
  for (const auto& g : lm.groups) disabled += g.disabled ? 1 : 0;
  CHECK(disabled == 105);
  CHECK(lm.total_params == 4434886656);
  CHECK(lm.disabled_params == 412614656);
  CHECK(lm.groups[105].name == "model.language_model.layers.0.self_attn.q_proj.quant_recipe");
  CHECK(lm.groups[105].members.size() == 3);
  CHECK(lm.groups[107].name == "model.language_model.layers.0.mlp.gate_proj.quant_recipe");
  CHECK(lm.groups.back().name == "lm_head.quant_recipe");
  CHECK(autoquant::adjusted_budget_bits(8.0, lm.total_params, lm.disabled_params) == 8.74530701482171);
  CHECK(autoquant::modelopt_cost(lm.groups[107].numel, 8.0) == 24903680.0);
  CHECK(autoquant::modelopt_cost(lm.groups.back().numel, 4.0) == 97239040.0);
  CHECK(lm.display(0) == "CUSTOM_0(effective-bits: 4.0)");
  CHECK(lm.display(1) == "NONE(effective-bits: 16.0)");
  // A budget below every group's most aggressive recipe is refused with the reachable minimum.
  CHECK_THROWS_WITH_AS(autoquant::check_budget(lm, 4.5, 4.5), doctest::Contains("below the smallest reachable"),
                       aq::error);
  CHECK_NOTHROW(autoquant::check_budget(lm, 8.74530701482171, 8.0));
  const autoquant::search_space all = autoquant::make_search_space(qwen3_vl::quantizable_modules(cfg), formats, {});
  CHECK(all.disabled_params == 0);
  CHECK(autoquant::adjusted_budget_bits(8.0, all.total_params, all.disabled_params) == 8.0);
  CHECK(autoquant::min_effective_bits(all) == 4.0);
}

TEST_CASE("ModelOpt 0.39 and 0.40 monotone clamps differ only with three or more candidates") {
  const std::vector<double> raw{3.0, 5.0, 4.0, 0.0};
  CHECK(score::monotone_clamp(raw, score::clamp_rule::modelopt_0_39) == std::vector<double>{3.0, 3.0, 4.0, 0.0});
  CHECK(score::monotone_clamp(raw, score::clamp_rule::modelopt_0_40) == std::vector<double>{3.0, 3.0, 3.0, 0.0});
  const std::vector<double> two{7.0, 0.0};
  CHECK(score::monotone_clamp(two, score::clamp_rule::modelopt_0_39) == score::monotone_clamp(two, score::clamp_rule::modelopt_0_40));
  const std::vector<double> decreasing{9.0, 4.0, 1.0, 0.0};
  CHECK(score::monotone_clamp(decreasing) == decreasing);
}

TEST_CASE("the allocation is the brute-force optimum of the clamped scores for every budget") {
  const tiny_run t;
  const std::vector<std::string> formats{"w4a16", "int8_w8a8"};
  const autoquant::search_space space = t.space(formats, autoquant::scope_preset::lm);
  const autoquant::autoquant_result r = t.run(space, 16.0);
  const search::allocation_problem problem = autoquant::cost_problem(space, r.scores);
  // Brute force over every selection (3^9) at several budgets.
  for (const double bits : {14.4, 14.7, 15.0, 15.3, 15.6, 16.0}) {  // vision stays at 16: >= 14.34
    const search::cost_t capacity = search::capacity_for_bits(problem.total_params(), bits);
    double best = std::numeric_limits<double>::infinity();
    std::vector<std::uint32_t> pick(problem.num_groups(), 0);
    while (true) {
      double score = 0.0;
      search::cost_t cost = 0;
      for (std::size_t g = 0; g < pick.size(); ++g) {
        score += problem.score(g, pick[g]);
        cost += problem.cost(g, pick[g]);
      }
      if (cost <= capacity) best = std::min(best, score);
      std::size_t g = 0;
      while (g < pick.size() && ++pick[g] == problem.num_choices(g)) pick[g++] = 0;
      if (g == pick.size()) break;
    }
    const search::allocation_result got = search::solve_knapsack_bits(problem, bits);
    CHECK(got.is_satisfied);
    CHECK(got.total_score == doctest::Approx(best).epsilon(1e-12));
  }
  // The run's own answer at 16 bits keeps everything unquantized (score 0), vision groups included.
  CHECK(r.allocation.total_score == 0.0);
  CHECK(r.report.pareto_front->size() >= 3);
}

TEST_CASE("two runs give byte-identical manifests, reports and state; reports parse back") {
  const tiny_run t;
  const std::vector<std::string> formats{"int8_w8a8", "fp8_e4m3", "w4a8"};
  const autoquant::search_space space = t.space(formats, autoquant::scope_preset::lm, {"*layers.1.mlp.down_proj"});
  const autoquant::autoquant_result a = t.run(space, 7.0);
  const autoquant::autoquant_result b = t.run(space, 7.0);
  const std::string manifest = io::render_quant_manifest(a.report);
  CHECK(manifest == io::render_quant_manifest(b.report));
  CHECK(io::render_sensitivity_md(a.report) == io::render_sensitivity_md(b.report));
  CHECK(io::render_sensitivity_json(a.report) == io::render_sensitivity_json(b.report));
  CHECK(autoquant::render_state(space, a) == autoquant::render_state(space, b));

  const io::report_model back = io::parse_quant_manifest(manifest, "manifest");
  CHECK(io::render_quant_manifest(back) == manifest);
  REQUIRE(back.chosen_recipes);
  CHECK(back.chosen_recipes->size() == space.groups.size());
  REQUIRE(back.pareto_front);
  CHECK(back.autoquant_state.effective_bits <= a.budget_bits);
  CHECK(back.autoquant_state.is_satisfied);
  // Disabled: the pattern's group and every vision group, NONE only with score 0 and 16-bit cost.
  for (const io::group_sensitivity& g : back.groups) {
    const bool vision = g.name.starts_with("model.visual.");
    const bool pattern = g.name == "model.language_model.layers.1.mlp.down_proj.quant_recipe";
    CHECK(g.candidates.size() == (vision || pattern ? 1u : 4u));
    if (!vision && !pattern) {
      CHECK(g.candidates[0].format == "CUSTOM_2(effective-bits: 4.0)");
      CHECK(g.candidates[1].format == "INT8_DEFAULT_CFG(effective-bits: 8.0)");  // stable: user order on ties
      CHECK(g.candidates[2].format == "FP8_DEFAULT_CFG(effective-bits: 8.0)");
      CHECK(g.candidates[0].score >= g.candidates[1].score);
    }
  }
  // Budget: (16 D + 7 (T - D)) / T + 1e-3 with D the disabled weights.
  CHECK(a.budget_bits == autoquant::adjusted_budget_bits(7.0, space.total_params, space.disabled_params));
  CHECK(a.report.scheme.auto_quantize_bits == a.budget_bits);
  // State: an amax per quantizer of every chosen quantizing recipe of a module that ran.
  for (const autoquant::quantizer_amax& q : a.state) {
    CHECK_FALSE(q.name.starts_with("model.visual."));
    for (const float v : q.values) CHECK(v > 0.0f);
  }
}

TEST_CASE("a budget below the smallest recipe fails before any model work") {
  const tiny_run t;
  const std::vector<std::string> formats{"int8_w8a8"};
  const autoquant::search_space space = t.space(formats, autoquant::scope_preset::all);
  CHECK_THROWS_WITH_AS(t.run(space, 6.0), doctest::Contains("below the smallest reachable effective bits 8"), aq::error);
  CHECK_THROWS_WITH_AS(t.space({"int9"}, autoquant::scope_preset::all), doctest::Contains("unknown"), aq::error);
}

TEST_CASE("the result JSON says what ran it: the CPU's defaults, or the card, arithmetic and peak memory a GPU driver gives") {
  const tiny_run t;
  const autoquant::search_space space = t.space({"int8_w8a8"}, autoquant::scope_preset::lm);
  const autoquant::autoquant_result r = t.run(space, 8.0);
  autoquant::engine_options o;
  autoquant::result_json_context c;
  c.threads = 2;
  c.weight_bytes = 1234;
  const auto parsed = [&](const std::string& text) {
    static simdjson::dom::parser parser;  // elements borrow the parser's buffer
    simdjson::dom::element root;
    REQUIRE(parser.parse(text).get(root) == simdjson::SUCCESS);
    return root;
  };
  {
    const simdjson::dom::element cpu = parsed(autoquant::render_result_json(space, r, o, c));
    CHECK(std::string_view(cpu["environment"]["device"]) == "cpu");
    CHECK(cpu["environment"]["gpu"].error() == simdjson::NO_SUCH_FIELD);
    CHECK(std::string_view(cpu["environment"]["precision"]) == "float32");
    CHECK(cpu["memory_bytes"]["peak_allocated"].is_null());
    CHECK(cpu["memory_bytes"]["peak_reserved"].is_null());
    CHECK(std::int64_t(cpu["memory_bytes"]["weights"]) == 1234);
    CHECK(std::string_view(cpu["run"]["dtype"]) == "float32");
  }
  c.device = "cuda";
  c.gpu = "NVIDIA H100 80GB HBM3";
  c.precision = "bf16 weights and GEMMs, fp32 accumulation";
  c.dtype = "bfloat16";
  c.peak_allocated_bytes = c.peak_reserved_bytes = 987654321;
  const simdjson::dom::element gpu = parsed(autoquant::render_result_json(space, r, o, c));
  CHECK(std::string_view(gpu["environment"]["device"]) == "cuda");
  CHECK(std::string_view(gpu["environment"]["gpu"]) == "NVIDIA H100 80GB HBM3");
  CHECK(std::string_view(gpu["environment"]["precision"]) == "bf16 weights and GEMMs, fp32 accumulation");
  CHECK(std::int64_t(gpu["memory_bytes"]["peak_allocated"]) == 987654321);
  CHECK(std::int64_t(gpu["memory_bytes"]["peak_reserved"]) == 987654321);
  CHECK(std::string_view(gpu["run"]["dtype"]) == "bfloat16");
}

TEST_CASE("every recipe runs through the engine with ModelOpt's names and quantizer state") {
  const tiny_run t;
  std::vector<std::string> formats;
  for (const quant::recipe_info& info : quant::recipe_registry()) {
    if (info.quantizes) formats.emplace_back(info.name);
  }
  const autoquant::search_space space = t.space(formats, autoquant::scope_preset::lm);
  for (const auto method : {autoquant::score_method::gradient, autoquant::score_method::kl_div}) {
    // 16 bits: every group may keep its best-scoring recipe, which is some quantizing one.
    const autoquant::autoquant_result r = t.run(space, 16.0, method);
    const io::report_model back = io::parse_quant_manifest(io::render_quant_manifest(r.report), "manifest");
    std::size_t scored = 0;
    for (const io::group_sensitivity& g : back.groups) {
      if (g.name.starts_with("model.visual.")) continue;
      REQUIRE(g.candidates.size() == formats.size() + 1);
      CHECK(g.candidates.front().format.find("(effective-bits: 4.0)") != std::string::npos);
      CHECK(g.candidates.back().format == "NONE(effective-bits: 16.0)");
      for (const auto& c : g.candidates) {
        CHECK(std::isfinite(c.score));
        CHECK(c.score >= 0.0);
        scored += c.score > 0.0 ? 1 : 0;
      }
    }
    CHECK(scored > 0);
    // The state holds exactly the calibrated quantizers: NVFP4's global amax ([] for weights),
    // the static inputs; none for MX or the dynamic per-token/per-tensor inputs (below).
    for (const autoquant::quantizer_amax& q : r.state) {
      for (const float v : q.values) CHECK(v > 0.0f);
    }
  }
  const autoquant::autoquant_result r = t.run(space, 16.0);
  const auto recipe_of = [&](std::string_view module) -> std::string_view {
    for (std::size_t m = 0; m < space.modules.size(); ++m) {
      if (space.module_names[m] == module) {
        return space.candidates[r.chosen[space.module_group[m]]].recipe->name;
      }
    }
    return {};
  };
  for (const autoquant::quantizer_amax& q : r.state) {
    const std::string quantizer = q.name.substr(0, q.name.size() - std::string_view("._amax").size());
    const std::string module = quantizer.substr(0, quantizer.rfind('.'));
    const std::string_view recipe = recipe_of(module);
    const quant::recipe_info& info = quant::find_recipe(recipe);
    const bool weight = q.name.ends_with("weight_quantizer._amax");
    CHECK((weight ? info.weight.calibrated : info.input.calibrated));
    if (weight && info.weight.scaling == quant::e4m3_block_scale::name) CHECK(q.shape.empty());
  }
}

}  // namespace test_autoquant_engine
