// The device memory plan of aq-autoquant-cuda --memory-budget-gib: saved layers first, then the
// weight cache, never above the budget, and a clear error below the recompute minimum.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "aq/core/error.hpp"

#include "cli/memory_plan.hpp"

namespace test_memory_plan {

namespace {

using aq::autoquant::memory_plan;
using aq::autoquant::memory_plan_inputs;
using aq::autoquant::plan_memory;

constexpr std::size_t GiB = std::size_t{1} << 30;

// The 4B shape at 8 x 512: 36 layers of 0.78 GiB, weights and fixed buffers ~9.5 GiB.
memory_plan_inputs four_b(std::size_t budget) {
  memory_plan_inputs in;
  in.budget_bytes = budget;
  in.in_use_bytes = 9 * GiB + GiB / 2;
  in.scratch_bytes = GiB;
  in.layer_bytes = 78 * GiB / 100;
  in.layers = 36;
  return in;
}


}  // namespace

TEST_CASE("memory plan: saved layers first, then the weight cache, within the budget") {
  CHECK(plan_memory(four_b(80 * GiB)).saved_layers == 36);  // everything fits on an 80 GB card
  for (std::size_t budget = 11 * GiB + GiB / 2; budget <= 80 * GiB; budget += GiB / 4) {
    const memory_plan_inputs in = four_b(budget);
    const memory_plan p = plan_memory(in);
    CAPTURE(budget);
    CHECK(in.in_use_bytes + in.scratch_bytes + p.activation_bytes + p.weight_cache_bytes <= budget);
    CHECK(p.activation_bytes == static_cast<std::size_t>(p.saved_layers + (p.saved_layers < 36 ? 1 : 0)) * in.layer_bytes);
    if (p.saved_layers < 36) {
      // One more saved layer would not have fit, and the cache only gets what is below that.
      CHECK(in.in_use_bytes + in.scratch_bytes + p.activation_bytes + in.layer_bytes > budget);
      CHECK(p.weight_cache_bytes < in.layer_bytes);
    }
  }
  const memory_plan all = plan_memory(four_b(60 * GiB));
  CHECK(all.saved_layers == 36);
  CHECK(all.activation_bytes == 36 * (78 * GiB / 100));  // no shared recompute set when all are saved
  CHECK(all.weight_cache_bytes == 60 * GiB - (9 * GiB + GiB / 2) - GiB - all.activation_bytes);
}

TEST_CASE("memory plan: the cache cap and the minimum") {
  memory_plan_inputs in = four_b(70 * GiB);
  in.max_cache_bytes = 2 * GiB;
  CHECK(plan_memory(in).weight_cache_bytes == 2 * GiB);
  in.max_cache_bytes = 0;
  CHECK(plan_memory(in).weight_cache_bytes == 0);

  const std::size_t minimum = 9 * GiB + GiB / 2 + GiB + 78 * GiB / 100;
  const memory_plan p = plan_memory(four_b(minimum));
  CHECK(p.saved_layers == 0);
  CHECK(p.weight_cache_bytes == 0);
  try {
    plan_memory(four_b(minimum - 1));
    FAIL("a budget below the minimum must throw");
  } catch (const aq::error& e) {
    const std::string what = e.what();
    CHECK(what.find("--memory-budget-gib") != std::string::npos);
    CHECK(what.find("minimum of 11.28 GiB") != std::string::npos);
    CHECK(what.find("weights and fixed buffers 9.50 GiB") != std::string::npos);
  }
}

TEST_CASE("--activations saved|recompute under a budget: the default grows, a given one refuses") {
  using aq::autoquant::plan_fixed_layers;
  // Recompute everything within 12 GiB: one shared set, the rest to the cache.
  const memory_plan r = plan_fixed_layers(four_b(12 * GiB), 0, false, "--activations recompute");
  CHECK(r.saved_layers == 0);
  CHECK(r.activation_bytes == 78 * GiB / 100);
  CHECK(r.weight_cache_bytes == 12 * GiB - (9 * GiB + GiB / 2) - GiB - r.activation_bytes);
  CHECK(r.budget_bytes == 12 * GiB);
  // Every layer saved: the default budget grows to exactly what that needs, with no cache.
  const memory_plan s = plan_fixed_layers(four_b(12 * GiB), 36, true, "--activations saved");
  CHECK(s.saved_layers == 36);
  CHECK(s.budget_bytes == 9 * GiB + GiB / 2 + GiB + 36 * (78 * GiB / 100));
  CHECK(s.weight_cache_bytes == 0);
  // A budget the user gave is refused, naming the flag and what it needs.
  try {
    plan_fixed_layers(four_b(12 * GiB), 36, false, "--activations saved");
    FAIL("a given budget below --activations saved must be refused");
  } catch (const aq::error& e) {
    CHECK(std::string(e.what()).find("--activations saved needs") != std::string::npos);
  }
  CHECK(plan_memory(four_b(12 * GiB)).budget_bytes == 12 * GiB);
}

TEST_CASE("the largest pass a budget holds: the whole pass first, then bisection") {
  using aq::autoquant::largest_fitting_pass;
  std::vector<std::int64_t> tried;
  const auto below = [&](std::int64_t limit) {
    return [&tried, limit](std::int64_t size) {
      tried.push_back(size);
      return size <= limit;
    };
  };
  // The whole pass fits: one try.
  CHECK(largest_fitting_pass(1, 8, 1, below(100)) == 8);
  CHECK(tried == std::vector<std::int64_t>{8});
  // Exact with step 1, for every boundary, in at most 1 + log2 tries.
  for (std::int64_t limit = 1; limit < 8; ++limit) {
    tried.clear();
    CHECK(largest_fitting_pass(1, 8, 1, below(limit)) == limit);
    CHECK(tried.size() <= 5);
  }
  // Tokens of a packed pass (the 4B s512 default: 4,096 did not fit, 3,136 did): within one step
  // of the boundary, never above it.
  for (const std::int64_t limit : {3136, 3100, 4095, 513}) {
    tried.clear();
    const std::int64_t got = largest_fitting_pass(512, 4096, 64, below(limit));
    CHECK(got <= limit);
    CHECK(got > limit - 64);
    CHECK(tried.size() <= 8);
  }
  // Not even the least fits: 0; the least alone fits: the least, however coarse the step.
  CHECK(largest_fitting_pass(512, 4096, 64, below(511)) == 0);
  CHECK(largest_fitting_pass(512, 4096, 1024, below(512)) == 512);
  CHECK(largest_fitting_pass(1, 1, 1, below(0)) == 0);
  CHECK(largest_fitting_pass(5, 4, 1, below(10)) == 0);
}

TEST_CASE("packed passes: the smallest size with as few passes as the largest that fits") {
  using aq::autoquant::smallest_pass_with_passes_of;
  // 128 sequences of 512 tokens, whole sequences a pass.
  const auto uniform = [](std::int64_t tokens) { return (128 + tokens / 512 - 1) / (tokens / 512); };
  CHECK(smallest_pass_with_passes_of(512, 2751, uniform) == 2560);  // 5 a pass: 26 passes
  CHECK(smallest_pass_with_passes_of(512, 4096, uniform) == 4096);
  CHECK(smallest_pass_with_passes_of(512, 512, uniform) == 512);
  // 5,888 tokens in any split: three passes from 1,963 tokens up.
  const auto even = [](std::int64_t tokens) { return (5888 + tokens - 1) / tokens; };
  CHECK(smallest_pass_with_passes_of(46, 2761, even) == 1963);
  CHECK(even(1963) == 3);
  CHECK(even(1962) == 4);
  // Never more passes than the top, even where passes() is not monotone.
  const auto bumpy = [](std::int64_t tokens) { return tokens % 7 == 0 ? std::int64_t{9} : 4 - tokens / 100; };
  for (std::int64_t hi = 1; hi < 400; hi += 13) CHECK(bumpy(smallest_pass_with_passes_of(1, hi, bumpy)) <= bumpy(hi));
}

TEST_CASE("split batches spread their rows evenly over the fewest passes") {
  using aq::autoquant::balanced_pass_rows;
  CHECK(balanced_pass_rows(8, 8) == 8);
  CHECK(balanced_pass_rows(8, 7) == 4);
  CHECK(balanced_pass_rows(8, 6) == 4);
  CHECK(balanced_pass_rows(8, 3) == 3);  // 3 + 3 + 2
  CHECK(balanced_pass_rows(8, 1) == 1);
  CHECK(balanced_pass_rows(7, 4) == 4);  // 4 + 3
  CHECK(balanced_pass_rows(1, 1) == 1);
}

TEST_CASE("a budget too small for the smallest pass: the default is dropped, a given one refused") {
  using aq::autoquant::budget_step;
  using aq::autoquant::when_nothing_fits;
  CHECK(when_nothing_fits(true) == budget_step::drop_budget);
  CHECK(when_nothing_fits(false) == budget_step::refuse);
}

TEST_CASE("the minimum is what the plan holds at the least") {
  const memory_plan_inputs in = four_b(80 * GiB);
  CHECK(aq::autoquant::minimum_bytes(in) == 9 * GiB + GiB / 2 + GiB + 78 * GiB / 100);
  memory_plan_inputs at_minimum = in;
  at_minimum.budget_bytes = aq::autoquant::minimum_bytes(in);
  CHECK(plan_memory(at_minimum).saved_layers == 0);
  at_minimum.budget_bytes -= 1;
  CHECK_THROWS_AS(plan_memory(at_minimum), aq::error);
}

}  // namespace test_memory_plan
