// Allocator timings: the exact DP (both paths) and the full Pareto front against the Lagrangian
// hull sweep measured in the same run, on a Qwen3-VL-4B-sized instance (250 groups x {4, 8, 16}
// bits, real weight counts) and a random 1000-group x 4-choice instance.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "aq/search/allocation_problem.hpp"
#include "aq/search/knapsack.hpp"
#include "../tests/support/lagrangian.hpp"
#include "aq/search/pareto.hpp"

namespace {

using aq::search::allocation_problem;
using aq::search::cost_t;

// Median wall time of `repeats` runs, in milliseconds.
template <class F>
double time_ms(int repeats, F&& f) {
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Qwen3-VL-4B's 250 groups in ModelOpt's candidate order (vision first, then 36 decoder layers,
// then lm_head) with {4, 8, 16}-bit choices; scores are synthetic (seeded) but shaped like the
// real ones: 4-bit worse than 8-bit, 16-bit free.
allocation_problem qwen3_vl_like(std::uint64_t seed) {
  std::vector<std::int64_t> numel;
  numel.push_back(1572864);  // patch_embed.proj
  for (int b = 0; b < 24; ++b) {
    for (std::int64_t n : {3145728, 1048576, 4194304, 4194304}) numel.push_back(n);
  }
  for (int m = 0; m < 4; ++m) {
    numel.push_back(16777216);
    numel.push_back(10485760);
  }
  for (int l = 0; l < 36; ++l) {
    for (std::int64_t n : {15728640, 10485760, 49807360, 24903680}) numel.push_back(n);
  }
  numel.push_back(388956160);  // lm_head
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> damage(0.0, 1.5);
  allocation_problem p;
  std::int64_t total = 0;
  for (std::int64_t n : numel) {
    const double s8 = damage(rng);
    const double s4 = s8 * (8.0 + 40.0 * std::uniform_real_distribution<double>(0.0, 1.0)(rng));
    p.add_group({{s4, 4 * n}, {s8, 8 * n}, {0.0, 16 * n}});
    total += n;
  }
  p.set_total_params(total);
  return p;
}

// 1000 groups x 4 choices {4, 6, 8, 16} bits, weight counts 1..64 x 2^16, random scores.
allocation_problem random_1000x4(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int64_t> blocks(1, 64);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  allocation_problem p;
  std::int64_t total = 0;
  for (int g = 0; g < 1000; ++g) {
    const std::int64_t n = blocks(rng) << 16;
    const double s8 = u(rng);
    const double s6 = s8 * (1.0 + 4.0 * u(rng));
    const double s4 = s6 * (1.0 + 4.0 * u(rng));
    p.add_group({{s4, 4 * n}, {s6, 6 * n}, {s8, 8 * n}, {0.0, 16 * n}});
    total += n;
  }
  p.set_total_params(total);
  return p;
}

void row(const char* name, const allocation_problem& p, double bits) {
  using namespace aq::search;
  const cost_t cap = capacity_for_bits(p.total_params(), bits);
  const knapsack_options dense{dp_path::dense_table, std::size_t{1} << 30};
  const knapsack_options lists{dp_path::pareto_list};
  allocation_result exact, by_lists;
  lagrangian_result lr;
  const double t_dense = time_ms(3, [&] { exact = solve_knapsack(p, cap, dense); });
  const double t_lists = time_ms(3, [&] { by_lists = solve_knapsack(p, cap, lists); });
  const double t_lagr = time_ms(21, [&] { lr = solve_lagrangian(p, cap); });
  std::size_t front_points = 0;
  const double t_front = time_ms(1, [&] { front_points = pareto_front(p).size(); });
  const bool agree = exact.selection == by_lists.selection && exact.total_score == by_lists.total_score;
  std::printf("| %-22s | %5zu | %5.2f | %9.3f | %9.3f | %9.3f | %9.1f | %9.1f | %12.3f | %6zu | %s | %.6g / %.6g / %.6g |\n", name,
              p.num_groups(), bits, t_dense, t_lists, t_lagr, t_dense / t_lagr, t_lists / t_lagr, t_front, front_points,
              agree ? "yes" : "NO ", lr.lower_bound, exact.total_score, lr.feasible.total_score);
}

}  // namespace

int main() {
  std::printf("Exact multiple-choice knapsack vs Lagrangian hull sweep (median ms; same run)\n\n");
  std::printf("| instance               | groups| bits  | dense DP  | list DP   | Lagrangian| dense/Lagr| list/Lagr | full front ms| points | same | LB / exact / greedy |\n");
  std::printf("|------------------------|-------|-------|-----------|-----------|-----------|-----------|-----------|--------------|--------|------|---------------------|\n");
  const allocation_problem qwen = qwen3_vl_like(1);
  for (double bits : {5.0, 8.74530701482171, 12.0}) row("qwen3-vl-like 250x3", qwen, bits);
  const allocation_problem random = random_1000x4(2);
  for (double bits : {6.0, 9.0, 12.0}) row("random 1000x4", random, bits);
  return 0;
}
