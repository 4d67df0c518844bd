// The AutoQuant pipeline (engine.hpp) on a scoring backend whose scores and calibrated state are
// given: budget before any model work, step counts, group sums in module order, the clamp, the
// knapsack's choices and the quantizer-state export rule. No model runs.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/engine/engine.hpp"
#include "aq/score/monotone_clamp.hpp"
#include "aq/score/scoring_backend.hpp"
#include "aq/search/search_space.hpp"

namespace test_autoquant_pipeline {

namespace {

namespace autoquant = aq::autoquant;

const std::string layer = "model.language_model.layers.0.";

// q/k/v (one group), o_proj, and down_proj (disabled): 192 + 64 + 128 weights.
autoquant::search_space fake_space() {
  const std::vector<aq::quantizable_module> modules = {
      {layer + "self_attn.q_proj", aq::module_kind::linear, {8, 8}},
      {layer + "self_attn.k_proj", aq::module_kind::linear, {8, 8}},
      {layer + "self_attn.v_proj", aq::module_kind::linear, {8, 8}},
      {layer + "self_attn.o_proj", aq::module_kind::linear, {8, 8}},
      {layer + "mlp.down_proj", aq::module_kind::linear, {8, 16}},
  };
  const std::vector<std::string> formats{"int8_w8a8", "w4a16"};
  return autoquant::make_search_space(modules, formats, {"*down_proj"});
}

class fake_backend final : public autoquant::scoring_backend {
 public:
  std::vector<std::vector<double>> module_scores;  // [module][candidate]
  std::vector<std::vector<double>> kl_div;         // [group][candidate]
  std::vector<bool> ran;
  std::vector<autoquant::weight_amax> weights;     // [module * 2 + candidate]
  std::size_t batches = 3;
  std::vector<std::string> calls;

  std::size_t num_batches() const override { return batches; }
  void calibrate(std::size_t steps, const autoquant::progress_callback&) override {
    calls.push_back("calibrate " + std::to_string(steps));
  }
  std::vector<std::vector<double>> gradient_module_scores(std::size_t steps, const autoquant::progress_callback&) override {
    calls.push_back("gradient " + std::to_string(steps));
    return module_scores;
  }
  std::vector<std::vector<double>> kl_div_group_scores(std::size_t steps, const autoquant::progress_callback&) override {
    calls.push_back("kl_div " + std::to_string(steps));
    return kl_div;
  }
  bool module_ran(std::size_t m) const override { return ran.at(m); }
  autoquant::weight_amax weight_amax_of(std::size_t m, std::size_t c) const override { return weights.at(m * 2 + c); }
  float input_amax(std::size_t m) const override { return 0.5f + static_cast<float>(m); }
  // Mix i measures KL i/10 per token over 10 tokens, all agreeing.
  std::vector<aq::score::module_mix> measured;
  std::vector<aq::score::mix_metrics> measure_mixes(const std::vector<aq::score::module_mix>& mixes,
                                                    const autoquant::progress_callback&) override {
    calls.push_back("evaluate " + std::to_string(mixes.size()));
    measured = mixes;
    std::vector<aq::score::mix_metrics> out(mixes.size());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = {static_cast<double>(i), 10.0, 10, 10};
    return out;
  }
};

// Candidates by ascending bits: w4a16 (0), int8_w8a8 (1), NONE (2).
fake_backend make_backend() {
  fake_backend b;
  // q/k/v under w4a16 sum to 0 only in module order ((1e16 + 1) - 1e16); o_proj prefers int8.
  b.module_scores = {{1e16, 1.0}, {1.0, 2.0}, {-1e16, 3.0}, {5.0, 2.0}, {7.0, 7.0}};
  b.kl_div = {{4.0, 1.0}, {3.0, 2.0}, {}};
  b.ran = {true, true, false, true, true};
  for (std::size_t m = 0; m < 5; ++m) {
    b.weights.push_back({{1}, {10.0f * static_cast<float>(m)}});            // w4a16
    b.weights.push_back({{8, 1}, {10.0f * static_cast<float>(m) + 1.0f}});  // int8_w8a8
  }
  b.weights[1 * 2 + 0].values.clear();  // k_proj under w4a16: no weight amax
  return b;
}

autoquant::engine_options fake_options() {
  autoquant::engine_options o;
  o.effective_bits = 6.0;  // B' = (128 x 16 + 256 x 6) / 384 + 1e-3: q/k/v must take w4a16
  o.num_calib_steps = 5;
  o.num_score_steps = 2;
  return o;
}

}  // namespace

TEST_CASE("the pipeline sums module scores in module order, clamps, searches and exports the state") {
  const autoquant::search_space space = fake_space();
  REQUIRE(space.groups.size() == 3);
  REQUIRE(space.candidates.size() == 3);
  REQUIRE(std::string(space.candidates[0].recipe->name) == "w4a16");
  fake_backend backend = make_backend();
  const autoquant::autoquant_result r = autoquant::run_autoquant(space, backend, fake_options());

  CHECK(backend.calls == std::vector<std::string>{"calibrate 3", "gradient 2"});  // steps within the batches
  CHECK(r.num_calib_steps == 3);
  CHECK(r.num_score_steps == 2);
  CHECK(r.budget_bits == autoquant::adjusted_budget_bits(6.0, 384, 128));
  CHECK(r.raw_scores[0] == std::vector<double>{0.0, 6.0, 0.0});
  CHECK(r.raw_scores[1] == std::vector<double>{5.0, 2.0, 0.0});
  CHECK(r.raw_scores[2] == std::vector<double>{0.0});  // disabled: NONE only
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    CHECK(r.scores[g] == aq::score::monotone_clamp(r.raw_scores[g], aq::score::clamp_rule::modelopt_0_39));
  }
  CHECK(r.choices[2] == std::vector<std::size_t>{2});
  CHECK(r.chosen == std::vector<std::size_t>{0, 1, 2});

