// Exact multiple-choice knapsack: one choice per group, minimum Σ score under Σ cost <= budget.
// The search stage's solver (ModelOpt solves the same 0-1 ILP with CBC); dynamic programming over
// the cost axis in gcd units, either as a dense table or as lists of non-dominated states.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/search/allocation_problem.hpp"

namespace aq::search {

// Which exact DP to run. Both give identical results; they differ in memory and time.
enum class dp_path : std::uint8_t { automatic, dense_table, pareto_list };

struct knapsack_options {
  dp_path path = dp_path::automatic;
  // automatic picks the dense table while its choice table (one byte per cell, one row per
  // multi-choice group) stays under this many cells (128 MiB); beyond, the list DP.
  std::size_t max_dense_cells = std::size_t{1} << 27;
  // The list DP stores 5 bytes per kept state; beyond this many it refuses (aq::error) rather
  // than exhaust memory: the instance is then too large for an exact answer.
  std::size_t max_list_states = std::size_t{1} << 27;
};

namespace detail {

// The cost axis: every cost is base_g + k·unit with base_g the group's cheapest choice and unit
// the gcd of all offsets, so the DP runs over k (ModelOpt's Qwen3-VL offsets share a gcd of 2^16+).
struct cost_axis {
  cost_t base = 0;                  // Σ_g min_r cost[g][r]: the cheapest possible total
  cost_t unit = 1;                  // gcd of all offsets cost[g][r] - min_r cost[g][r] (1 if all zero)
  std::int64_t full_units = 0;      // Σ_g max offset / unit: the most expensive total, in units
  std::vector<std::int64_t> units;  // offset of each choice in units, problem CSR order
  std::vector<std::size_t> begin;   // CSR offsets into units
  std::vector<std::int64_t> max_units;  // the largest offset of each group, in units
};

constexpr cost_axis make_cost_axis(const allocation_problem& problem) {
  cost_axis axis;
  axis.begin.push_back(0);
  std::vector<cost_t> lowest;  // each group's cheapest choice
  cost_t gcd = 0;
  for (std::size_t g = 0; g < problem.num_groups(); ++g) {
    cost_t lo = problem.cost(g, 0);
    for (std::size_t r = 1; r < problem.num_choices(g); ++r) lo = problem.cost(g, r) < lo ? problem.cost(g, r) : lo;
    lowest.push_back(lo);
    axis.base += lo;
    for (std::size_t r = 0; r < problem.num_choices(g); ++r) gcd = std::gcd(gcd, problem.cost(g, r) - lo);
    axis.begin.push_back(axis.begin.back() + problem.num_choices(g));
  }
  axis.unit = gcd == 0 ? 1 : gcd;
  for (std::size_t g = 0; g < problem.num_groups(); ++g) {
    std::int64_t hi = 0;
    for (std::size_t r = 0; r < problem.num_choices(g); ++r) {
      const std::int64_t u = (problem.cost(g, r) - lowest[g]) / axis.unit;
      axis.units.push_back(u);
      hi = u > hi ? u : hi;
    }
    axis.max_units.push_back(hi);
    axis.full_units += hi;
  }
  return axis;
}

inline std::string infeasible_message(const char* where, const allocation_problem& problem, cost_t capacity,
                                      cost_t min_cost) {
  return std::string(where) + ": budget of " + format_double(effective_bits_of(capacity, problem.total_params())) +
         " effective bits (" + std::to_string(capacity) + " param-bits over " +
         std::to_string(problem.total_params()) + " params) is infeasible; the minimum achievable is " +
         format_double(effective_bits_of(min_cost, problem.total_params())) + " effective bits (" +
         std::to_string(min_cost) + " param-bits)";
}

// A final DP state on the Pareto front: `units` above the axis base, group-order score sum, and
// a handle to backtrack its selection (a cell for the table, a state index for the lists).
struct front_state {
  std::int64_t units = 0;
  double score = 0.0;
  std::uint64_t handle = 0;
};

// Order of two candidate prefixes reaching the same cost: lower score sum; then the
// lexicographically smaller choice vector, decided by (rank of the parent prefix among its
// layer's prefixes in lexicographic order, choice index).
constexpr bool better(double score, std::int64_t parent_rank, std::uint32_t r, double best_score,
                      std::int64_t best_rank, std::uint32_t best_r) {
  if (score != best_score) return score < best_score;
  if (parent_rank != best_rank) return parent_rank < best_rank;
  return r < best_r;
}

// The DP itself, up to `limit_units` above the base. After construction `front` lists the
// non-dominated final states by ascending cost with strictly decreasing score; every state on it
// is the optimum of its cost under the tie rule (score, then cost, then lexicographic indices).
class mckp_dp {
 public:
  constexpr mckp_dp(const allocation_problem& problem, cost_axis axis, std::int64_t limit_units,
                    const knapsack_options& options)
      : axis_(std::move(axis)), groups_(problem.num_groups()) {
    for (std::size_t g = 0; g < problem.num_groups(); ++g) {
      if (problem.num_choices(g) > 1) multi_.push_back(g);
    }
    // Cells the dense table would hold: one row per multi-choice group, as wide as reachable.
    std::size_t cells = 0;
    bool dense_fits = true;
    std::int64_t reach = 0;
    for (std::size_t g : multi_) {
      reach = reach + axis_.max_units[g] < limit_units ? reach + axis_.max_units[g] : limit_units;
      if (static_cast<std::uint64_t>(reach) + 1 > options.max_dense_cells - cells) {
        dense_fits = false;
        break;
      }
      cells += static_cast<std::size_t>(reach) + 1;
    }
    const bool dense = options.path == dp_path::dense_table ||
                       (options.path == dp_path::automatic && dense_fits && limit_units < (std::int64_t{1} << 31));
    if (dense) {
      if (limit_units >= (std::int64_t{1} << 31) || !dense_fits) {
        throw aq::error("aq::search::solve_knapsack: the dense DP table needs more than max_dense_cells = " +
                        std::to_string(options.max_dense_cells) + " cells (" + std::to_string(limit_units) +
                        " cost units wide)");
      }
      path_ = solver_path::dp_dense_table;
      run_dense(problem, limit_units);
    } else {
      path_ = solver_path::dp_pareto_list;
      run_lists(problem, limit_units, options.max_list_states);
    }
  }

