// The device memory plan of aq-autoquant-cuda --memory-budget-gib: saved layers first, then the
// weight cache, never above the budget, and a clear error below the recompute minimum.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>

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

TEST_CASE("a budget too small for the run: fewer sequences a pass, then the default budget is dropped") {
  using aq::autoquant::budget_step;
  using aq::autoquant::when_budget_too_small;
  for (const bool default_budget : {false, true}) {
    CHECK(when_budget_too_small(default_budget, false, 8) == budget_step::halve_pass);
    CHECK(when_budget_too_small(default_budget, false, 2) == budget_step::halve_pass);
  }
  // One sequence a pass, or passes fixed by --micro-batch: nothing left to halve.
  CHECK(when_budget_too_small(true, false, 1) == budget_step::drop_budget);
  CHECK(when_budget_too_small(true, true, 4) == budget_step::drop_budget);
  CHECK(when_budget_too_small(false, false, 1) == budget_step::refuse);
  CHECK(when_budget_too_small(false, true, 4) == budget_step::refuse);
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
