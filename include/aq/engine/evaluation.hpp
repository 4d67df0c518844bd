// The closed loop after the search: which mixes to measure (the unquantized model, every
// candidate applied uniformly, the chosen mix, points of the Pareto front), their predicted
// score and effective bits, and the measured quality the backend returns for them on held-out
// data, as the evaluation report the writers turn into files.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/core/progress.hpp"
#include "aq/report/evaluation_model.hpp"
#include "aq/score/mix_metrics.hpp"
#include "aq/score/rank_correlation.hpp"
#include "aq/score/scoring_backend.hpp"
#include "aq/search/allocation_problem.hpp"
#include "aq/search/pareto.hpp"
#include "aq/search/search_space.hpp"

namespace aq::autoquant {

struct evaluation_options {
  std::size_t pareto_points = 5;  // budgets spread evenly over the front's range of bits
  bool custom_names = false;      // recipe display strings as the reports show them
};

// A mix to measure: candidate index per group.
struct planned_mix {
  std::string name;
  io::mix_kind kind = io::mix_kind::chosen;
  std::vector<std::size_t> chosen;
};

// Candidate index per module of a per-group selection.
inline score::module_mix module_mix_of(const search_space& space, const std::vector<std::size_t>& chosen) {
  score::module_mix mix(space.modules.size());
  for (std::size_t m = 0; m < mix.size(); ++m) mix[m] = chosen.at(space.module_group[m]);
  return mix;
}

// The choice index (into space.choices(g)) of candidate c in group g.
inline std::uint32_t choice_index(const search_space& space, std::size_t g, std::size_t c) {
  const std::vector<std::size_t> choices = space.choices(g);
  const auto it = std::find(choices.begin(), choices.end(), c);
  if (it == choices.end()) throw error("evaluation: group '" + space.groups[g].name + "' cannot take " + space.display(c));
  return static_cast<std::uint32_t>(it - choices.begin());
}

// Effective bits and predicted (summed clamped) score of a selection, as the search counts them.
inline search::allocation_result selection_totals(const search_space& space, const search::allocation_problem& problem,
                                                  const std::vector<std::size_t>& chosen) {
  std::vector<std::uint32_t> selection;
  for (std::size_t g = 0; g < space.groups.size(); ++g) selection.push_back(choice_index(space, g, chosen[g]));
  return search::evaluate_selection(problem, std::move(selection), search::cost_t{0}, search::solver_path::dp_dense_table);
}

namespace detail {

inline std::string bits_label(double bits) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f", bits);
  return text;
}

// `count` budgets from lo to hi, evenly spaced (hi alone for one), in param-bits so that both
// ends are exactly reachable.
inline std::vector<search::cost_t> spread(search::cost_t lo, search::cost_t hi, std::size_t count) {
  if (count == 1) return {hi};
  std::vector<search::cost_t> out;
  const long double step = static_cast<long double>(hi - lo) / static_cast<long double>(count - 1);
  for (std::size_t k = 0; k < count; ++k) out.push_back(lo + static_cast<search::cost_t>(step * static_cast<long double>(k)));
  out.back() = hi;
  return out;
}

}  // namespace detail

// The Pareto points to measure: `count` budgets over [least cost, cost of the widest uniform
// recipe], each the front's answer for it; a selection met twice is measured once.
inline std::vector<planned_mix> pareto_mixes(const search_space& space, const search::pareto_front& front,
                                             const std::vector<std::vector<std::size_t>>& choices, search::cost_t hi,
                                             std::size_t count) {
  std::vector<planned_mix> out;
  if (count == 0 || front.size() == 0) return out;
  const search::cost_t lo = front[0].total_cost;
  for (const search::cost_t capacity : detail::spread(lo, std::max(lo, hi), count)) {
    const search::allocation_result a = front.at_capacity(capacity);
    planned_mix mix{"pareto " + detail::bits_label(search::effective_bits_of(capacity, space.total_params)),
                    io::mix_kind::pareto, {}};
    for (std::size_t g = 0; g < space.groups.size(); ++g) mix.chosen.push_back(choices[g][a.selection[g]]);
    const bool seen = std::any_of(out.begin(), out.end(), [&](const planned_mix& m) { return m.chosen == mix.chosen; });
    if (!seen) out.push_back(std::move(mix));
  }
  return out;
}

