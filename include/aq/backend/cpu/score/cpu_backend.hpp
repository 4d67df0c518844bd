// The CPU scoring backend: the fp32 reference model (model_runner) with calibrated_recipes and the
// CPU gradient and KL-div scorers, behind the pipeline's scoring_backend interface. The stage
// functions (calibrate, gradient_scores, kl_div_scores) are usable on their own too.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/linear_observer.hpp"
#include "aq/backend/cpu/qwen3_vl/model_runner.hpp"
#include "aq/backend/cpu/score/calibrated_recipes.hpp"
#include "aq/backend/cpu/score/gradient_scorer.hpp"
#include "aq/backend/cpu/score/kl_div_scorer.hpp"
#include "aq/backend/cpu/score/mix_evaluator.hpp"
#include "aq/backend/cpu/score/quantized_mix_forward.hpp"
#include "aq/backend/cpu/score/quantized_linear.hpp"
#include "aq/core/error.hpp"
#include "aq/core/progress.hpp"
#include "aq/quant/recipes.hpp"
#include "aq/score/scoring_backend.hpp"
#include "aq/search/search_space.hpp"

namespace aq::autoquant {

namespace detail {

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

inline std::size_t steps_within(const model_runner& runner, std::int64_t steps) {
  return static_cast<std::size_t>(std::min<std::int64_t>(steps, static_cast<std::int64_t>(runner.num_batches)));
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
  const std::size_t n = detail::steps_within(runner, steps);
  detail::calibration_observer observer(calibration);
  detail::report_progress(progress, "calibration", 0, n);
  for (std::size_t b = 0; b < n; ++b) {
    (void)runner.run(b, model_pass::calibrate, &observer);
    detail::report_progress(progress, "calibration", b + 1, n);
  }
}

// Gradient scores per module and quantizing candidate (NONE excluded), [module][candidate].
inline std::vector<std::vector<double>> gradient_module_scores(const model_runner& runner,
                                                               score::calibrated_recipes& calibration,
                                                               std::int64_t steps,
                                                               const progress_callback& progress = {}) {
  const std::size_t n = detail::steps_within(runner, steps);
  score::gradient_scorer scorer(calibration);
  detail::report_progress(progress, "scoring", 0, n);
  for (std::size_t b = 0; b < n; ++b) {
    (void)runner.run(b, model_pass::gradient, &scorer);
    detail::report_progress(progress, "scoring", b + 1, n);
  }
  std::vector<std::vector<double>> scores(calibration.num_modules());
  for (std::size_t m = 0; m < scores.size(); ++m) {
    for (std::size_t r = 0; r < calibration.num_recipes(); ++r) scores[m].push_back(scorer.module_score(m, r));
  }
  return scores;
}

// Raw gradient scores per group and quantizing candidate (NONE excluded), group order.
inline std::vector<std::vector<double>> gradient_scores(const search_space& space, const model_runner& runner,
                                                        score::calibrated_recipes& calibration, std::int64_t steps,
                                                        const progress_callback& progress = {}) {
  return group_sums(space, gradient_module_scores(runner, calibration, steps, progress));
}

// Raw KL-div scores per group and quantizing candidate (NONE excluded), group order.
inline std::vector<std::vector<double>> kl_div_scores(const search_space& space, const model_runner& runner,
                                                      score::calibrated_recipes& calibration, std::int64_t steps,
                                                      const progress_callback& progress = {}) {
  const std::size_t n = detail::steps_within(runner, steps);
  std::vector<std::size_t> configurable;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (space.configurable(g)) configurable.push_back(g);
  }
  std::vector<std::vector<double>> raw(space.groups.size());
  for (const std::size_t g : configurable) raw[g].assign(calibration.num_recipes(), 0.0);
  score::quantized_mix_forward observer(calibration);
  const std::size_t total = n * configurable.size();
  detail::report_progress(progress, "scoring", 0, total);
  std::size_t done = 0;
  for (std::size_t b = 0; b < n; ++b) {
    const score::reference_distribution p(runner.run(b, model_pass::logits, nullptr).logits);
    for (const std::size_t g : configurable) {
      for (std::size_t r = 0; r < calibration.num_recipes(); ++r) {
        observer.select_group(space.groups[g].members, r);
        const qwen3_vl::text_result q = runner.run(b, model_pass::logits, &observer);
        raw[g][r] += score::cross_entropy_sum(p, q.logits.matrix());
      }
      detail::report_progress(progress, "scoring", ++done, total);
    }
  }
  return raw;
}

// The stage functions above behind the pipeline's interface. The search space (and the model the
// runners run) must outlive the backend. Evaluation runs on the held-out batches of
// evaluate_on(runner).
class cpu_scoring_backend final : public scoring_backend {
 public:
  cpu_scoring_backend(const search_space& space, model_runner runner)
      : cpu_scoring_backend(space, std::move(runner), make_calibrated_recipes(space)) {}
  // Recipes of another compile-time list: make_calibrated_recipes<List>(space).
  cpu_scoring_backend(const search_space& space, model_runner runner, score::calibrated_recipes calibration)
      : space_(space), runner_(std::move(runner)), calibration_(std::move(calibration)) {}

  std::size_t num_batches() const override { return runner_.num_batches; }
  void calibrate(std::size_t steps, const progress_callback& progress) override {
    autoquant::calibrate(runner_, calibration_, static_cast<std::int64_t>(steps), progress);
  }
  std::vector<std::vector<double>> gradient_module_scores(std::size_t steps, const progress_callback& progress) override {
    return autoquant::gradient_module_scores(runner_, calibration_, static_cast<std::int64_t>(steps), progress);
  }
  std::vector<std::vector<double>> kl_div_group_scores(std::size_t steps, const progress_callback& progress) override {
    return autoquant::kl_div_scores(space_, runner_, calibration_, static_cast<std::int64_t>(steps), progress);
  }
  bool module_ran(std::size_t module) const override { return calibration_.has_input_amax(module); }
  weight_amax weight_amax_of(std::size_t module, std::size_t candidate) const override {
    const score::quantized_weight* w = calibration_.cached_weight(module, candidate);
    if (w == nullptr) return {};
    return {w->amax_shape, w->amax};
  }
  float input_amax(std::size_t module) const override { return calibration_.input_amax(module); }

  void evaluate_on(model_runner held_out) { eval_ = std::move(held_out); }
  std::vector<score::mix_metrics> measure_mixes(const std::vector<score::module_mix>& mixes,
                                                const progress_callback& progress) override {
    if (!eval_) throw error("evaluation: the CPU backend was given no held-out batches");
    return score::measure_mixes(*eval_, calibration_, mixes, progress);
  }

  const score::calibrated_recipes& calibration() const { return calibration_; }

 private:
  const search_space& space_;
  model_runner runner_;
  score::calibrated_recipes calibration_;
  std::optional<model_runner> eval_;
};

}  // namespace aq::autoquant
