// The AutoQuant engine: calibrate every candidate recipe, score every group (gradient or kl_div),
// clamp scores monotone, allocate with the exact knapsack under the effective-bits budget, and
// fill the report model (+ quantizer state) the writers turn into files. No format is named here.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aq/autoquant/cost_model.hpp"
#include "aq/autoquant/model_runner.hpp"
#include "aq/autoquant/progress.hpp"
#include "aq/autoquant/scope.hpp"
#include "aq/autoquant/search_space.hpp"
#include "aq/core/error.hpp"
#include "aq/io/report_model.hpp"
#include "aq/model/qwen3_vl/linear_observer.hpp"
#include "aq/score/calibrated_recipes.hpp"
#include "aq/score/gradient_scorer.hpp"
#include "aq/score/kl_div_scorer.hpp"
#include "aq/score/monotone_clamp.hpp"
#include "aq/score/quantized_linear.hpp"
#include "aq/search/allocation_problem.hpp"
#include "aq/search/pareto.hpp"

namespace aq::autoquant {

enum class score_method { gradient, kl_div };

inline std::string_view to_string(score_method method) {
  return method == score_method::gradient ? "gradient" : "kl_div";
}

inline score_method parse_score_method(std::string_view text) {
  if (text == "gradient") return score_method::gradient;
  if (text == "kl_div") return score_method::kl_div;
  throw error("--method: '" + std::string(text) + "' is unknown; valid methods: gradient, kl_div");
}

struct engine_options {
  score_method method = score_method::gradient;
  score::clamp_rule clamp = score::clamp_rule::modelopt_0_39;
  std::int64_t num_calib_steps = 1;  // first batches used for calibration
  std::int64_t num_score_steps = 1;  // first batches used for scoring
  double effective_bits = 8.0;       // requested budget b
  bool adjust_budget = true;         // B' of the reference LM-only driver when groups are disabled
  bool custom_names = false;         // show every recipe as CUSTOM_<i> (the reference's custom configs)
  // Report metadata (the manifest's scheme/model/dataset objects).
  std::string scheme_name = "autoquant";
  std::vector<std::string> quant_formats;  // scheme.quant_formats; empty: ModelOpt config or aq names
  std::int64_t score_size = 128;
  scope_preset scope = scope_preset::lm;
  std::optional<std::string> model_id;
  std::optional<io::dataset_info> dataset;
};

// Per-stage wall time in seconds.
struct stage_timings {
  double calibration = 0.0;
  double scoring = 0.0;
  double search = 0.0;
};

// One quantizer's calibrated amax (ModelOpt's `<module>.<weight|input>_quantizer._amax`).
struct quantizer_amax {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

struct autoquant_result {
  io::report_model report;
  std::vector<std::vector<std::size_t>> choices;  // candidate indices per group
  std::vector<std::vector<double>> raw_scores;    // per group and choice, before the clamp
  std::vector<std::vector<double>> scores;        // after the clamp (what the search uses)
  std::vector<std::size_t> chosen;                // candidate index per group
  search::allocation_result allocation;
  double budget_bits = 0.0;                       // B' (scheme.auto_quantize_bits)
  std::int64_t num_calib_steps = 0;
  std::int64_t num_score_steps = 0;
  stage_timings timings;
  std::vector<quantizer_amax> state;              // chosen recipes' amax, module order
};

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Calibration pass: every scored module's input amax and every (module, recipe) weight.
class calibration_observer : public qwen3_vl::linear_observer {
 public:
  explicit calibration_observer(score::calibrated_recipes& calibration) : calib_(calibration) {}
  void on_forward(const qwen3_vl::linear_call& call) override {
    const auto m = calib_.module_index(call.name);
    if (!m || !calib_.active(*m)) return;
    calib_.observe_input(*m, call.input);
    for (std::size_t r = 0; r < calib_.num_recipes(); ++r) (void)calib_.weight(*m, r, call.weight);
  }