// Unquantized, every quantizing candidate uniformly, the chosen selection, the Pareto points.
inline std::vector<planned_mix> plan_mixes(const search_space& space, const search::pareto_front& front,
                                           const std::vector<std::vector<std::size_t>>& choices,
                                           const std::vector<std::size_t>& chosen, const evaluation_options& options) {
  const auto uniform = [&](std::size_t c) {
    std::vector<std::size_t> sel(space.groups.size(), space.none_index());
    for (std::size_t g = 0; g < sel.size(); ++g) {
      if (space.configurable(g)) sel[g] = c;
    }
    return sel;
  };
  std::vector<planned_mix> mixes{{"unquantized", io::mix_kind::unquantized, uniform(space.none_index())}};
  search::cost_t hi = 0;
  const search::allocation_problem costs = cost_problem(space);
  for (std::size_t c = 0; c < space.none_index(); ++c) {
    mixes.push_back({"uniform " + space.display(c, options.custom_names), io::mix_kind::uniform, uniform(c)});
    hi = std::max(hi, selection_totals(space, costs, mixes.back().chosen).total_cost);
  }
  mixes.push_back({"chosen", io::mix_kind::chosen, chosen});
  for (planned_mix& m : pareto_mixes(space, front, choices, hi, options.pareto_points)) mixes.push_back(std::move(m));
  return mixes;
}

// Measures the planned mixes through the backend and fills the report (data info left to the
// caller, tokens excepted). `scores`: the clamped scores per group and choice.
inline io::evaluation_report evaluate_mixes(const search_space& space, const std::vector<std::vector<double>>& scores,
                                            const std::vector<planned_mix>& mixes, scoring_backend& backend,
                                            const evaluation_options& options, const progress_callback& progress) {
  // A selection planned twice (a Pareto point that is the chosen mix or a uniform recipe) is
  // measured once.
  std::vector<score::module_mix> distinct;
  std::vector<std::size_t> measured_as;
  for (const planned_mix& m : mixes) {
    score::module_mix mix = module_mix_of(space, m.chosen);
    const auto it = std::find(distinct.begin(), distinct.end(), mix);
    measured_as.push_back(static_cast<std::size_t>(it - distinct.begin()));
    if (it == distinct.end()) distinct.push_back(std::move(mix));
  }
  const std::vector<score::mix_metrics> unique = backend.measure_mixes(distinct, progress);
  if (unique.size() != distinct.size()) throw error("evaluation: the backend measured the wrong number of mixes");
  std::vector<score::mix_metrics> measured;
  for (const std::size_t i : measured_as) measured.push_back(unique[i]);
  const search::allocation_problem problem = cost_problem(space, scores);
  io::evaluation_report report;
  std::vector<double> predicted, kl;
  for (std::size_t i = 0; i < mixes.size(); ++i) {
    const search::allocation_result totals = selection_totals(space, problem, mixes[i].chosen);
    io::mix_evaluation e{mixes[i].name, mixes[i].kind, totals.effective_bits, totals.total_score,
                         measured[i].mean_kl(), measured[i].perplexity(), measured[i].top1_agreement(), {}};
    for (const std::size_t c : mixes[i].chosen) e.recipes.push_back(space.display(c, options.custom_names));
    if (e.kind != io::mix_kind::unquantized) {
      predicted.push_back(e.predicted_score);
      kl.push_back(e.mean_kl);
    }
    report.mixes.push_back(std::move(e));
  }
  report.data.tokens = measured.empty() ? 0 : measured.front().tokens;
  report.spearman_score_kl = score::spearman(predicted, kl);
  io::validate_evaluation_report(report, space.groups.size());
  return report;
}

}  // namespace aq::autoquant
