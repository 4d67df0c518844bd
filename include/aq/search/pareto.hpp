// The whole size/damage trade-off of an allocation problem: for every budget, the least summed
// score. One DP over the full cost range gives every non-dominated (effective bits, score) point;
// any budget's answer is then a lookup, and the curve is what the report plots.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/search/allocation_problem.hpp"
#include "aq/search/knapsack.hpp"

namespace aq::search {

struct pareto_point {
  cost_t total_cost = 0;        // param-bits
  double effective_bits = 0.0;  // total_cost / total_params
  double total_score = 0.0;     // group-order sum of the selection's scores
};

// Points by ascending cost with strictly decreasing score: each is the exact optimum (with the
// knapsack's tie rule) of every budget from its cost up to the next point's cost.
class pareto_front {
 public:
  constexpr explicit pareto_front(const allocation_problem& problem, const knapsack_options& options = {})
      : problem_((problem.validate(), problem)), dp_(make_dp(problem_, options)) {
    const detail::cost_axis& axis = dp_.axis();
    for (const detail::front_state& state : dp_.front()) {
      const cost_t cost = axis.base + state.units * axis.unit;
      points_.push_back({cost, effective_bits_of(cost, problem_.total_params()), state.score});
    }
  }

  constexpr std::span<const pareto_point> points() const { return points_; }
  constexpr std::size_t size() const { return points_.size(); }
  constexpr const pareto_point& operator[](std::size_t i) const { return points_[i]; }
  constexpr solver_path path() const { return dp_.path(); }

  // Choice per group of point i: a backtrack through the stored DP choices, O(groups).
  constexpr std::vector<std::uint32_t> selection(std::size_t i) const {
    if (i >= points_.size()) {
      throw aq::error("aq::search::pareto_front::selection: point " + std::to_string(i) + " of " +
                      std::to_string(points_.size()));
    }
    return dp_.selection(dp_.front()[i]);
  }

  // The answer for a budget: the last point not above it (equal to solve_knapsack's answer).
  constexpr allocation_result at_capacity(cost_t capacity) const {
    const auto above = std::partition_point(points_.begin(), points_.end(),
                                            [&](const pareto_point& point) { return point.total_cost <= capacity; });
    if (above == points_.begin()) {
      throw aq::error(detail::infeasible_message("aq::search::pareto_front::at_capacity", problem_, capacity,
                                                 points_.front().total_cost));
    }
    return evaluate_selection(problem_, selection(static_cast<std::size_t>(above - points_.begin()) - 1), capacity,
                              dp_.path());
  }
  constexpr allocation_result at_bits(double effective_bits) const {
    return at_capacity(capacity_for_bits(problem_.total_params(), effective_bits));
  }

 private:
  static constexpr detail::mckp_dp make_dp(const allocation_problem& problem, const knapsack_options& options) {
    detail::cost_axis axis = detail::make_cost_axis(problem);
    const std::int64_t full = axis.full_units;
    return detail::mckp_dp(problem, std::move(axis), full, options);
  }

  allocation_problem problem_;
  detail::mckp_dp dp_;
  std::vector<pareto_point> points_;
};

}  // namespace aq::search
