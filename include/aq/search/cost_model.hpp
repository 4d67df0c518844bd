// ModelOpt's cost model: a group costs its weight count x the recipe's compression (16 bits =
// unquantized), the effective-bits denominator counts every candidate module (disabled ones at
// 16 bits), and the reference LM-only driver turns a budget b over the searched part into B'.
#pragma once

#include <algorithm>
#include <cstdint>

#include "aq/core/error.hpp"
#include "aq/search/allocation_problem.hpp"

namespace aq::autoquant {

// The budget a run searches under when none is given (effective bits over the searched weights).
inline constexpr double default_effective_bits = 6.0;

// Cost in the allocator's unit (param-bits): numel x effective bits. Throws when that is not a
// whole number (e.g. an odd numel at 5.5 bits), which would make the budget test inexact.
inline search::cost_t param_bits_cost(std::int64_t numel, double effective_bits) {
  return search::cost_from_compressed(static_cast<double>(numel) * (effective_bits / 16.0));
}

// The cost ModelOpt writes in candidate_stats: numel x compression.
inline double modelopt_cost(std::int64_t numel, double effective_bits) {
  return static_cast<double>(numel) * (effective_bits / 16.0);
}

// The reference driver's adjustment (auto-quantize-model, LM-only coverage): with D of T weights
// disabled (kept at 16 bits), a budget b over the searched weights becomes the whole-model
// constraint B' = min(16, (16 D + b (T - D)) / T + 1e-3), recorded as scheme.auto_quantize_bits.
inline double adjusted_budget_bits(double bits, std::int64_t total_params, std::int64_t disabled_params) {
  if (total_params <= 0) throw error("budget: total weight count must be > 0");
  if (disabled_params <= 0) return bits;
  const double total = static_cast<double>(total_params);
  const double disabled = static_cast<double>(disabled_params);
  return std::min(16.0, (disabled * 16.0 + (total - disabled) * bits) / total + 1e-3);
}

}  // namespace aq::autoquant