  constexpr solver_path path() const { return path_; }
  constexpr const cost_axis& axis() const { return axis_; }
  constexpr const std::vector<front_state>& front() const { return front_; }

  // Choice per group of a front state, by walking the stored choices backwards.
  constexpr std::vector<std::uint32_t> selection(const front_state& state) const {
    std::vector<std::uint32_t> chosen(groups_, 0);
    std::uint64_t at = state.handle;
    for (std::size_t layer = multi_.size(); layer-- > 0;) {
      const std::size_t g = multi_[layer];
      if (path_ == solver_path::dp_dense_table) {
        const std::uint32_t r = rows_[layer][at];
        chosen[g] = r;
        at -= static_cast<std::uint64_t>(axis_.units[axis_.begin[g] + r]);
      } else {
        chosen[g] = choices_[layer][at];
        at = parents_[layer][at];
      }
    }
    return chosen;
  }

 private:
  constexpr std::size_t choices(std::size_t g) const { return axis_.begin[g + 1] - axis_.begin[g]; }
  constexpr std::int64_t units(std::size_t g, std::size_t r) const { return axis_.units[axis_.begin[g] + r]; }

  // Dense table: score[c] = best group-order sum over prefixes costing exactly c units.
  // Unreachable cells hold +inf and rank `none` (validate() keeps every real sum finite), so the
  // inner loops are branch-light sweeps over contiguous cells, one choice at a time.
  constexpr void run_dense(const allocation_problem& problem, std::int64_t limit) {
    constexpr std::int32_t none = std::numeric_limits<std::int32_t>::max();
    constexpr double unreachable = std::numeric_limits<double>::infinity();
    const std::size_t width = static_cast<std::size_t>(limit) + 1;
    std::vector<double> score(width, unreachable), next_score(width, unreachable);
    // rank: position of the cell's prefix among the layer's prefixes in lexicographic order.
    std::vector<std::int32_t> rank(width, none), next_rank(width, none);
    std::vector<std::int32_t> order{0}, next_order;  // reachable cells by rank
    score[0] = 0.0;
    rank[0] = 0;
    std::size_t hi = 0;
    for (std::size_t g = 0; g < problem.num_groups(); ++g) {
      const std::size_t n = choices(g);
      if (n == 1) {  // one choice, offset 0: only the score sum moves (kept in group order)
        for (std::size_t c = 0; c <= hi; ++c) score[c] += problem.score(g, 0);
        continue;
      }
      const std::size_t next_hi = std::min(hi + static_cast<std::size_t>(axis_.max_units[g]), width - 1);
      for (std::size_t c = 0; c <= next_hi; ++c) {
        next_score[c] = unreachable;
        next_rank[c] = none;
      }
      std::vector<std::uint8_t> row(next_hi + 1, 0);
      // Choices in ascending index: a later one replaces only a strictly better (score, parent
      // rank), so equal candidates from one parent keep the smaller index.
      for (std::uint32_t r = 0; r < n; ++r) {
        const auto e = static_cast<std::size_t>(units(g, r));
        if (e > next_hi) continue;
        const double add = problem.score(g, r);
        const std::size_t top = std::min(hi + e, next_hi);
        for (std::size_t c = e; c <= top; ++c) {
          const double v = score[c - e] + add;
          const std::int32_t pr = rank[c - e];
          if (v < next_score[c] || (v == next_score[c] && pr < next_rank[c])) {
            next_score[c] = v;
            next_rank[c] = pr;
            row[c] = static_cast<std::uint8_t>(r);
          }
        }
      }
      // Lexicographic ranks of the new prefixes: parents in rank order, then choice index.
      next_order.clear();
      for (std::int32_t p : order) {
        for (std::uint32_t r = 0; r < n; ++r) {
          const std::size_t c = static_cast<std::size_t>(p) + static_cast<std::size_t>(units(g, r));
          if (c > next_hi || row[c] != r) continue;  // row[c] == r: c's winner came from p via r
          next_rank[c] = static_cast<std::int32_t>(next_order.size());
          next_order.push_back(static_cast<std::int32_t>(c));
        }
      }
      std::swap(score, next_score);
      std::swap(rank, next_rank);
      std::swap(order, next_order);
      rows_.push_back(std::move(row));
      hi = next_hi;
    }
    for (std::size_t c = 0; c <= hi; ++c) {
      if (rank[c] == none) continue;
      if (front_.empty() || score[c] < front_.back().score) {
        front_.push_back({static_cast<std::int64_t>(c), score[c], static_cast<std::uint64_t>(c)});
      }
    }
  }

