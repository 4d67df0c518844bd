// What a closed-loop evaluation measures of one mix against the unquantized model, as sums over
// the held-out tokens (every position with a next-token label): KL(p‖q) of the next-token
// distributions, the negative log-likelihood of the label under q, and whether the argmax of q
// equals the argmax of p. Backends accumulate the sums; the means are taken here.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "aq/core/error.hpp"

namespace aq::score {

// A mix: for every module of the search space, the candidate it runs with (none_index():
// unquantized).
using module_mix = std::vector<std::size_t>;

// Whether a mix leaves every module unquantized (every entry at or past the recipe count): its
// logits are the reference's, so backends measure it without a forward.
inline bool quantizes_nothing(const module_mix& mix, std::size_t num_recipes) {
  for (const std::size_t r : mix) {
    if (r < num_recipes) return false;
  }
  return true;
}

struct mix_metrics {
  double kl_sum = 0.0;         // Σ_tokens KL(p‖q), nats
  double nll_sum = 0.0;        // Σ_tokens −log q(label)
  std::int64_t agreements = 0;  // tokens with argmax q == argmax p
  std::int64_t tokens = 0;

  double mean_kl() const { return tokens > 0 ? kl_sum / static_cast<double>(tokens) : 0.0; }
  double perplexity() const { return tokens > 0 ? std::exp(nll_sum / static_cast<double>(tokens)) : 0.0; }
  double top1_agreement() const {
    return tokens > 0 ? static_cast<double>(agreements) / static_cast<double>(tokens) : 0.0;
  }

  mix_metrics& operator+=(const mix_metrics& other) {
    kl_sum += other.kl_sum;
    nll_sum += other.nll_sum;
    agreements += other.agreements;
    tokens += other.tokens;
    return *this;
  }
};

// What one row of logits contributes, given the row's log-normaliser: the first maximum's index
// (torch.argmax's tie rule), and Σ_v softmax(z)_v·z_v − lse, i.e. −H. In fp64.
struct row_summary {
  std::int64_t argmax = 0;
  double lse = 0.0;
};

inline row_summary summarize_row(const float* z, std::int64_t n) {
  row_summary s;
  double hi = -std::numeric_limits<double>::infinity();
  for (std::int64_t v = 0; v < n; ++v) {
    if (z[v] > hi) {
      hi = z[v];
      s.argmax = v;
    }
  }
  double sum = 0.0;
  for (std::int64_t v = 0; v < n; ++v) sum += std::exp(static_cast<double>(z[v]) - hi);
  s.lse = hi + std::log(sum);
  return s;
}

// One token: p's logits (with their summary), q's logits and the label, in fp64.
inline mix_metrics token_metrics(const float* p, const row_summary& ps, const float* q, std::int64_t n,
                                 std::int64_t label) {
  if (label < 0 || label >= n) throw error("evaluation: label " + std::to_string(label) + " outside the vocabulary");
  const row_summary qs = summarize_row(q, n);
  double kl = 0.0;
  for (std::int64_t v = 0; v < n; ++v) {
    const double log_p = static_cast<double>(p[v]) - ps.lse;
    const double log_q = static_cast<double>(q[v]) - qs.lse;
    kl += std::exp(log_p) * (log_p - log_q);
  }
  mix_metrics m;
  m.kl_sum = kl;
  m.nll_sum = qs.lse - static_cast<double>(q[label]);
  m.agreements = qs.argmax == ps.argmax ? 1 : 0;
  m.tokens = 1;
  return m;
}

}  // namespace aq::score