 private:
  score::calibrated_recipes& calib_;
};

inline void report_progress(const progress_callback& progress, std::string_view stage, std::size_t done,
                            std::size_t total) {
  if (progress) progress(stage, done, total);
}

}  // namespace detail

// The calibrated recipes of a search space (kernels of every quantizing candidate).
template <class List = recipes::all_recipes>
score::calibrated_recipes make_calibrated_recipes(const search_space& space) {
  std::vector<score::recipe_kernels> kernels;
  for (std::size_t c = 0; c + 1 < space.candidates.size(); ++c) {
    kernels.push_back(score::make_recipe_kernels<List>(*space.candidates[c].recipe));
  }
  std::vector<bool> active(space.modules.size(), false);
  for (std::size_t m = 0; m < space.modules.size(); ++m) active[m] = space.configurable(space.module_group[m]);
  return score::calibrated_recipes(std::move(kernels), space.modules, std::move(active));
}

// Max calibration over the first `steps` batches of the unquantized network. Every candidate's
// activation quantizer is per tensor and sees the same unquantized inputs, so one pass gives each
// recipe exactly the amax ModelOpt's one-pass-per-recipe calibration gives it.
inline void calibrate(const model_runner& runner, score::calibrated_recipes& calibration, std::int64_t steps,
                      const progress_callback& progress = {}) {
  const auto n = static_cast<std::size_t>(std::min<std::int64_t>(steps, static_cast<std::int64_t>(runner.num_batches)));
  detail::calibration_observer observer(calibration);
  detail::report_progress(progress, "calibration", 0, n);
  for (std::size_t b = 0; b < n; ++b) {
    (void)runner.run(b, model_pass::calibrate, &observer);
    detail::report_progress(progress, "calibration", b + 1, n);
  }
}

// Raw scores per group and quantizing candidate (NONE excluded), group order.
inline std::vector<std::vector<double>> gradient_scores(const search_space& space, const model_runner& runner,
                                                        score::calibrated_recipes& calibration, std::int64_t steps,
                                                        const progress_callback& progress = {}) {
  const auto n = static_cast<std::size_t>(std::min<std::int64_t>(steps, static_cast<std::int64_t>(runner.num_batches)));
  score::gradient_scorer scorer(calibration);
  detail::report_progress(progress, "scoring", 0, n);
  for (std::size_t b = 0; b < n; ++b) {
    (void)runner.run(b, model_pass::gradient, &scorer);
    detail::report_progress(progress, "scoring", b + 1, n);
  }
  std::vector<std::vector<double>> raw(space.groups.size());
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (!space.configurable(g)) continue;
    raw[g].assign(calibration.num_recipes(), 0.0);
    for (std::size_t r = 0; r < calibration.num_recipes(); ++r) {
      for (const std::size_t m : space.groups[g].members) raw[g][r] += scorer.module_score(m, r);  // module order
    }
  }
  return raw;
}

inline std::vector<std::vector<double>> kl_div_scores(const search_space& space, const model_runner& runner,
                                                      score::calibrated_recipes& calibration, std::int64_t steps,
                                                      const progress_callback& progress = {}) {
  const auto n = static_cast<std::size_t>(std::min<std::int64_t>(steps, static_cast<std::int64_t>(runner.num_batches)));
  std::vector<std::size_t> configurable;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (space.configurable(g)) configurable.push_back(g);
  }
  std::vector<std::vector<double>> raw(space.groups.size());
  for (const std::size_t g : configurable) raw[g].assign(calibration.num_recipes(), 0.0);
  score::quantized_group_forward observer(calibration);
  const std::size_t total = n * configurable.size();
  detail::report_progress(progress, "scoring", 0, total);
  std::size_t done = 0;
  for (std::size_t b = 0; b < n; ++b) {
    const score::reference_distribution p(runner.run(b, model_pass::logits, nullptr).logits);
    for (const std::size_t g : configurable) {
      std::vector<bool> in_group(space.modules.size(), false);
      for (const std::size_t m : space.groups[g].members) in_group[m] = true;
      for (std::size_t r = 0; r < calibration.num_recipes(); ++r) {
        observer.select(in_group, r);
        const qwen3_vl::text_result q = runner.run(b, model_pass::logits, &observer);
        raw[g][r] += score::cross_entropy_sum(p, q.logits.matrix());
      }
      detail::report_progress(progress, "scoring", ++done, total);
    }
  }
  return raw;
}