  // Lists of non-dominated prefixes (ascending cost, strictly decreasing score): a prefix that
  // costs at least as much as another and scores no better can never complete to a better answer.
  constexpr void run_lists(const allocation_problem& problem, std::int64_t limit, std::size_t max_states) {
    std::vector<std::int64_t> at{0}, next_at;
    std::vector<double> score{0.0}, next_score;
    std::vector<std::int64_t> rank{0}, next_rank;
    std::vector<std::uint32_t> order{0}, next_order;  // state indices by rank
    std::size_t stored = 0;
    for (std::size_t g = 0; g < problem.num_groups(); ++g) {
      const std::size_t n = choices(g);
      if (n == 1) {
        for (double& s : score) s += problem.score(g, 0);
        continue;
      }
      // n-way merge of the shifted lists by (cost, score, parent rank, choice).
      std::vector<std::size_t> cursor(n, 0);
      std::vector<std::uint32_t> parent;
      std::vector<std::uint8_t> chosen;
      next_at.clear();
      next_score.clear();
      while (true) {
        std::uint32_t pick = 0;
        bool found = false;
        std::int64_t pick_at = 0;
        double pick_score = 0.0;
        for (std::uint32_t r = 0; r < n; ++r) {
          if (cursor[r] >= at.size()) continue;
          const std::int64_t c = at[cursor[r]] + units(g, r);
          if (c > limit) continue;
          const double s = score[cursor[r]] + problem.score(g, r);
          if (!found || c < pick_at ||
              (c == pick_at && better(s, rank[cursor[r]], r, pick_score, rank[cursor[pick]], pick))) {
            found = true;
            pick = r;
            pick_at = c;
            pick_score = s;
          }
        }
        if (!found) break;
        // Kept only if it scores strictly below every cheaper kept prefix; at equal cost the
        // merge order puts the winner first.
        if (next_at.empty() || pick_score < next_score.back()) {
          next_at.push_back(pick_at);
          next_score.push_back(pick_score);
          parent.push_back(static_cast<std::uint32_t>(cursor[pick]));
          chosen.push_back(static_cast<std::uint8_t>(pick));
        }
        ++cursor[pick];
      }
      // Lexicographic ranks of the kept prefixes.
      std::vector<std::int64_t> child(at.size() * n, -1);
      for (std::size_t i = 0; i < parent.size(); ++i) child[parent[i] * n + chosen[i]] = static_cast<std::int64_t>(i);
      next_rank.assign(parent.size(), 0);
      next_order.clear();
      for (std::uint32_t p : order) {
        for (std::size_t r = 0; r < n; ++r) {
          const std::int64_t i = child[p * n + r];
          if (i < 0) continue;
          next_rank[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(next_order.size());
          next_order.push_back(static_cast<std::uint32_t>(i));
        }
      }
      stored += parent.size();
      if (stored > max_states) {
        throw aq::error("aq::search::solve_knapsack: the Pareto-list DP exceeds max_list_states = " +
                        std::to_string(max_states) + " states at group " + std::to_string(g) +
                        "; the instance is too large for an exact answer");
      }
      parents_.push_back(std::move(parent));
      choices_.push_back(std::move(chosen));
      std::swap(at, next_at);
      std::swap(score, next_score);
      std::swap(rank, next_rank);
      std::swap(order, next_order);
    }
    for (std::size_t i = 0; i < at.size(); ++i) front_.push_back({at[i], score[i], i});
  }

  cost_axis axis_;
  std::size_t groups_;
  std::vector<std::size_t> multi_;  // groups with more than one choice, in group order
  solver_path path_ = solver_path::dp_dense_table;
  std::vector<front_state> front_;
  std::vector<std::vector<std::uint8_t>> rows_;       // dense: chosen index per cell, per multi group
  std::vector<std::vector<std::uint32_t>> parents_;   // lists: parent state per state, per multi group
  std::vector<std::vector<std::uint8_t>> choices_;    // lists: chosen index per state, per multi group
};

}  // namespace detail

// Exact optimum for a budget of `capacity` param-bits. Tie rule: least group-order score sum,
// then least total cost, then lexicographically smallest choice indices in group order (exact
// whenever the partial score sums are exact, e.g. for dyadic scores; see docs/allocator.md).
// Throws aq::error if even the cheapest selection exceeds the budget.
constexpr allocation_result solve_knapsack(const allocation_problem& problem, cost_t capacity,
                                           const knapsack_options& options = {}) {
  problem.validate();
  detail::cost_axis axis = detail::make_cost_axis(problem);
  if (capacity < axis.base) {
    throw aq::error(detail::infeasible_message("aq::search::solve_knapsack", problem, capacity, axis.base));
  }
  const std::int64_t slack = (capacity - axis.base) / axis.unit;
  const std::int64_t limit = slack < axis.full_units ? slack : axis.full_units;
  const detail::mckp_dp dp(problem, std::move(axis), limit, options);
  // The last front state has the least score and, among equal scores, the least cost.
  return evaluate_selection(problem, dp.selection(dp.front().back()), capacity, dp.path());
}

// Same, with the budget in effective bits (ModelOpt's `effective_bits` constraint):
// capacity = floor(total_params x bits) param-bits.
constexpr allocation_result solve_knapsack_bits(const allocation_problem& problem, double effective_bits,
                                                const knapsack_options& options = {}) {
  problem.validate();
  return solve_knapsack(problem, capacity_for_bits(problem.total_params(), effective_bits), options);
}

}  // namespace aq::search
