// The allocation problem the search stage solves: one choice per group (recipe), each with a score
// (damage) and an integer cost in params x bits; minimize the summed score under a size budget.
// Scorers fill it, the knapsack/Lagrangian/Pareto solvers read it; no format is ever named here.
#pragma once

#include <array>
#include <bit>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"

namespace aq::search {

// Cost unit: parameters x bits ("param-bits"). A group of n weights stored at b effective bits
// costs n*b; ModelOpt's costs are n*b/16 ("numel x compression"), i.e. ours divided by 16.
// Integers keep the budget test exact and the DP axis discrete.
using cost_t = std::int64_t;

// Largest total cost we accept: totals convert to double exactly, so effective bits are one
// correctly rounded division, as in ModelOpt.
inline constexpr cost_t max_total_cost = cost_t{1} << 53;

// Choice indices are stored as bytes in the DP tables.
inline constexpr std::size_t max_choices_per_group = 255;

struct choice {
  double score = 0.0;
  cost_t cost = 0;
};

// Which algorithm produced a result (reported so that users and tests can see the path taken).
enum class solver_path : std::uint8_t {
  dp_dense_table,  // exact DP over every cost cell (gcd units)
  dp_pareto_list,  // exact DP over non-dominated (cost, score) states only
  lagrangian,      // convex-hull greedy: feasible but not necessarily optimal
};

constexpr std::string_view to_string(solver_path path) {
  switch (path) {
    case solver_path::dp_dense_table: return "dp_dense_table";
    case solver_path::dp_pareto_list: return "dp_pareto_list";
    case solver_path::lagrangian: return "lagrangian";
  }
  return "unknown";
}

namespace detail {

// Shortest round-trip text of a double (Python repr digits), for error messages.
inline std::string format_double(double value) {
  std::array<char, 64> buffer{};
  const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  if (ec != std::errc{}) return "?";
  return std::string(buffer.data(), end);
}

constexpr bool is_finite(double x) { return x == x && x - x == 0.0; }

}  // namespace detail

// floor(total_params x bits) computed exactly from the binary value of `bits`: the budget
// Σ cost <= W·B then needs no floating-point comparison. Throws for negative / non-finite bits.
constexpr cost_t capacity_for_bits(std::int64_t total_params, double bits) {
  if (total_params <= 0) {
    throw aq::error("aq::search::capacity_for_bits: total_params must be > 0, got " + std::to_string(total_params));
  }
  if (!detail::is_finite(bits) || bits < 0.0) {
    throw aq::error("aq::search::capacity_for_bits: effective bits must be finite and >= 0, got " +
                    detail::format_double(bits));
  }
  if (bits == 0.0) return 0;
  const auto raw = std::bit_cast<std::uint64_t>(bits);
  const int biased = static_cast<int>((raw >> 52) & 0x7ffu);
  std::uint64_t mantissa = raw & ((std::uint64_t{1} << 52) - 1);
  int exponent = 0;  // bits = mantissa * 2^exponent
  if (biased == 0) {
    exponent = -1074;
  } else {
    mantissa |= std::uint64_t{1} << 52;
    exponent = biased - 1075;
  }
  const unsigned __int128 product = static_cast<unsigned __int128>(total_params) * mantissa;
  unsigned __int128 floored = 0;
  if (exponent >= 0) {
    if (exponent > 60 || (product >> (127 - exponent)) != 0) {
      throw aq::error("aq::search::capacity_for_bits: total_params x bits overflows the cost range");
    }
    floored = product << exponent;
  } else {
    floored = exponent <= -127 ? 0 : product >> (-exponent);
  }
  if (floored > static_cast<unsigned __int128>(max_total_cost)) {
    throw aq::error("aq::search::capacity_for_bits: total_params x bits = " + detail::format_double(bits) +
                    " x " + std::to_string(total_params) + " exceeds 2^53 param-bits");
  }
  return static_cast<cost_t>(floored);
}

// Effective bits of a total cost: Σ params·bits / Σ params (ModelOpt: 16·Σ costs / W_total).
// Both operands convert to double exactly, so this is one correctly rounded division.
constexpr double effective_bits_of(cost_t total_cost, std::int64_t total_params) {
  return static_cast<double>(total_cost) / static_cast<double>(total_params);
}

// Groups in a fixed order (ModelOpt's candidate order); choices of a group in a fixed order
// (ascending compression, NONE last). Disabled groups are groups with one choice. Stored flat
// (CSR) so that a problem of 250 groups is three small vectors.
class allocation_problem {
 public:
  constexpr allocation_problem() = default;
  constexpr explicit allocation_problem(std::int64_t total_params) : total_params_(total_params) {}

  // Σ params of every candidate module, disabled groups included: the effective-bits denominator.
  constexpr std::int64_t total_params() const { return total_params_; }
  constexpr void set_total_params(std::int64_t total_params) { total_params_ = total_params; }

  constexpr void add_group(std::initializer_list<choice> choices) {
    for (const choice& c : choices) {
      scores_.push_back(c.score);
      costs_.push_back(c.cost);
    }
    begin_.push_back(scores_.size());
  }
  constexpr void add_group(std::span<const double> scores, std::span<const cost_t> costs) {
    if (scores.size() != costs.size()) {
      throw aq::error("aq::search::allocation_problem::add_group: group " + std::to_string(num_groups()) + " has " +
                      std::to_string(scores.size()) + " scores but " + std::to_string(costs.size()) + " costs");
    }
    scores_.insert(scores_.end(), scores.begin(), scores.end());
    costs_.insert(costs_.end(), costs.begin(), costs.end());
    begin_.push_back(scores_.size());
  }

