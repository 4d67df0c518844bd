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

}  // namespace aq::score
