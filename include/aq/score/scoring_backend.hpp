// What the AutoQuant pipeline asks of whatever runs the model (the CPU reference, the GPU): max
// calibration, raw scores, and the calibrated quantizer state. The pipeline (engine.hpp) owns
// everything after that: budget, group sums, clamp, search, reports and the state export.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "aq/core/progress.hpp"
#include "aq/score/mix_metrics.hpp"
#include "aq/search/search_space.hpp"

namespace aq::autoquant {

// A calibrated weight quantizer's amax as ModelOpt stores it (`_amax` values and shape); empty
// values when the recipe leaves weights unquantized or the module never ran.
struct weight_amax {
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

// Candidates are the search space's quantizing ones (NONE excluded), in candidate order; modules
// are the search space's. Calibration runs before any scoring.
class scoring_backend {
 public:
  virtual ~scoring_backend() = default;

  // Calibration batches the backend holds (the pipeline runs at most this many steps).
  virtual std::size_t num_batches() const = 0;

  // Max calibration of every scored module's input and of every (module, candidate) weight
  // over the first `steps` batches of the unquantized network.
  virtual void calibrate(std::size_t steps, const progress_callback& progress) = 0;

  // Gradient (Fisher) score of every module under every candidate over the first `steps`
  // batches, [module][candidate]; the pipeline sums groups from them (group_sums).
  virtual std::vector<std::vector<double>> gradient_module_scores(std::size_t steps,
                                                                  const progress_callback& progress) = 0;

  // KL-div score of every configurable group under every candidate over the first `steps`
  // batches, [group][candidate]; non-configurable groups empty.
  virtual std::vector<std::vector<double>> kl_div_group_scores(std::size_t steps,
                                                               const progress_callback& progress) = 0;

  // The calibrated state. A module that never ran during calibration has none.
  virtual bool module_ran(std::size_t module) const = 0;
  virtual weight_amax weight_amax_of(std::size_t module, std::size_t candidate) const = 0;
  virtual float input_amax(std::size_t module) const = 0;

  // Quality of every mix against the unquantized model on the held-out batches the backend was
  // given, quantized with the calibrated scales: one mix_metrics (sums) per mix. Progress: stage
  // "evaluation". Throws when the backend holds no held-out batches.
  virtual std::vector<score::mix_metrics> measure_mixes(const std::vector<score::module_mix>& mixes,
                                                        const progress_callback& progress) = 0;
};

// Raw scores per group from per-module ones: every configurable group's members summed in module
// order (the order every backend's scores have always been summed in), non-configurable empty.
inline std::vector<std::vector<double>> group_sums(const search_space& space,
                                                   const std::vector<std::vector<double>>& module_scores) {
  const std::size_t candidates = space.candidates.size() - 1;
  std::vector<std::vector<double>> raw(space.groups.size());
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (!space.configurable(g)) continue;
    raw[g].assign(candidates, 0.0);
    for (std::size_t r = 0; r < candidates; ++r) {
      for (const std::size_t m : space.groups[g].members) raw[g][r] += module_scores[m][r];
    }
  }
  return raw;
}

}  // namespace aq::autoquant
