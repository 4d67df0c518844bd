// The search space of one run: the model's quantizable modules, their ModelOpt groups, the
// ordered candidate recipes (ascending effective bits, NONE last) and which groups are disabled.
// Built before any model work, so that bad formats or budgets fail before files are written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/model/quantizable_modules.hpp"
#include "aq/quant/recipe_registry.hpp"
#include "aq/search/allocation_problem.hpp"
#include "aq/search/cost_model.hpp"
#include "aq/search/knapsack.hpp"
#include "aq/search/scope.hpp"

namespace aq::autoquant {

struct search_group {
  std::string name;                  // ModelOpt hparam name: first member + ".quant_recipe"
  std::vector<std::size_t> members;  // module indices, module order
  std::int64_t numel = 0;
  bool disabled = false;             // a member matched a disabled pattern: NONE only
};

struct search_space {
  std::vector<quantizable_module> modules;    // ModelOpt's named_modules order, whole-model names
  std::vector<std::string> module_names;      // the same modules named as the root names them (reports)
  module_root root = module_root::whole;
  std::vector<search_group> groups;           // order of first members
  std::vector<std::size_t> module_group;      // module -> group
  std::vector<quant::candidate> candidates;   // user recipes by ascending bits, NONE last
  std::vector<std::string> disabled_patterns;
  std::int64_t total_params = 0;              // every candidate module, disabled ones included
  std::int64_t disabled_params = 0;

  std::size_t none_index() const { return candidates.size() - 1; }
  // Candidate indices a group may take: all of them, or NONE alone when disabled.
  std::vector<std::size_t> choices(std::size_t group) const {
    if (groups[group].disabled) return {none_index()};
    std::vector<std::size_t> all(candidates.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    return all;
  }
  bool configurable(std::size_t group) const { return !groups[group].disabled; }
  // The display string of candidate c; with custom_names every quantizing recipe shows as
  // CUSTOM_<position>, as ModelOpt names a config that is not one of its built-ins.
  std::string display(std::size_t c, bool custom_names = false) const {
    const quant::candidate& k = candidates[c];
    if (!custom_names || !k.recipe->quantizes) return k.modelopt_string;
    return quant::modelopt_recipe_string("CUSTOM_" + std::to_string(k.position), k.recipe->effective_bits);
  }
};

// `modules` carry whole-model names (what the model's forward reports); those outside `root` are
// left out, and groups, reports and `disabled_patterns` use the names under the root.
template <class List = recipes::all_recipes>
search_space make_search_space(std::vector<quantizable_module> modules, std::span<const std::string> formats,
                               std::vector<std::string> disabled_patterns, module_root root = module_root::whole) {
  if (formats.empty()) throw error("--formats: no recipe given");
  search_space space;
  space.candidates = quant::order_candidates<List>(formats);
  if (space.candidates.size() < 2) throw error("--formats: only 'none' given; name at least one quantizing recipe");
  space.root = root;
  std::vector<quantizable_module> named;  // the kept modules under their root names, for grouping
  for (quantizable_module& m : modules) {
    std::optional<std::string> name = name_under(root, m.name);
    if (!name) continue;
    named.push_back({*name, m.kind, m.weight_shape});
    space.module_names.push_back(std::move(*name));
    space.modules.push_back(std::move(m));
  }
  space.disabled_patterns = std::move(disabled_patterns);
  const std::vector<module_group> groups = group_modules(named);
  space.module_group.assign(space.modules.size(), 0);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    search_group group{groups[g].name, groups[g].members, groups[g].numel, false};
    for (const std::size_t m : group.members) {
      space.module_group[m] = g;
      if (matches_any(space.disabled_patterns, space.module_names[m])) group.disabled = true;
    }
    space.total_params += group.numel;
    if (group.disabled) space.disabled_params += group.numel;
    space.groups.push_back(std::move(group));
  }
  if (space.total_params <= 0) throw error("search space: the model has no quantizable modules");
  return space;
}

// The allocation problem with placeholder scores (costs only): what the budget check needs.
inline search::allocation_problem cost_problem(const search_space& space,
                                               const std::vector<std::vector<double>>& scores = {}) {
  search::allocation_problem problem(space.total_params);
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    const std::vector<std::size_t> choices = space.choices(g);
    std::vector<double> s(choices.size(), 0.0);
    std::vector<search::cost_t> c;
    for (std::size_t i = 0; i < choices.size(); ++i) {
      c.push_back(param_bits_cost(space.groups[g].numel, space.candidates[choices[i]].recipe->effective_bits));
      if (!scores.empty()) s[i] = scores[g][i];
    }
    problem.add_group(s, c);
  }
  return problem;
}

// The least total cost any selection reaches (every configurable group at its cheapest recipe).
inline search::cost_t min_total_cost(const search_space& space) {
  return search::detail::make_cost_axis(cost_problem(space)).base;
}

inline double min_effective_bits(const search_space& space) {
  return search::effective_bits_of(min_total_cost(space), space.total_params);
}

// Effective bits of the configurable groups alone under a selection (a candidate index per group):
// what a budget b bounds when disabled groups stay at 16 bits and the whole model is searched at
// B' (adjusted_budget_bits); equal to the whole-model figure when nothing is disabled.
inline double searched_effective_bits(const search_space& space, std::span<const std::size_t> chosen) {
  search::cost_t cost = 0;
  std::int64_t params = 0;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (!space.configurable(g)) continue;
    cost += param_bits_cost(space.groups[g].numel, space.candidates[chosen[g]].recipe->effective_bits);
    params += space.groups[g].numel;
  }
  if (params == 0) throw error("search space: every group is disabled");
  return search::effective_bits_of(cost, params);
}

// Throws a one-line error naming the budget and the least reachable effective bits when the
// budget cannot be met (ModelOpt asserts B >= the most aggressive recipe's bits).
inline void check_budget(const search_space& space, double budget_bits, double requested_bits) {
  const search::cost_t least = min_total_cost(space);
  if (search::capacity_for_bits(space.total_params, budget_bits) >= least) return;
  const quant::recipe_info& cheapest = *space.candidates.front().recipe;
  throw error("--effective-bits " + search::detail::format_double(requested_bits) +
              (budget_bits != requested_bits
                   ? " (whole-model budget " + search::detail::format_double(budget_bits) + ")"
                   : std::string()) +
              " is below the smallest reachable effective bits " +
              search::detail::format_double(search::effective_bits_of(least, space.total_params)) +
              " (every searchable group at its most aggressive recipe, " + std::string(cheapest.name) + " at " +
              quant::python_float_repr(cheapest.effective_bits) + " bits)");
}

// The whole-model budget B' a run searches under (adjusted_budget_bits when `adjust`, else the
// request itself), checked against the least reachable effective bits (check_budget).
inline double checked_budget_bits(const search_space& space, double requested_bits, bool adjust) {
  const double budget =
      adjust ? adjusted_budget_bits(requested_bits, space.total_params, space.disabled_params) : requested_bits;
  check_budget(space, budget, requested_bits);
  return budget;
}

}  // namespace aq::autoquant
