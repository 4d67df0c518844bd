// ModelOpt's kl_div score (AutoQuantize "kl_div", 0.40+): for each group g and recipe r,
// S(g, r) = Σ_batches −Σ_tokens Σ_vocab p · log q, p the unquantized next-token distribution and
// q the one with only g's quantizers on. That is the cross-entropy H(p, q) = H(p) + KL(p‖q), summed
// over every token including padding, exactly what ModelOpt computes (it drops H(p) nowhere).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/linear_observer.hpp"
#include "aq/backend/cpu/score/calibrated_recipes.hpp"
#include "aq/backend/cpu/score/quantized_linear.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"

namespace aq::score {

// log Σ exp of one row, in fp64.
inline double log_sum_exp(const float* row, std::int64_t n) {
  double hi = -INFINITY;
  for (std::int64_t i = 0; i < n; ++i) hi = row[i] > hi ? row[i] : hi;
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(row[i]) - hi);
  return hi + std::log(sum);
}

// The unquantized distribution of one batch: the logits and each row's log-normaliser.
struct reference_distribution {
  tensor logits;
  std::vector<double> lse;

  explicit reference_distribution(tensor unquantized_logits) : logits(std::move(unquantized_logits)) {
    const const_matrix_view l = logits.matrix();
    lse.resize(static_cast<std::size_t>(l.rows));
    default_thread_pool().parallel_for(l.rows, 4, [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) lse[static_cast<std::size_t>(r)] = log_sum_exp(l.row(r), l.cols);
    });
  }
};

// −Σ_rows Σ_v p_v log q_v in fp64 (ModelOpt: fp32 log_softmax, fp32 sum); per-row partials are
// summed in row order so the result does not depend on the thread count.
inline double cross_entropy_sum(const reference_distribution& p, const const_matrix_view& quantized_logits) {
  const const_matrix_view l = p.logits.matrix();
  if (quantized_logits.rows != l.rows || quantized_logits.cols != l.cols) {
    throw error("kl_div score: quantized logits [" + std::to_string(quantized_logits.rows) + ", " +
                std::to_string(quantized_logits.cols) + "] differ from the unquantized [" + std::to_string(l.rows) +
                ", " + std::to_string(l.cols) + "]");
  }
  std::vector<double> partial(static_cast<std::size_t>(l.rows), 0.0);
  default_thread_pool().parallel_for(l.rows, 4, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* pr = l.row(r);
      const float* qr = quantized_logits.row(r);
      const double lse_p = p.lse[static_cast<std::size_t>(r)];
      const double lse_q = log_sum_exp(qr, l.cols);
      double sum = 0.0;
      for (std::int64_t v = 0; v < l.cols; ++v) {
        sum += std::exp(static_cast<double>(pr[v]) - lse_p) * (static_cast<double>(qr[v]) - lse_q);
      }
      partial[static_cast<std::size_t>(r)] = -sum;
    }
  });
  double total = 0.0;
  for (const double x : partial) total += x;
  return total;
}

// During a forward, replaces the output of every module of one group by its output under one
// recipe, through the model's replace_output hook (called before the model reads Y), so the rest
// of the network sees the quantized group and everything else unquantized.
class quantized_group_forward : public qwen3_vl::linear_observer {
 public:
  explicit quantized_group_forward(calibrated_recipes& calibration) : calib_(calibration) {}

  void select(std::vector<bool> in_group, std::size_t recipe) {
    in_group_ = std::move(in_group);
    recipe_ = recipe;
  }

  void replace_output(const qwen3_vl::linear_call& call, matrix_view output) override {
    const auto m = calib_.module_index(call.name);
    if (!m || *m >= in_group_.size() || !in_group_[*m]) return;
    const quantized_weight& w = calib_.weight(*m, recipe_, call.weight);
    const tensor y_r =
        quantized_linear_forward(calib_.recipe(recipe_), w, call.input, calib_.input_amax_for(*m, call.input), call.bias);
    if (y_r.shape().front() != output.rows || y_r.numel() != output.rows * output.cols) {
      throw error("kl_div score: " + std::string(call.name) + ": quantized output " + shape_string(y_r.shape()) +
                  " does not match the module output [" + std::to_string(output.rows) + ", " +
                  std::to_string(output.cols) + "]");
    }
    for (std::int64_t r = 0; r < output.rows; ++r) {
      const float* src = y_r.data() + r * output.cols;
      std::copy(src, src + output.cols, output.row(r));
    }
  }

 private:
  calibrated_recipes& calib_;
  std::vector<bool> in_group_;
  std::size_t recipe_ = 0;
};

}  // namespace aq::score
