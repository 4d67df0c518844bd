// Lagrangian relaxation of the allocation problem: price cost at λ score per param-bit and let each
// group pick alone. Sweeping λ over the groups' lower convex hulls gives the LP bound (a lower bound
// on the exact optimum) and a feasible greedy selection: an independent cross-check of the knapsack,
// kept beside the tests (and the allocator benchmark) because no production path needs it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/search/allocation_problem.hpp"
#include "aq/search/knapsack.hpp"

namespace aq::search {

struct lagrangian_result {
  // max over λ >= 0 of L(λ) = Σ_g min_r (score + λ·cost) − λ·capacity (= the LP relaxation);
  // <= the exact optimum up to floating-point rounding of this sum.
  double lower_bound = 0.0;
  // The λ attaining it (score per param-bit): the efficiency of the hull segment the budget
  // cuts; 0 when every group can take its best-score choice.
  double multiplier = 0.0;
  // Hull greedy: every segment that fits, in order of efficiency; within budget, >= the optimum.
  allocation_result feasible;
};

// L(λ) for any λ >= 0: a valid lower bound on the optimum for every λ (weak duality).
constexpr double lagrangian_dual(const allocation_problem& problem, cost_t capacity, double lambda) {
  long double total = 0.0L;
  for (std::size_t g = 0; g < problem.num_groups(); ++g) {
    long double best = 0.0L;
    for (std::size_t r = 0; r < problem.num_choices(g); ++r) {
      const long double v = static_cast<long double>(problem.score(g, r)) +
                            static_cast<long double>(lambda) * static_cast<long double>(problem.cost(g, r));
      best = r == 0 || v < best ? v : best;
    }
    total += best;
  }
  return static_cast<double>(total - static_cast<long double>(lambda) * static_cast<long double>(capacity));
}

namespace detail {

// A step along one group's lower convex hull: spend `cost` more, save `saving` score.
struct hull_segment {
  std::size_t group = 0;
  std::size_t step = 0;  // from hull point `step` to `step + 1`
  cost_t cost = 0;
  double saving = 0.0;
  long double efficiency = 0.0L;  // saving per param-bit, strictly decreasing along a hull
};

// Lower convex hull of a group's (cost, score) points, cheapest first, scores strictly falling.
constexpr std::vector<std::uint32_t> lower_hull(const allocation_problem& problem, std::size_t g) {
  std::vector<std::uint32_t> by_cost(problem.num_choices(g));
  for (std::uint32_t r = 0; r < by_cost.size(); ++r) by_cost[r] = r;
  std::sort(by_cost.begin(), by_cost.end(), [&](std::uint32_t a, std::uint32_t b) {
    if (problem.cost(g, a) != problem.cost(g, b)) return problem.cost(g, a) < problem.cost(g, b);
    if (problem.score(g, a) != problem.score(g, b)) return problem.score(g, a) < problem.score(g, b);
    return a < b;
  });
  std::vector<std::uint32_t> hull;
  for (std::uint32_t r : by_cost) {
    if (!hull.empty() && !(problem.score(g, r) < problem.score(g, hull.back()))) continue;  // dominated
    while (hull.size() >= 2) {
      const std::uint32_t a = hull[hull.size() - 2];
      const std::uint32_t b = hull.back();
      // b stays only if the slope a→b is strictly steeper (more negative) than b→r.
      const long double left = (static_cast<long double>(problem.score(g, b)) - problem.score(g, a)) *
                               static_cast<long double>(problem.cost(g, r) - problem.cost(g, b));
      const long double right = (static_cast<long double>(problem.score(g, r)) - problem.score(g, b)) *
                                static_cast<long double>(problem.cost(g, b) - problem.cost(g, a));
      if (left < right) break;
      hull.pop_back();
    }
    hull.push_back(r);
  }
  return hull;
}

}  // namespace detail

// The λ sweep: hull segments of all groups by decreasing efficiency (ties: group, then step).
constexpr lagrangian_result solve_lagrangian(const allocation_problem& problem, cost_t capacity) {
  problem.validate();
  std::vector<std::vector<std::uint32_t>> hulls;
  std::vector<detail::hull_segment> segments;
  cost_t cost = 0;
  for (std::size_t g = 0; g < problem.num_groups(); ++g) {
    hulls.push_back(detail::lower_hull(problem, g));
    const std::vector<std::uint32_t>& h = hulls.back();
    cost += problem.cost(g, h[0]);
    for (std::size_t k = 0; k + 1 < h.size(); ++k) {
      detail::hull_segment s;
      s.group = g;
      s.step = k;
      s.cost = problem.cost(g, h[k + 1]) - problem.cost(g, h[k]);
      s.saving = problem.score(g, h[k]) - problem.score(g, h[k + 1]);
      s.efficiency = static_cast<long double>(s.saving) / static_cast<long double>(s.cost);
      segments.push_back(s);
    }
  }
  if (cost > capacity) {
    throw aq::error(detail::infeasible_message("aq::search::solve_lagrangian", problem, capacity, cost));
  }
  std::sort(segments.begin(), segments.end(), [](const detail::hull_segment& a, const detail::hull_segment& b) {
    if (a.efficiency != b.efficiency) return a.efficiency > b.efficiency;
    return a.group != b.group ? a.group < b.group : a.step < b.step;
  });
  long double bound = 0.0L;
  for (std::size_t g = 0; g < problem.num_groups(); ++g) bound += problem.score(g, hulls[g][0]);
  std::vector<std::size_t> at(problem.num_groups(), 0);
  bool cut = false;
  lagrangian_result result;
  for (const detail::hull_segment& s : segments) {
    if (at[s.group] != s.step) continue;  // an earlier step of this group did not fit
    if (cost + s.cost <= capacity) {
      cost += s.cost;
      ++at[s.group];
      if (!cut) bound -= s.saving;
    } else if (!cut) {  // the budget cuts this segment: the LP takes the fitting fraction of it
      cut = true;
      const long double fraction = static_cast<long double>(capacity - cost) / static_cast<long double>(s.cost);
      bound -= fraction * s.saving;
      result.multiplier = static_cast<double>(s.efficiency);
    }
  }
  result.lower_bound = static_cast<double>(bound);
  std::vector<std::uint32_t> selection(problem.num_groups());
  for (std::size_t g = 0; g < problem.num_groups(); ++g) selection[g] = hulls[g][at[g]];
  result.feasible = evaluate_selection(problem, std::move(selection), capacity, solver_path::lagrangian);
  return result;
}

constexpr lagrangian_result solve_lagrangian_bits(const allocation_problem& problem, double effective_bits) {
  problem.validate();
  return solve_lagrangian(problem, capacity_for_bits(problem.total_params(), effective_bits));
}

}  // namespace aq::search
