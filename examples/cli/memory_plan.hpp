// How a device memory budget is spent: first on keeping layers' activations for the backward
// (each saved layer skips one layer's recompute: ~46 ms per GiB at the 4B shape), then on cached
// quantized weights (skips one weight fake-quant per module, recipe and batch: fewer ms per GiB).
// Host-only arithmetic, so that the plan is testable without a GPU.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "aq/core/error.hpp"

namespace aq::autoquant {

struct memory_plan_inputs {
  std::size_t budget_bytes = 0;       // the most the run may hold on the device
  std::size_t in_use_bytes = 0;       // already held: weights, the model's fixed buffers
  std::size_t scratch_bytes = 0;      // reserved for scorer/calibration scratch and GEMM workspaces
  std::size_t layer_bytes = 0;        // one layer's activation set
  std::int64_t layers = 0;            // decoder layers
  std::size_t max_cache_bytes = SIZE_MAX;  // cap on cached quantized weights (--weight-cache-gib)
  std::string in_use_what = "weights and fixed buffers";  // what in_use_bytes holds, for the error
};

struct memory_plan {
  std::int64_t saved_layers = 0;       // layers that keep their activations
  std::size_t activation_bytes = 0;    // their sets plus the shared recompute set when one is left
  std::size_t weight_cache_bytes = 0;  // what is left, capped
};

inline std::string format_gib(std::size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(bytes) / static_cast<double>(1ull << 30));
  return buf;
}

// Activation sets held with k saved layers: k of their own plus one shared while k < layers.
constexpr std::size_t activation_sets_bytes(std::int64_t k, std::int64_t layers, std::size_t layer_bytes) {
  return static_cast<std::size_t>(k + (k < layers ? 1 : 0)) * layer_bytes;
}

// The least a run can hold: what is in use, the scratch and one shared recompute set.
constexpr std::size_t minimum_bytes(const memory_plan_inputs& in) {
  return in.in_use_bytes + in.scratch_bytes + activation_sets_bytes(0, in.layers, in.layer_bytes);
}

// The most saved layers that fit, then the weight cache from the rest. Throws when even the
// recompute-everything minimum does not fit, naming that minimum.
inline memory_plan plan_memory(const memory_plan_inputs& in) {
  const std::size_t fixed = in.in_use_bytes + in.scratch_bytes;
  const std::size_t minimum = minimum_bytes(in);
  if (in.budget_bytes < minimum) {
    throw error("--memory-budget-gib: " + format_gib(in.budget_bytes) + " is below this run's minimum of " +
                format_gib(minimum) + " (" + in.in_use_what + " " + format_gib(in.in_use_bytes) + ", scratch " +
                format_gib(in.scratch_bytes) + ", one layer's activations " + format_gib(in.layer_bytes) + ")");
  }
  const std::size_t room = in.budget_bytes - fixed;
  memory_plan p;
  for (std::int64_t k = in.layers; k >= 0; --k) {
    if (activation_sets_bytes(k, in.layers, in.layer_bytes) <= room) {
      p.saved_layers = k;
      break;
    }
  }
  p.activation_bytes = activation_sets_bytes(p.saved_layers, in.layers, in.layer_bytes);
  p.weight_cache_bytes = std::min(room - p.activation_bytes, in.max_cache_bytes);
  return p;
}

// What the driver does when a budget cannot hold the run at `rows` sequences a pass: fewer
// sequences a pass first (unless --micro-batch fixed them); below one, the default budget (half of
// ModelOpt's estimated peak) is dropped for the plan without a budget, since any slower plan
// would miss it as well, and a budget the user gave is refused with its minimum.
enum class budget_step { halve_pass, drop_budget, refuse };

constexpr budget_step when_budget_too_small(bool default_budget, bool fixed_pass, std::int64_t rows) {
  if (!fixed_pass && rows > 1) return budget_step::halve_pass;
  return default_budget ? budget_step::drop_budget : budget_step::refuse;
}

}  // namespace aq::autoquant