  // q_proj: w4a16 weight only; k_proj: empty weight amax; v_proj: never ran; o_proj: int8
  // weight and input; down_proj: NONE.
  REQUIRE(r.state.size() == 3);
  CHECK(r.state[0].name == layer + "self_attn.q_proj.weight_quantizer._amax");
  CHECK(r.state[0].values == std::vector<float>{0.0f});
  CHECK(r.state[1].name == layer + "self_attn.o_proj.weight_quantizer._amax");
  CHECK(r.state[1].shape == std::vector<std::int64_t>{8, 1});
  CHECK(r.state[1].values == std::vector<float>{31.0f});
  CHECK(r.state[2].name == layer + "self_attn.o_proj.input_quantizer._amax");
  CHECK(r.state[2].shape.empty());
  CHECK(r.state[2].values == std::vector<float>{3.5f});
}

TEST_CASE("the pipeline takes KL-div group scores as they come; an unreachable budget stops it before any work") {
  const autoquant::search_space space = fake_space();
  fake_backend backend = make_backend();
  autoquant::engine_options o = fake_options();
  o.method = autoquant::score_method::kl_div;
  const autoquant::autoquant_result r = autoquant::run_autoquant(space, backend, o);
  CHECK(backend.calls == std::vector<std::string>{"calibrate 3", "kl_div 2"});
  CHECK(r.raw_scores[0] == std::vector<double>{4.0, 1.0, 0.0});
  CHECK(r.raw_scores[1] == std::vector<double>{3.0, 2.0, 0.0});
  CHECK(r.report.scheme.method == "kl_div");

  fake_backend untouched = make_backend();
  o.effective_bits = 2.0;
  CHECK_THROWS_WITH_AS(autoquant::run_autoquant(space, untouched, o),
                       doctest::Contains("below the smallest reachable effective bits"), aq::error);
  CHECK(untouched.calls.empty());
  untouched.batches = 0;
  CHECK_THROWS_WITH_AS(autoquant::run_autoquant(space, untouched, fake_options()),
                       doctest::Contains("no calibration batches"), aq::error);
  CHECK(untouched.calls.empty());
}

TEST_CASE("one budget rule: the default, the adjustment and the check") {
  const autoquant::search_space space = fake_space();
  CHECK(autoquant::engine_options{}.effective_bits == autoquant::default_effective_bits);
  CHECK(autoquant::checked_budget_bits(space, 6.0, true) == autoquant::adjusted_budget_bits(6.0, 384, 128));
  CHECK(autoquant::checked_budget_bits(space, 9.0, false) == 9.0);
  CHECK_THROWS_WITH_AS(autoquant::checked_budget_bits(space, 6.0, false),
                       doctest::Contains("--effective-bits 6 is below the smallest reachable effective bits 8"),
                       aq::error);
}

TEST_CASE("evaluation after the search: every planned mix, each distinct selection measured once") {
  const autoquant::search_space space = fake_space();
  fake_backend backend = make_backend();
  autoquant::engine_options o = fake_options();
  o.evaluate = true;
  o.evaluation.pareto_points = 3;
  const autoquant::autoquant_result r = autoquant::run_autoquant(space, backend, o);
  REQUIRE(r.evaluation.has_value());
  CHECK(backend.calls.back().starts_with("evaluate "));
  const std::vector<aq::io::mix_evaluation>& mixes = r.evaluation->mixes;
  // unquantized, uniform w4a16, uniform int8_w8a8, chosen, then up to 3 Pareto points.
  REQUIRE(mixes.size() >= 4);
  CHECK(mixes[0].kind == aq::io::mix_kind::unquantized);
  CHECK(mixes[1].name == "uniform " + space.display(0));
  CHECK(mixes[2].name == "uniform " + space.display(1));
  CHECK(mixes[3].kind == aq::io::mix_kind::chosen);
  // Distinct selections only, in first-planned order; the disabled group always NONE.
  for (std::size_t i = 0; i < backend.measured.size(); ++i) {
    for (std::size_t j = i + 1; j < backend.measured.size(); ++j) CHECK(backend.measured[i] != backend.measured[j]);
    CHECK(backend.measured[i][4] == space.none_index());  // down_proj: disabled
  }
  CHECK(backend.measured.size() < mixes.size());  // the lowest Pareto point is uniform w4a16 here
  CHECK(backend.measured[0] == std::vector<std::size_t>(5, space.none_index()));
  CHECK(mixes[0].mean_kl == 0.0);
  CHECK(mixes[1].mean_kl == doctest::Approx(0.1));
  for (const aq::io::mix_evaluation& m : mixes) CHECK(m.top1_agreement == 1.0);
  CHECK(mixes[3].effective_bits == r.allocation.effective_bits);
  CHECK(mixes[3].predicted_score == r.allocation.total_score);
}

}  // namespace test_autoquant_pipeline
