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
  std::size_t budget_bytes = 0;        // the budget it was planned under
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
  p.budget_bytes = in.budget_bytes;
  return p;
}

// --activations saved|recompute under a budget: k saved layers whatever plan_memory would pick.
// The default budget grows to what they need (the user asked for more); a given one refuses.
inline memory_plan plan_fixed_layers(memory_plan_inputs in, std::int64_t k, bool default_budget,
                                     const std::string& flag) {
  const std::size_t need = activation_sets_bytes(k, in.layers, in.layer_bytes);
  const std::size_t total = in.in_use_bytes + in.scratch_bytes + need;
  if (default_budget) in.budget_bytes = std::max(in.budget_bytes, total);
  if (total > in.budget_bytes) {
    throw error("--memory-budget-gib: " + flag + " needs " + format_gib(total) + ", above the budget");
  }
  memory_plan p;
  p.saved_layers = k;
  p.activation_bytes = need;
  p.weight_cache_bytes = std::min(in.budget_bytes - total, in.max_cache_bytes);
  p.budget_bytes = in.budget_bytes;
  return p;
}

// The largest pass size in [lo, hi] that fits(size) accepts, for a fits that is monotone (a larger
// pass never needs less memory); 0 when not even lo fits. hi is tried first (a budget that holds
// the whole pass costs one try), then bisection until the boundary is known to within `step`.
// The size is tokens for packed passes (fewer passes: each forms every quantized weight once and
// recomputes every layer it does not save) or sequences for split batches.
template <class Fits>
std::int64_t largest_fitting_pass(std::int64_t lo, std::int64_t hi, std::int64_t step, Fits&& fits) {
  if (lo > hi) return 0;
  if (fits(hi)) return hi;
  std::int64_t good = lo - 1, bad = hi;  // fits(good) held (or good < lo); fits(bad) did not
  while (bad - good > std::max<std::int64_t>(step, 1)) {
    const std::int64_t mid = good + (bad - good) / 2;
    (fits(mid) ? good : bad) = mid;
  }
  if (good >= lo) return good;
  return lo < bad && fits(lo) ? lo : 0;
}

// The smallest pass size in [lo, hi] that needs no more passes than hi, for a passes(size) that
// does not grow with the size (packing whole sequences: 128 sequences of 512 tokens take 26
// passes of up to 2,751 tokens or of 2,560). The memory a smaller pass leaves keeps layers'
// activations and quantized weights instead. Bisection; the result never needs more passes.
template <class Passes>
std::int64_t smallest_pass_with_passes_of(std::int64_t lo, std::int64_t hi, Passes&& passes) {
  const std::int64_t most = passes(hi);
  std::int64_t bad = lo - 1, good = hi;  // passes(good) <= most; bad < lo or passes(bad) > most
  while (good - bad > 1) {
    const std::int64_t mid = bad + (good - bad) / 2;
    (passes(mid) <= most ? good : bad) = mid;
  }
  return good;
}

// Sequences per pass for a batch of `batch` rows when `most` fit: as few passes as `most`
// allows, with their rows spread evenly (8 rows, 6 fit: two passes of 4, not 6 + 2).
constexpr std::int64_t balanced_pass_rows(std::int64_t batch, std::int64_t most) {
  const std::int64_t passes = (batch + most - 1) / most;
  return (batch + passes - 1) / passes;
}

// What the driver does when a budget cannot hold even the smallest pass: the default budget (half
// of ModelOpt's estimated peak) is dropped for the plan without a budget, since any slower plan
// would miss it as well; a budget the user gave is refused with its minimum.
enum class budget_step { drop_budget, refuse };

constexpr budget_step when_nothing_fits(bool default_budget) {
  return default_budget ? budget_step::drop_budget : budget_step::refuse;
}

}  // namespace aq::autoquant
