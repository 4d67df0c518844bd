// The plain data of a closed-loop evaluation: each evaluated mix (the unquantized model, every
// candidate recipe applied uniformly, the chosen mix, points of the Pareto front) with its measured
// quality on held-out data and what the search predicted for it. The evaluation stage fills it;
// the writers (evaluation.json, the SVG plots, report.html, evaluation.md) know nothing else.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/error.hpp"

namespace aq::io {

// How an evaluated mix was formed.
enum class mix_kind { unquantized, uniform, chosen, pareto };

inline std::string_view to_string(mix_kind kind) {
  switch (kind) {
    case mix_kind::unquantized: return "unquantized";
    case mix_kind::uniform: return "uniform";
    case mix_kind::chosen: return "chosen";
    case mix_kind::pareto: return "pareto";
  }
  return "unknown";
}

// One evaluated mix. Quality is measured against the unquantized model on the held-out tokens
// (every position with a next-token label).
struct mix_evaluation {
  std::string name;  // "unquantized", "uniform FP8_DEFAULT_CFG", "chosen", "pareto 5.5"
  mix_kind kind = mix_kind::chosen;
  double effective_bits = 16.0;    // as the manifest's constraints.effective_bits counts them
  double predicted_score = 0.0;    // Σ over groups of the clamped score of the mix's recipe (NONE: 0)
  double mean_kl = 0.0;            // mean per-token KL(unquantized ‖ mix) of the next-token distribution, nats
  double perplexity = 0.0;         // exp(mean negative log-likelihood of the labels)
  double top1_agreement = 1.0;     // fraction of tokens whose argmax equals the unquantized model's
  std::vector<std::string> recipes;  // per report group (report_model::groups order): its display string
};

// Where the held-out data came from.
struct evaluation_data_info {
  std::string source;               // file the samples were read from
  std::int64_t first_sample = 0;    // index of the first sample taken (samples before it were skipped)
  std::int64_t samples = 0;         // samples evaluated
  std::int64_t skipped_calibration = 0;  // samples skipped because they equal a calibration sample
  std::int64_t tokens = 0;          // positions with a label (the means' denominator)
};

struct evaluation_report {
  evaluation_data_info data;
  // Unquantized first, then the uniform recipes in candidate order, the chosen mix, and the
  // Pareto points by increasing effective bits.
  std::vector<mix_evaluation> mixes;
  // Spearman rank correlation of predicted score and measured mean KL over the quantized mixes
  // (absent with fewer than three, or when either has no spread).
  std::optional<double> spearman_score_kl;
};

// Refuses what a strict JSON reader or a plot could not show: non-finite numbers, and mixes
// whose recipe list does not have one entry per group.
inline void validate_evaluation_report(const evaluation_report& report, std::size_t num_groups) {
  for (const mix_evaluation& m : report.mixes) {
    const std::string where = "evaluation mix '" + m.name + "'";
    for (const double v : {m.effective_bits, m.predicted_score, m.mean_kl, m.perplexity, m.top1_agreement}) {
      if (!std::isfinite(v)) throw error(where + ": a measured or predicted value is not finite");
    }
    if (m.recipes.size() != num_groups) {
      throw error(where + ": " + std::to_string(m.recipes.size()) + " recipes for " + std::to_string(num_groups) +
                  " groups");
    }
  }
  if (report.spearman_score_kl && !std::isfinite(*report.spearman_score_kl)) {
    throw error("evaluation: the Spearman correlation is not finite");
  }
}

}  // namespace aq::io