// Fills a report model from a search space, its (clamped) scores and the selection.
inline io::report_model build_report(const search_space& space, const engine_options& options, double budget_bits,
                                     const std::vector<std::vector<std::size_t>>& choices,
                                     const std::vector<std::vector<double>>& scores,
                                     const search::allocation_result& allocation,
                                     const search::pareto_front& front) {
  io::report_model report;
  report.scheme.name = options.scheme_name;
  report.scheme.auto_quantize_bits = budget_bits;
  report.scheme.method = std::string(to_string(options.method));
  report.scheme.score_size = options.score_size;
  report.scheme.coverage_mode = std::string(coverage_mode(options.scope));
  report.scheme.coverage_fraction = 1.0;
  report.scheme.quant_formats = options.quant_formats;
  if (report.scheme.quant_formats.empty()) {
    for (std::size_t c = 0; c + 1 < space.candidates.size(); ++c) {
      const quant::recipe_info& info = *space.candidates[c].recipe;
      report.scheme.quant_formats.emplace_back(info.modelopt_config.empty() || options.custom_names
                                                   ? std::string(info.name)
                                                   : std::string(info.modelopt_config));
    }
  }
  report.model_id = options.model_id;
  for (std::size_t m = 0; m < space.modules.size(); ++m) {
    if (space.modules[m].kind == module_kind::linear) report.layers.push_back({space.module_names[m], true, "QuantLinear"});
  }
  report.autoquant_state.effective_bits = allocation.effective_bits;
  report.autoquant_state.score = allocation.total_score;
  report.autoquant_state.is_satisfied = allocation.is_satisfied;
  report.chosen_recipes.emplace();
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    io::group_sensitivity group{space.groups[g].name, {}};
    for (std::size_t i = 0; i < choices[g].size(); ++i) {
      const std::size_t c = choices[g][i];
      group.candidates.push_back({space.display(c, options.custom_names), scores[g][i],
                                  modelopt_cost(space.groups[g].numel, space.candidates[c].recipe->effective_bits)});
    }
    report.chosen_recipes->push_back(
        {space.groups[g].name, space.display(choices[g][allocation.selection[g]], options.custom_names)});
    report.groups.push_back(std::move(group));
  }
  report.dataset = options.dataset;
  report.pareto_front.emplace();
  for (const search::pareto_point& point : front.points()) {
    report.pareto_front->push_back({point.effective_bits, point.total_score});
  }
  return report;
}

// The whole run. Throws aq::error (before any model work) when the budget is unreachable.
template <class List = recipes::all_recipes>
autoquant_result run_autoquant(const search_space& space, const model_runner& runner, const engine_options& options,
                               const progress_callback& progress = {}) {
  autoquant_result result;
  result.budget_bits = options.adjust_budget
                           ? adjusted_budget_bits(options.effective_bits, space.total_params, space.disabled_params)
                           : options.effective_bits;
  check_budget(space, result.budget_bits, options.effective_bits);
  if (options.num_calib_steps < 1 || options.num_score_steps < 1) {
    throw error("autoquant: num_calib_steps and num_score_steps must be >= 1");
  }
  if (runner.num_batches == 0) throw error("autoquant: no calibration batches");
  result.num_calib_steps = std::min<std::int64_t>(options.num_calib_steps, static_cast<std::int64_t>(runner.num_batches));
  result.num_score_steps = std::min<std::int64_t>(options.num_score_steps, static_cast<std::int64_t>(runner.num_batches));

  score::calibrated_recipes calibration = make_calibrated_recipes<List>(space);
  auto start = std::chrono::steady_clock::now();
  calibrate(runner, calibration, result.num_calib_steps, progress);
  result.timings.calibration = detail::seconds_since(start);

  start = std::chrono::steady_clock::now();
  const std::vector<std::vector<double>> quantized =
      options.method == score_method::gradient
          ? gradient_scores(space, runner, calibration, result.num_score_steps, progress)
          : kl_div_scores(space, runner, calibration, result.num_score_steps, progress);
  result.timings.scoring = detail::seconds_since(start);

  start = std::chrono::steady_clock::now();
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    result.choices.push_back(space.choices(g));
    std::vector<double> raw = quantized[g];
    raw.push_back(0.0);  // NONE
    result.scores.push_back(score::monotone_clamp(raw, options.clamp));
    result.raw_scores.push_back(std::move(raw));
  }
  const search::allocation_problem problem = cost_problem(space, result.scores);
  const search::pareto_front front(problem);
  result.allocation = front.at_bits(result.budget_bits);
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    result.chosen.push_back(result.choices[g][result.allocation.selection[g]]);
  }
  result.report = build_report(space, options, result.budget_bits, result.choices, result.scores, result.allocation, front);
  result.timings.search = detail::seconds_since(start);

  // Quantizer state of the chosen recipes (modules that never ran have none, as in ModelOpt).
  for (std::size_t m = 0; m < space.modules.size(); ++m) {
    const std::size_t c = result.chosen[space.module_group[m]];
    if (c == space.none_index()) continue;
    const std::string& name = space.module_names[m];
    if (const score::quantized_weight* w = calibration.cached_weight(m, c); w != nullptr && !w->amax.empty()) {
      result.state.push_back({name + ".weight_quantizer._amax", w->amax_shape, w->amax});
    }
    if (calibration.recipe(c).input_enabled && calibration.has_input_amax(m)) {
      result.state.push_back({name + ".input_quantizer._amax", {}, {calibration.input_amax(m)}});
    }
  }
  return result;
}

}  // namespace aq::autoquant