  constexpr std::size_t num_groups() const { return begin_.size() - 1; }
  constexpr std::size_t num_choices(std::size_t group) const { return begin_[group + 1] - begin_[group]; }
  constexpr double score(std::size_t group, std::size_t r) const { return scores_[begin_[group] + r]; }
  constexpr cost_t cost(std::size_t group, std::size_t r) const { return costs_[begin_[group] + r]; }

  // Throws aq::error naming the group and field for anything the solvers cannot take.
  constexpr void validate() const {
    if (total_params_ <= 0) {
      throw aq::error("aq::search::allocation_problem: total_params must be > 0, got " +
                      std::to_string(total_params_));
    }
    if (num_groups() == 0) throw aq::error("aq::search::allocation_problem: no groups");
    cost_t max_sum = 0;
    double magnitude = 0.0;  // Σ_g max_r |score|: bounds every partial sum the solvers form
    for (std::size_t g = 0; g < num_groups(); ++g) {
      const std::size_t n = num_choices(g);
      if (n == 0 || n > max_choices_per_group) {
        throw aq::error("aq::search::allocation_problem: group " + std::to_string(g) + " has " + std::to_string(n) +
                        " choices, expected 1.." + std::to_string(max_choices_per_group));
      }
      cost_t group_max = 0;
      double group_magnitude = 0.0;
      for (std::size_t r = 0; r < n; ++r) {
        if (!detail::is_finite(score(g, r))) {
          throw aq::error("aq::search::allocation_problem: scores[" + std::to_string(g) + "][" + std::to_string(r) +
                          "] must be finite, got " + detail::format_double(score(g, r)));
        }
        if (cost(g, r) < 0 || cost(g, r) > max_total_cost) {
          throw aq::error("aq::search::allocation_problem: costs[" + std::to_string(g) + "][" + std::to_string(r) +
                          "] must be in [0, 2^53] param-bits, got " + std::to_string(cost(g, r)));
        }
        group_max = cost(g, r) > group_max ? cost(g, r) : group_max;
        const double m = score(g, r) < 0.0 ? -score(g, r) : score(g, r);
        group_magnitude = m > group_magnitude ? m : group_magnitude;
      }
      magnitude += group_magnitude;
      if (!(magnitude <= std::numeric_limits<double>::max() / 4)) {
        throw aq::error("aq::search::allocation_problem: Σ |scores| overflows double range at group " +
                        std::to_string(g));
      }
      max_sum += group_max;
      if (max_sum > max_total_cost) {
        throw aq::error("aq::search::allocation_problem: Σ max costs exceeds 2^53 param-bits at group " +
                        std::to_string(g));
      }
    }
  }

 private:
  std::int64_t total_params_ = 0;
  std::vector<std::size_t> begin_ = std::vector<std::size_t>(1, 0);
  std::vector<double> scores_;
  std::vector<cost_t> costs_;
};

// One chosen index per group, with the totals ModelOpt reports.
struct allocation_result {
  std::vector<std::uint32_t> selection;  // choice index per group, group order
  double total_score = 0.0;              // Σ scores[g][selection[g]] summed in group order
  cost_t total_cost = 0;                 // Σ costs, param-bits
  cost_t capacity = 0;                   // the budget asked for, param-bits
  double effective_bits = 0.0;           // total_cost / total_params
  bool is_satisfied = false;             // total_cost <= capacity
  solver_path path = solver_path::dp_dense_table;
};

// Totals of a selection, summed exactly the way ModelOpt's report sums them (left to right in
// group order, starting from 0).
constexpr allocation_result evaluate_selection(const allocation_problem& problem,
                                               std::vector<std::uint32_t> selection, cost_t capacity,
                                               solver_path path) {
  if (selection.size() != problem.num_groups()) {
    throw aq::error("aq::search::evaluate_selection: selection has " + std::to_string(selection.size()) +
                    " entries, problem has " + std::to_string(problem.num_groups()) + " groups");
  }
  allocation_result result;
  for (std::size_t g = 0; g < selection.size(); ++g) {
    if (selection[g] >= problem.num_choices(g)) {
      throw aq::error("aq::search::evaluate_selection: selection[" + std::to_string(g) + "] = " +
                      std::to_string(selection[g]) + " but the group has " + std::to_string(problem.num_choices(g)) +
                      " choices");
    }
    result.total_score += problem.score(g, selection[g]);
    result.total_cost += problem.cost(g, selection[g]);
  }
  result.selection = std::move(selection);
  result.capacity = capacity;
  result.effective_bits = effective_bits_of(result.total_cost, problem.total_params());
  result.is_satisfied = result.total_cost <= capacity;
  result.path = path;
  return result;
}

// ModelOpt writes costs as numel x compression (e.g. 3932160.0 for 15,728,640 weights at 4 bits);
// ours are 16x that. Throws if the value is not a whole number of param-bits.
inline cost_t cost_from_compressed(double numel_times_compression) {
  const double scaled = numel_times_compression * 16.0;
  if (!detail::is_finite(scaled) || scaled < 0.0 || scaled > static_cast<double>(max_total_cost) ||
      scaled != static_cast<double>(static_cast<cost_t>(scaled))) {
    throw aq::error("aq::search::cost_from_compressed: cost " + detail::format_double(numel_times_compression) +
                    " x 16 is not a whole number of param-bits in [0, 2^53]");
  }
  return static_cast<cost_t>(scaled);
}

}  // namespace aq::search
