// ModelOpt's gradient score (AutoQuantize "gradient"): for each module m and recipe r,
// S(m, r) = Σ_batches Σ_i (dL/dY_i)² · (Y_r,i − Y_i)², with Y_r recomputed from the same
// unquantized input X with only m's quantizers on. A linear_observer fed by the model backward.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/linear_observer.hpp"
#include "aq/backend/cpu/score/calibrated_recipes.hpp"
#include "aq/backend/cpu/score/quantized_linear.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"

namespace aq::score {

// Σ_i g_i² (a_i − b_i)² over matrices of equal shape. The difference is taken in fp32 (the
// model's dtype; ModelOpt takes it in bf16), products and sums in fp64. Rows are summed into
// per-row partials in parallel and the partials in row order, so the result does not depend on
// the thread count.
inline double fisher_sum(const const_matrix_view& g, const const_matrix_view& a, const const_matrix_view& b) {
  if (g.rows != a.rows || g.cols != a.cols || b.rows != a.rows || b.cols != a.cols) {
    throw error("fisher_sum: dL/dY [" + std::to_string(g.rows) + ", " + std::to_string(g.cols) + "], Y_r [" +
                std::to_string(a.rows) + ", " + std::to_string(a.cols) + "] and Y [" + std::to_string(b.rows) +
                ", " + std::to_string(b.cols) + "] must have one shape");
  }
  std::vector<double> partial(static_cast<std::size_t>(g.rows), 0.0);
  default_thread_pool().parallel_for(g.rows, 16, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* gr = g.row(r);
      const float* ar = a.row(r);
      const float* br = b.row(r);
      double sum = 0.0;
      for (std::int64_t c = 0; c < g.cols; ++c) {
        const double d = static_cast<double>(ar[c] - br[c]);
        const double gg = static_cast<double>(gr[c]);
        sum += gg * gg * d * d;
      }
      partial[static_cast<std::size_t>(r)] = sum;
    }
  });
  double total = 0.0;
  for (const double p : partial) total += p;
  return total;
}

class gradient_scorer : public qwen3_vl::linear_observer {
 public:
  explicit gradient_scorer(calibrated_recipes& calibration)
      : calib_(calibration), scores_(calibration.num_modules() * calibration.num_recipes(), 0.0) {}

  // Scores are accumulated in the backward, where dL/dY of the module is known; Y_r is
  // recomputed from the saved X and never stored (one module and recipe at a time).
  void on_backward(const qwen3_vl::linear_call& call) override {
    const auto m = calib_.module_index(call.name);
    if (!m || !calib_.active(*m)) return;
    const float amax = calib_.input_amax_for(*m, call.input);
    for (std::size_t r = 0; r < calib_.num_recipes(); ++r) {
      const quantized_weight& w = calib_.weight(*m, r, call.weight);
      const tensor y_r = quantized_linear_forward(calib_.recipe(r), w, call.input, amax, call.bias);
      scores_[*m * calib_.num_recipes() + r] += fisher_sum(call.grad_output, y_r.matrix(), call.output);
    }
  }

  // Σ over the observed batches; batch sums are added in batch order (fp64, as ModelOpt 0.39).
  double module_score(std::size_t m, std::size_t r) const { return scores_.at(m * calib_.num_recipes() + r); }

 private:
  calibrated_recipes& calib_;
  std::vector<double> scores_;
};

}  // namespace aq::score
