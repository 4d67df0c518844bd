// The AutoQuant pipeline: budget, calibration and scoring through a scoring_backend (CPU or GPU),
// monotone clamp, exact knapsack under the effective-bits budget, and the report model (+
// quantizer state) the writers turn into files. No format and no hardware is named here.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/core/progress.hpp"
#include "aq/engine/evaluation.hpp"
#include "aq/report/evaluation_model.hpp"
#include "aq/report/report_model.hpp"
#include "aq/score/monotone_clamp.hpp"
#include "aq/score/scoring_backend.hpp"
#include "aq/search/allocation_problem.hpp"
#include "aq/search/cost_model.hpp"
#include "aq/search/pareto.hpp"
#include "aq/search/scope.hpp"
#include "aq/search/search_space.hpp"

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
  double effective_bits = default_effective_bits;  // requested budget b
  bool adjust_budget = true;         // B' of the reference LM-only driver when groups are disabled
  bool custom_names = false;         // show every recipe as CUSTOM_<i> (the reference's custom configs)
  // Report metadata (the manifest's scheme/model/dataset objects).
  std::string scheme_name = "autoquant";
  std::vector<std::string> quant_formats;  // scheme.quant_formats; empty: ModelOpt config or aq names
  std::int64_t score_size = 128;
  scope_preset scope = scope_preset::lm;
  std::optional<std::string> model_id;
  std::optional<io::dataset_info> dataset;
  // A mix chosen earlier or by hand (candidate per group) instead of the search's answer: the
  // reports describe it and the budget is its effective bits.
  std::optional<std::vector<std::size_t>> given_selection;
  // Closed-loop evaluation on the backend's held-out batches after the search.
  bool evaluate = false;
  evaluation_options evaluation;
};

// Per-stage wall time in seconds.
struct stage_timings {
  double calibration = 0.0;
  double scoring = 0.0;
  double search = 0.0;
  double evaluation = 0.0;
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
  std::optional<io::evaluation_report> evaluation;  // when asked for (data info left to the caller)
};

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace detail

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
  report.scheme.coverage_mode = std::string(coverage_mode(options.scope));  // coverage_fraction stays 1.0
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

// Quantizer state of the chosen recipes, module order: a module that never ran has none (as in
// ModelOpt); a weight amax only when the recipe's weight quantizer is calibrated, an input amax
// only when its input quantizer is (dynamic ones have none).
inline std::vector<quantizer_amax> quantizer_state(const search_space& space, const std::vector<std::size_t>& chosen,
                                                   const scoring_backend& backend) {
  std::vector<quantizer_amax> state;
  for (std::size_t m = 0; m < space.modules.size(); ++m) {
    const std::size_t c = chosen[space.module_group[m]];
    if (c == space.none_index() || !backend.module_ran(m)) continue;
    const std::string& name = space.module_names[m];
    weight_amax w = backend.weight_amax_of(m, c);
    if (!w.values.empty()) state.push_back({name + ".weight_quantizer._amax", std::move(w.shape), std::move(w.values)});
    if (space.candidates[c].recipe->input.calibrated) {
      state.push_back({name + ".input_quantizer._amax", {}, {backend.input_amax(m)}});
    }
  }
  return state;
}

// Raw scores (NONE appended at 0) and their monotone clamp per group, into `result`.
inline void clamp_scores(const search_space& space, const std::vector<std::vector<double>>& quantized,
                         score::clamp_rule clamp, autoquant_result& result) {
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    result.choices.push_back(space.choices(g));
    std::vector<double> raw = quantized[g];
    raw.push_back(0.0);  // NONE
    result.scores.push_back(score::monotone_clamp(raw, clamp));
    result.raw_scores.push_back(std::move(raw));
  }
}

// The effective bits of a given selection, checked to be one candidate per group that the group
// may take (before any model work).
inline double given_selection_bits(const search_space& space, const std::vector<std::size_t>& chosen) {
  if (chosen.size() != space.groups.size()) {
    throw error("given mix: " + std::to_string(chosen.size()) + " recipes for " + std::to_string(space.groups.size()) +
                " groups");
  }
  return selection_totals(space, cost_problem(space), chosen).effective_bits;
}

// The whole run. Throws aq::error (before any model work) when the budget is unreachable.
inline autoquant_result run_autoquant(const search_space& space, scoring_backend& backend,
                                      const engine_options& options, const progress_callback& progress = {}) {
  autoquant_result result;
  result.budget_bits = options.given_selection ? given_selection_bits(space, *options.given_selection)
                                               : checked_budget_bits(space, options.effective_bits, options.adjust_budget);
  if (options.num_calib_steps < 1 || options.num_score_steps < 1) {
    throw error("autoquant: num_calib_steps and num_score_steps must be >= 1");
  }
  const auto batches = static_cast<std::int64_t>(backend.num_batches());
  if (batches == 0) throw error("autoquant: no calibration batches");
  result.num_calib_steps = std::min(options.num_calib_steps, batches);
  result.num_score_steps = std::min(options.num_score_steps, batches);

  auto start = std::chrono::steady_clock::now();
  backend.calibrate(static_cast<std::size_t>(result.num_calib_steps), progress);
  result.timings.calibration = detail::seconds_since(start);

  start = std::chrono::steady_clock::now();
  const auto steps = static_cast<std::size_t>(result.num_score_steps);
  const std::vector<std::vector<double>> quantized =
      options.method == score_method::gradient ? group_sums(space, backend.gradient_module_scores(steps, progress))
                                               : backend.kl_div_group_scores(steps, progress);
  result.timings.scoring = detail::seconds_since(start);

  start = std::chrono::steady_clock::now();
  clamp_scores(space, quantized, options.clamp, result);
  const search::allocation_problem problem = cost_problem(space, result.scores);
  const search::pareto_front front(problem);
  if (options.given_selection) {
    result.chosen = *options.given_selection;
    result.allocation = selection_totals(space, problem, result.chosen);
    result.allocation.capacity = result.allocation.total_cost;
    result.allocation.is_satisfied = true;
  } else {
    result.allocation = front.at_bits(result.budget_bits);
    for (std::size_t g = 0; g < space.groups.size(); ++g) {
      result.chosen.push_back(result.choices[g][result.allocation.selection[g]]);
    }
  }
  result.report = build_report(space, options, result.budget_bits, result.choices, result.scores, result.allocation, front);
  result.timings.search = detail::seconds_since(start);
  result.state = quantizer_state(space, result.chosen, backend);
  if (options.evaluate) {
    start = std::chrono::steady_clock::now();
    evaluation_options eval = options.evaluation;
    eval.custom_names = options.custom_names;
    const std::vector<planned_mix> mixes = plan_mixes(space, front, result.choices, result.chosen, eval);
    result.evaluation = evaluate_mixes(space, result.scores, mixes, backend, eval, progress);
    result.timings.evaluation = detail::seconds_since(start);
  }
  return result;
}

}  // namespace aq::autoquant
