// The evaluation table both evaluation.md and report.html print: one row per evaluated mix, its
// numbers formatted once here so the two files always agree. Scores and KL span decades, so
// they are printed in scientific notation; bits and perplexity in fixed notation.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "aq/report/evaluation_model.hpp"
#include "aq/report/python_float.hpp"

namespace aq::io {

inline constexpr std::array<const char*, 7> evaluation_table_header = {
    "mix", "kind", "effective bits", "predicted score", "mean KL (nats)", "perplexity", "top-1 agreement"};

// The cells of one row, unescaped.
inline std::array<std::string, 7> evaluation_table_row(const mix_evaluation& mix) {
  return {mix.name,
          std::string(to_string(mix.kind)),
          python_format_f(mix.effective_bits, 3),
          python_format_e(mix.predicted_score, 3),
          python_format_e(mix.mean_kl, 3),
          python_format_f(mix.perplexity, 3),
          python_format_f(100.0 * mix.top1_agreement, 2) + "%"};
}

// "0.873", or "n/a" when the evaluation had too few mixes (or no spread) to rank.
inline std::string spearman_text(const evaluation_report& evaluation) {
  return evaluation.spearman_score_kl ? python_format_f(*evaluation.spearman_score_kl, 3) : std::string("n/a");
}

}  // namespace aq::io
