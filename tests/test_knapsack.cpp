// The allocator: exact multiple-choice knapsack (dense and list DP), its Pareto front and the
// Lagrangian cross-check, against brute-force enumeration and ModelOpt's committed Qwen3-VL runs.
#include <doctest/doctest.h>

#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/search/allocation_problem.hpp"
#include "aq/search/knapsack.hpp"
#include "support/lagrangian.hpp"
#include "aq/search/pareto.hpp"

namespace test_knapsack {

namespace {

using aq::search::allocation_problem;
using aq::search::allocation_result;
using aq::search::cost_t;
using aq::search::dp_path;
using aq::search::knapsack_options;
using aq::search::solver_path;

constexpr knapsack_options dense_only{dp_path::dense_table};
constexpr knapsack_options lists_only{dp_path::pareto_list};

// Four groups (the third disabled: one choice), W = 45 params; expected answers by enumeration.
constexpr allocation_problem small_problem() {
  allocation_problem p(45);
  p.add_group({{4.0, 40}, {1.0, 80}, {0.0, 160}});
  p.add_group({{2.0, 80}, {0.5, 160}, {0.0, 320}});
  p.add_group({{0.0, 80}});
  p.add_group({{8.0, 40}, {3.0, 80}, {0.0, 160}});
  return p;
}

constexpr bool small_answer_is(cost_t capacity, const knapsack_options& options, std::vector<std::uint32_t> sel,
                               double score, cost_t cost) {
  const allocation_result r = aq::search::solve_knapsack(small_problem(), capacity, options);
  return r.selection == sel && r.total_score == score && r.total_cost == cost && r.is_satisfied;
}

// 8 effective bits over 45 params = 360 param-bits.
static_assert(aq::search::capacity_for_bits(45, 8.0) == 360);
static_assert(small_answer_is(360, dense_only, {1, 0, 0, 1}, 6.0, 320));
static_assert(small_answer_is(360, lists_only, {1, 0, 0, 1}, 6.0, 320));
static_assert(small_answer_is(240, dense_only, {0, 0, 0, 0}, 14.0, 240));
static_assert(small_answer_is(600, lists_only, {2, 1, 0, 2}, 0.5, 560));
static_assert(aq::search::solve_knapsack_bits(small_problem(), 8.0).effective_bits == 320.0 / 45.0);
static_assert([] {
  const aq::search::pareto_front front(small_problem());
  const allocation_result at = front.at_capacity(400);
  return front[0].total_cost == 240 && front[0].total_score == 14.0 && front[front.size() - 1].total_score == 0.0 && front[front.size() - 1].total_cost == 720 &&
         at.selection == std::vector<std::uint32_t>{1, 0, 0, 2} && at.total_score == 3.0;
}());
static_assert([] {
  const auto lr = aq::search::solve_lagrangian(small_problem(), 360);
  return lr.lower_bound <= 6.0 && lr.feasible.total_score >= 6.0 && lr.feasible.total_cost <= 360;
}());

// ---------------------------------------------------------------------------------------------
// Brute force: every selection, enumerated in lexicographic order (first group most significant),
// score summed in group order as the solver and ModelOpt do.
struct enumerated {
  double score = 0.0;
  std::vector<std::uint32_t> selection;
};

// Best (score, then lexicographic) selection per exact total cost.
std::map<cost_t, enumerated> enumerate_all(const allocation_problem& p) {
  std::map<cost_t, enumerated> best;
  std::vector<std::uint32_t> sel(p.num_groups(), 0);
  while (true) {
    double score = 0.0;
    cost_t cost = 0;
    for (std::size_t g = 0; g < sel.size(); ++g) {
      score += p.score(g, sel[g]);
      cost += p.cost(g, sel[g]);
    }
    auto it = best.find(cost);
    if (it == best.end()) best.emplace(cost, enumerated{score, sel});
    else if (score < it->second.score) it->second = enumerated{score, sel};  // equal: earlier = lex smaller wins
    std::size_t g = sel.size();
    while (g > 0) {
      --g;
      if (++sel[g] < p.num_choices(g)) break;
      sel[g] = 0;
      if (g == 0) return best;
    }
    if (sel.empty()) return best;
  }
}

struct brute_answer {
  bool feasible = false;
  double score = 0.0;
  cost_t cost = 0;
  std::vector<std::uint32_t> selection;
};

brute_answer brute_force(const std::map<cost_t, enumerated>& all, cost_t capacity) {
  brute_answer a;
  for (const auto& [cost, e] : all) {
    if (cost > capacity) break;
    if (!a.feasible || e.score < a.score) {  // costs ascend: equal score keeps the cheaper
      a = {true, e.score, cost, e.selection};
    }
  }
  return a;
}

enum class score_mode { dyadic_ties, real_valued, integer_big_unit };

allocation_problem random_problem(std::mt19937_64& rng, score_mode mode) {
  std::uniform_int_distribution<int> groups(1, 10), choices(1, 4), small(0, 6), wide(0, 50), big(1, 8);
  std::uniform_real_distribution<double> real(0.0, 10.0);
  const double dyadic[] = {0.0, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0};
  const cost_t units[] = {1, 3, 1024, 262144};
  const cost_t unit = units[std::uniform_int_distribution<int>(0, 3)(rng)];
  allocation_problem p;
  const int n_groups = groups(rng);
  cost_t max_total = 0;
  for (int g = 0; g < n_groups; ++g) {
    const int n = choices(rng);
    std::vector<double> s;
    std::vector<cost_t> c;
    for (int r = 0; r < n; ++r) {
      switch (mode) {
        case score_mode::dyadic_ties:
          s.push_back(dyadic[std::uniform_int_distribution<int>(0, 7)(rng)]);
          c.push_back(unit * small(rng));
          break;
        case score_mode::real_valued:
          s.push_back(real(rng));
          c.push_back(unit * wide(rng));
          break;
        case score_mode::integer_big_unit:
          s.push_back(static_cast<double>(std::uniform_int_distribution<int>(0, 3)(rng)));
          c.push_back(262144 * big(rng) + 16384 * small(rng));
          break;
      }
    }
    max_total += *std::max_element(c.begin(), c.end());
    p.add_group(s, c);
  }
  p.set_total_params(max_total / 16 + 1);
  return p;
}

bool same_result(const allocation_result& a, const allocation_result& b) {
  return a.selection == b.selection && a.total_score == b.total_score && a.total_cost == b.total_cost &&
         a.capacity == b.capacity && a.effective_bits == b.effective_bits && a.is_satisfied == b.is_satisfied;
}

}  // namespace

TEST_CASE("the exact knapsack equals brute force on 1,200 random instances, both DP paths") {
  std::mt19937_64 rng(20240611);
  int instances = 0, budgets = 0, infeasible = 0, tight = 0, tied = 0;
  for (int i = 0; i < 1200; ++i) {
    const auto mode = static_cast<score_mode>(i % 3);
    const allocation_problem p = random_problem(rng, mode);
    const auto all = enumerate_all(p);
    const cost_t lo = all.begin()->first;
    const cost_t hi = all.rbegin()->first;
    std::vector<cost_t> caps = {lo, lo - 1, hi, hi + 7};
    std::uniform_int_distribution<cost_t> any(lo - (hi - lo) / 4 - 1, hi + (hi - lo) / 4 + 1);
    for (int k = 0; k < 4; ++k) caps.push_back(any(rng));
    // Exactly tight: the cost of a random selection.
    for (int k = 0; k < 2; ++k) {
      auto it = all.begin();
      std::advance(it, std::uniform_int_distribution<std::size_t>(0, all.size() - 1)(rng));
      caps.push_back(it->first);
    }
    const aq::search::pareto_front front_dense(p, dense_only);
    const aq::search::pareto_front front_lists(p, lists_only);
    for (cost_t cap : caps) {
      ++budgets;
      const brute_answer expect = brute_force(all, cap);
      if (!expect.feasible) {
        ++infeasible;
        CHECK_THROWS_AS(aq::search::solve_knapsack(p, cap, dense_only), aq::error);
        CHECK_THROWS_AS(aq::search::solve_knapsack(p, cap, lists_only), aq::error);
        CHECK_THROWS_AS(front_dense.at_capacity(cap), aq::error);
        CHECK_THROWS_AS(aq::search::solve_lagrangian(p, cap), aq::error);
        continue;
      }
      const allocation_result dense = aq::search::solve_knapsack(p, cap, dense_only);
      const allocation_result lists = aq::search::solve_knapsack(p, cap, lists_only);
      const allocation_result automatic = aq::search::solve_knapsack(p, cap);
      tight += expect.cost == cap;
      // Several selections reach the optimal score: the tie rule decides.
      int reaching = 0;
      for (const auto& [cost, e] : all) reaching += cost <= cap && e.score == expect.score;
      tied += reaching > 1;
      INFO("instance " << i << " capacity " << cap);
      CHECK(dense.selection == expect.selection);
      CHECK(dense.total_score == expect.score);  // bitwise: same summation order
      CHECK(dense.total_cost == expect.cost);
      CHECK(dense.is_satisfied);
      CHECK(dense.path == solver_path::dp_dense_table);
      CHECK(lists.path == solver_path::dp_pareto_list);
      CHECK(same_result(dense, lists));
      CHECK(same_result(dense, automatic));
      CHECK(same_result(dense, front_dense.at_capacity(cap)));
      CHECK(same_result(dense, front_lists.at_capacity(cap)));
      CHECK(dense.effective_bits == static_cast<double>(expect.cost) / static_cast<double>(p.total_params()));

      // Lagrangian: LB <= optimum <= greedy. The LB is an LP value summed in long double, the
      // optimum a double sum of <= 10 terms: tolerance 1e-12 relative to Σ max scores.
      const auto lr = aq::search::solve_lagrangian(p, cap);
      double scale = 1.0;
      for (std::size_t g = 0; g < p.num_groups(); ++g) {
        double m = 0.0;
        for (std::size_t r = 0; r < p.num_choices(g); ++r) m = std::max(m, p.score(g, r));
        scale += m;
      }
      CHECK(lr.lower_bound <= dense.total_score + 1e-12 * scale);
      CHECK(dense.total_score <= lr.feasible.total_score);
      CHECK(lr.feasible.total_cost <= cap);
      CHECK(lr.feasible.path == solver_path::lagrangian);
      for (double lambda : {0.0, 1e-6, 1e-3, 0.1, static_cast<double>(lr.multiplier)}) {
        CHECK(aq::search::lagrangian_dual(p, cap, lambda) <= dense.total_score + 1e-12 * scale);
      }
    }
    ++instances;
  }
  CHECK(instances == 1200);
  // The random budgets must actually cover every kind of case.
  CHECK(infeasible >= 1200);
  CHECK(tight >= 1200);
  CHECK(tied >= 500);
  MESSAGE(budgets << " budgets: " << infeasible << " infeasible, " << tight << " tight, " << tied << " tied");
}

TEST_CASE("the Pareto front equals brute-force enumeration of every selection") {
  std::mt19937_64 rng(77);
  for (int i = 0; i < 400; ++i) {
    const allocation_problem p = random_problem(rng, static_cast<score_mode>(i % 3));
    const auto all = enumerate_all(p);
    std::vector<std::pair<cost_t, enumerated>> expect;
    for (const auto& [cost, e] : all) {
      if (expect.empty() || e.score < expect.back().second.score) expect.emplace_back(cost, e);
    }
    for (const auto& options : {dense_only, lists_only}) {
      const aq::search::pareto_front front(p, options);
      INFO("instance " << i);
      REQUIRE(front.size() == expect.size());
      for (std::size_t k = 0; k < expect.size(); ++k) {
        CHECK(front[k].total_cost == expect[k].first);
        CHECK(front[k].total_score == expect[k].second.score);
        CHECK(front[k].effective_bits ==
              static_cast<double>(expect[k].first) / static_cast<double>(p.total_params()));
        CHECK(front.selection(k) == expect[k].second.selection);
      }
    }
  }
}

TEST_CASE("ties go to the lower cost, then to the lexicographically smallest indices in group order") {
  SUBCASE("equal scores: the cheaper selection wins even with a larger index") {
    allocation_problem p(100);
    p.add_group({{1.0, 64}, {1.0, 32}});
    p.add_group({{0.0, 16}, {0.0, 16}});
    const auto r = aq::search::solve_knapsack(p, 1000);
    CHECK(r.selection == std::vector<std::uint32_t>{1, 0});
    CHECK(r.total_cost == 48);
  }
  SUBCASE("equal score and cost: the first group decides (lexicographic, not last-group-first)") {
    // (0,1) and (1,0) both score 1 and cost 6; the prefixes sit at different cost cells.
    allocation_problem p(10);
    p.add_group({{0.0, 4}, {1.0, 2}});
    p.add_group({{0.0, 4}, {1.0, 2}});
    p.add_group({{0.0, 1}, {0.0, 1}});
    for (const auto& options : {dense_only, lists_only}) {
      const auto r = aq::search::solve_knapsack(p, 7, options);
      CHECK(r.selection == std::vector<std::uint32_t>{0, 1, 0});
      CHECK(r.total_score == 1.0);
      CHECK(r.total_cost == 7);
    }
  }
  SUBCASE("all-zero scores: every group takes its cheapest choice, first index among equal costs") {
    allocation_problem p(64);
    p.add_group({{0.0, 128}, {0.0, 64}, {0.0, 64}});
    p.add_group({{0.0, 32}, {0.0, 256}});
    const auto r = aq::search::solve_knapsack(p, 1 << 20);
    CHECK(r.selection == std::vector<std::uint32_t>{1, 0});
  }
  SUBCASE("the same problem gives byte-identical results every time and on every path") {
    std::mt19937_64 rng(5);
    const allocation_problem p = random_problem(rng, score_mode::dyadic_ties);
    const cost_t cap = aq::search::solve_knapsack(p, std::numeric_limits<cost_t>::max() / 4).total_cost;
    const auto first = aq::search::solve_knapsack(p, cap);
    for (int k = 0; k < 5; ++k) {
      CHECK(same_result(first, aq::search::solve_knapsack(p, cap, dense_only)));
      CHECK(same_result(first, aq::search::solve_knapsack(p, cap, lists_only)));
    }
  }
}

TEST_CASE("an infeasible budget throws aq::error naming the request and the minimum effective bits") {
  allocation_problem p(1000);
  p.add_group({{1.0, 4000}, {0.0, 16000}});  // 1000 params: 4 or 16 bits
  try {
    aq::search::solve_knapsack_bits(p, 3.5);
    FAIL("expected aq::error");
  } catch (const aq::error& e) {
    const std::string what = e.what();
    CHECK(what.find("infeasible") != std::string::npos);
    CHECK(what.find("budget of 3.5 effective bits") != std::string::npos);
    CHECK(what.find("minimum achievable is 4 effective bits") != std::string::npos);
  }
  CHECK(aq::search::solve_knapsack_bits(p, 4.0).selection == std::vector<std::uint32_t>{0});
  CHECK_THROWS_AS(aq::search::pareto_front(p).at_bits(3.999), aq::error);
}

TEST_CASE("invalid problems are rejected with the group and field named") {
  allocation_problem p(10);
  p.add_group({{std::numeric_limits<double>::quiet_NaN(), 4}});
  CHECK_THROWS_WITH_AS(aq::search::solve_knapsack(p, 100), doctest::Contains("scores[0][0] must be finite"),
                       aq::error);
  allocation_problem q(10);
  q.add_group({{1.0, -4}});
  CHECK_THROWS_WITH_AS(aq::search::solve_knapsack(q, 100), doctest::Contains("costs[0][0]"), aq::error);
  allocation_problem empty_params(0);
  empty_params.add_group({{1.0, 4}});
  CHECK_THROWS_AS(aq::search::solve_knapsack(empty_params, 100), aq::error);
  CHECK_THROWS_AS(aq::search::cost_from_compressed(0.5 / 16.0 + 1.0), aq::error);
  CHECK(aq::search::cost_from_compressed(3932160.0) == 62914560);
}

TEST_CASE("capacity_for_bits is the exact floor of params x bits") {
  // Expected values are floor(W * Fraction(bits)) computed with exact rationals.
  CHECK(aq::search::capacity_for_bits(4434886656, 8.74530701482171) == 38784445382);
  CHECK(aq::search::capacity_for_bits(4434886656, 8.0) == 35479093248);
  CHECK(aq::search::capacity_for_bits(1000, 0.1) == 100);
  CHECK(aq::search::capacity_for_bits(3, 1.0 / 3.0) == 0);  // the double 1/3 is below 1/3
  CHECK(aq::search::capacity_for_bits(10, 0.3) == 2);       // the double 0.3 is below 0.3
  CHECK(aq::search::capacity_for_bits(7, 0.0) == 0);
  CHECK_THROWS_AS(aq::search::capacity_for_bits(7, -1.0), aq::error);
}

TEST_CASE("the dense path is refused beyond max_dense_cells and automatic falls back to the list DP") {
  allocation_problem p(1 << 20);
  for (int g = 0; g < 40; ++g) p.add_group({{static_cast<double>(g % 7), 1000 + g}, {0.0, 3000 + 7 * g}});
  knapsack_options small{dp_path::automatic, 1000};
  const auto automatic = aq::search::solve_knapsack(p, 80000, small);
  CHECK(automatic.path == solver_path::dp_pareto_list);
  CHECK(same_result(automatic, aq::search::solve_knapsack(p, 80000)));
  knapsack_options forced{dp_path::dense_table, 1000};
  CHECK_THROWS_AS(aq::search::solve_knapsack(p, 80000, forced), aq::error);
  knapsack_options tiny_lists{dp_path::pareto_list, 1000, 50};
  CHECK_THROWS_WITH_AS(aq::search::solve_knapsack(p, 80000, tiny_lists), doctest::Contains("max_list_states"),
                       aq::error);
}

// ---------------------------------------------------------------------------------------------
// ModelOpt's committed runs: the exact solver must reproduce `autoquant_state.score` and
// `constraints.effective_bits` bit for bit (PuLP/CBC found the same optimum).
namespace {

struct manifest_problem {
  allocation_problem problem;
  double bits = 0.0;
  double score = 0.0;
  double effective_bits = 0.0;
  std::size_t groups = 0;
};

manifest_problem load_manifest(const std::string& relative) {
  simdjson::dom::parser parser;
  const simdjson::dom::element doc = parser.load(std::string(AQ_DATA_DIR) + "/reference/" + relative);
  manifest_problem m;
  m.bits = double(doc["scheme"]["auto_quantize_bits"]);
  m.score = double(doc["autoquant_state"]["score"]);
  m.effective_bits = double(doc["autoquant_state"]["constraints"]["effective_bits"]);
  std::int64_t params = 0;  // W_total = Σ NONE costs (numel x 1.0) over every group
  for (auto field : simdjson::dom::object(doc["layer_sensitivity"])) {
    std::vector<double> scores;
    std::vector<cost_t> costs;
    for (double s : simdjson::dom::array(field.value["scores"])) scores.push_back(s);
    for (double c : simdjson::dom::array(field.value["costs"])) costs.push_back(aq::search::cost_from_compressed(c));
    std::size_t r = 0;
    for (auto f : simdjson::dom::array(field.value["formats"])) {
      if (std::string_view(f).starts_with("NONE(")) params += costs[r] / 16;
      ++r;
    }
    m.problem.add_group(scores, costs);
    ++m.groups;
  }
  m.problem.set_total_params(params);
  return m;
}

}  // namespace

TEST_CASE("the exact solver reproduces ModelOpt's Qwen3-VL-4B runs bit for bit") {
  struct run {
    const char* manifest;
    std::size_t groups;
  };
  const run runs[] = {
      {"lm-only/wint8_aint4/wint8_aint4_autoquant_lm_quant_manifest.json", 250},
      {"lm-only/wint8_aint8/wint8_aint8_autoquant_lm_quant_manifest.json", 250},
      {"lm-only/wfp8_afp8/wfp8_afp8_autoquant_lm_quant_manifest.json", 250},
      {"lm-only/int8_lm_default_medium/int8_autoquant_lm_default_quant_manifest.json", 249},
      {"all-layers/int8_medium/int8_autoquant_all_layers_int8_quant_manifest.json", 250},
  };
  for (const run& r : runs) {
    const std::string name = r.manifest;
    INFO(name);
    const manifest_problem m = load_manifest(r.manifest);
    CHECK(m.groups == r.groups);
    const allocation_result best = aq::search::solve_knapsack_bits(m.problem, m.bits);
    CHECK(best.total_score == m.score);
    CHECK(best.effective_bits == m.effective_bits);
    CHECK(best.is_satisfied);
    CHECK(same_result(best, aq::search::solve_knapsack_bits(m.problem, m.bits, lists_only)));
    const aq::search::pareto_front front(m.problem);
    CHECK(same_result(best, front.at_bits(m.bits)));
    const auto lr = aq::search::solve_lagrangian_bits(m.problem, m.bits);
    CHECK(lr.lower_bound <= best.total_score * (1.0 + 1e-12));
    CHECK(best.total_score <= lr.feasible.total_score);
    MESSAGE(name << ": score " << best.total_score << ", effective bits " << best.effective_bits
                       << ", front of " << front.size() << " points (" << to_string(front.path())
                       << "), Lagrangian [" << lr.lower_bound << ", " << lr.feasible.total_score << "]");
  }
}

TEST_CASE("the wint8_aint4 front is monotone and ModelOpt's 4-bit floor is its first point") {
  const manifest_problem m = load_manifest("lm-only/wint8_aint4/wint8_aint4_autoquant_lm_quant_manifest.json");
  const aq::search::pareto_front front(m.problem);
  REQUIRE(front.size() > 10);
  for (std::size_t k = 1; k < front.size(); ++k) {
    CHECK(front[k].total_cost > front[k - 1].total_cost);
    CHECK(front[k].total_score < front[k - 1].total_score);
  }
  // Cheapest point: vision (disabled) at 16 bits, every LM group at 4 bits, lm_head included.
  CHECK(front[0].effective_bits ==
        static_cast<double>(front[0].total_cost) / static_cast<double>(m.problem.total_params()));
  CHECK(front[front.size() - 1].total_score == 0.0);
  CHECK(front[front.size() - 1].effective_bits == 16.0);
}

}  // namespace test_knapsack
