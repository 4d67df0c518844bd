// Closed-loop evaluation on a tiny generated Qwen3-VL (CPU engine): the metrics against a float64
// reference computed from the model's logits, the mixes the engine plans, KL of the unquantized
// model against itself, KL ordering by bits, a given mix, and byte-identical reruns.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/backend/cpu/score/quantized_mix_forward.hpp"
#include "aq/engine/engine.hpp"
#include "aq/engine/evaluation.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/score/rank_correlation.hpp"
#include "aq/search/scope.hpp"
#include "aq/search/search_space.hpp"

#include "cli/default_model.hpp"
#include "support/tiny_vl_config.hpp"

namespace test_evaluation {

namespace {

using namespace aq;

// Captions [first, first + count) of the small bundled set, byte-coded into the tiny vocabulary.
std::vector<io::calib_batch> caption_batches(std::int64_t vocab, std::size_t first, std::size_t count) {
  std::vector<std::string> lines =
      io::read_caption_lines(std::string(AQ_SOURCE_DIR) + "/data/captions/coco2017_captions_small.txt");
  lines = std::vector<std::string>(lines.begin() + static_cast<std::ptrdiff_t>(first),
                                   lines.begin() + static_cast<std::ptrdiff_t>(first + count));
  const auto encode = [vocab](std::string_view text) {
    std::vector<std::int32_t> ids;
    for (const char c : text) ids.push_back(static_cast<std::int32_t>(static_cast<unsigned char>(c) % (vocab - 10)));
    return ids;
  };
  io::padding_options o;
  o.max_length = 20;
  o.pad_id = static_cast<std::int32_t>(vocab - 1);
  return io::make_text_calib_batches(lines, encode, 4, o);
}

struct tiny_eval {
  qwen3_vl::config cfg = test_support::tiny_vl_config();
  autoquant::generated_model gm = autoquant::make_generated_model(cfg, 11);
  qwen3_vl::vl_model model{cfg, gm.text, gm.vision};
  std::vector<io::calib_batch> calib = caption_batches(cfg.text.vocab_size, 0, 8);
  std::vector<io::calib_batch> held_out = caption_batches(cfg.text.vocab_size, 8, 8);

  autoquant::search_space space(const std::vector<std::string>& formats) const {
    return autoquant::make_search_space(qwen3_vl::quantizable_modules(cfg), formats,
                                        autoquant::scope_patterns(autoquant::scope_preset::lm));
  }
  autoquant::autoquant_result run(const autoquant::search_space& s, double bits,
                                  std::optional<std::vector<std::size_t>> given = std::nullopt) const {
    autoquant::engine_options o;
    o.effective_bits = bits;
    o.num_calib_steps = 2;
    o.num_score_steps = 2;
    o.evaluate = true;
    o.given_selection = std::move(given);
    autoquant::cpu_scoring_backend backend(s, autoquant::make_model_runner(model, calib));
    backend.evaluate_on(autoquant::make_model_runner(model, held_out));
    return autoquant::run_autoquant(s, backend, o);
  }
};

// Mean KL(p‖q), perplexity and top-1 agreement over the labelled rows, straight from the
// definitions in long double.
struct reference_metrics {
  long double kl = 0, nll = 0, agree = 0, tokens = 0;
};

void add_reference(const tensor& p, const tensor& q, const lm_targets& targets, reference_metrics& out) {
  const std::int64_t vocab = p.shape().back();
  for (std::int64_t r = 0; r < p.shape().front(); ++r) {
    const std::int64_t y = targets.target[static_cast<std::size_t>(r)];
    if (y == ignore_index) continue;
    const float* pr = p.data() + r * vocab;
    const float* qr = q.data() + r * vocab;
    long double zp = 0, zq = 0;
    std::int64_t ap = 0, aq_ = 0;
    for (std::int64_t v = 0; v < vocab; ++v) {
      zp += std::exp(static_cast<long double>(pr[v]));
      zq += std::exp(static_cast<long double>(qr[v]));
      if (pr[v] > pr[ap]) ap = v;
      if (qr[v] > qr[aq_]) aq_ = v;
    }
    for (std::int64_t v = 0; v < vocab; ++v) {
      const long double lp = pr[v] - std::log(zp), lq = qr[v] - std::log(zq);
      out.kl += std::exp(lp) * (lp - lq);
    }
    out.nll += std::log(zq) - qr[y];
    out.agree += ap == aq_ ? 1 : 0;
    out.tokens += 1;
  }
}

const io::mix_evaluation& find_mix(const io::evaluation_report& r, const std::string& name) {
  for (const io::mix_evaluation& m : r.mixes) {
    if (m.name == name) return m;
  }
  FAIL("no mix named " << name);
  return r.mixes.front();
}

}  // namespace

TEST_CASE("Spearman correlation: perfect orders, ties get average ranks, too few pairs give none") {
  CHECK(*score::spearman({1, 2, 3, 4}, {10, 20, 30, 40}) == doctest::Approx(1.0));
  CHECK(*score::spearman({1, 2, 3, 4}, {4, 3, 2, 1}) == doctest::Approx(-1.0));
  CHECK(score::average_ranks({5, 1, 5, 2}) == std::vector<double>{3.5, 1, 3.5, 2});
  CHECK(*score::spearman({1, 2, 3, 4, 5}, {2, 1, 4, 3, 5}) == doctest::Approx(0.8));
  CHECK_FALSE(score::spearman({1, 2}, {1, 2}).has_value());
  CHECK_FALSE(score::spearman({1, 1, 1}, {1, 2, 3}).has_value());
}

TEST_CASE("evaluation plans unquantized, uniform, chosen and Pareto mixes, and measures them") {
  const tiny_eval t;
  const autoquant::search_space s = t.space({"fp8_e4m3", "int8_w8a8", "w4a16"});
  const autoquant::autoquant_result r = t.run(s, 6.0);
  REQUIRE(r.evaluation.has_value());
  const io::evaluation_report& e = *r.evaluation;
  REQUIRE(e.mixes.size() >= 5 + 1);
  CHECK(e.mixes[0].kind == io::mix_kind::unquantized);
  CHECK(e.mixes[1].name == "uniform " + s.display(0));
  CHECK(e.mixes[4].kind == io::mix_kind::chosen);
  CHECK(e.mixes.size() <= 5 + 5);
  for (std::size_t i = 5; i < e.mixes.size(); ++i) CHECK(e.mixes[i].kind == io::mix_kind::pareto);
  // The unquantized model against itself: exactly nothing lost.
  CHECK(e.mixes[0].mean_kl == 0.0);
  CHECK(e.mixes[0].top1_agreement == 1.0);
  CHECK(e.mixes[0].predicted_score == 0.0);
  // The chosen mix is the search's answer: same bits and score as the report says.
  CHECK(e.mixes[4].effective_bits == r.allocation.effective_bits);
  CHECK(e.mixes[4].predicted_score == r.allocation.total_score);
  for (const io::mix_evaluation& m : e.mixes) {
    CHECK(m.recipes.size() == s.groups.size());
    CHECK(m.perplexity > 1.0);
    if (m.kind != io::mix_kind::unquantized) CHECK(m.mean_kl > 0.0);
  }
  std::int64_t labelled = 0;
  for (const io::calib_batch& b : t.held_out) {
    for (std::int64_t row = 0; row < b.batch_size; ++row) {
      std::int64_t valid = 0;
      for (std::int64_t c = 0; c < b.seq_len; ++c) valid += b.labels[static_cast<std::size_t>(row * b.seq_len + c)] != -100;
      labelled += valid > 0 ? valid - 1 : 0;
    }
  }
  CHECK(e.data.tokens == labelled);
  CHECK(r.timings.evaluation > 0.0);
}

TEST_CASE("measured KL, perplexity and agreement equal a long-double reference from the logits") {
  const tiny_eval t;
  const autoquant::search_space s = t.space({"int8_w8a8", "w4a16"});
  autoquant::cpu_scoring_backend backend(s, autoquant::make_model_runner(t.model, t.calib));
  const autoquant::model_runner held_out = autoquant::make_model_runner(t.model, t.held_out);
  backend.evaluate_on(held_out);
  backend.calibrate(2, {});
  std::vector<std::size_t> chosen(s.groups.size(), s.none_index());
  for (std::size_t g = 0; g < chosen.size(); ++g) {
    if (s.configurable(g)) chosen[g] = g % 2;  // alternate int4 and int8 weights
  }
  const score::module_mix mix = autoquant::module_mix_of(s, chosen);
  const std::vector<score::mix_metrics> measured = backend.measure_mixes({mix}, {});

  score::calibrated_recipes calibration = autoquant::make_calibrated_recipes(s);
  autoquant::calibrate(autoquant::make_model_runner(t.model, t.calib), calibration, 2);
  score::quantized_mix_forward observer(calibration);
  observer.select(mix);
  reference_metrics ref;
  for (std::size_t b = 0; b < held_out.num_batches; ++b) {
    const tensor p = held_out.run(b, autoquant::model_pass::logits, nullptr).logits;
    const tensor q = held_out.run(b, autoquant::model_pass::logits, &observer).logits;
    add_reference(p, q, held_out.targets[b], ref);
  }
  REQUIRE(measured[0].tokens == static_cast<std::int64_t>(ref.tokens));
  CHECK(measured[0].mean_kl() > 0.0);
  CHECK(measured[0].mean_kl() == doctest::Approx(static_cast<double>(ref.kl / ref.tokens)).epsilon(1e-9));
  CHECK(measured[0].perplexity() == doctest::Approx(static_cast<double>(std::exp(ref.nll / ref.tokens))).epsilon(1e-12));
  CHECK(measured[0].agreements == static_cast<std::int64_t>(ref.agree));
}

TEST_CASE("uniform int4 weights lose more than uniform int8 weights") {
  const tiny_eval t;
  const autoquant::search_space s = t.space({"w8a16", "w4a16"});
  const io::evaluation_report e = *t.run(s, 8.0).evaluation;
  const io::mix_evaluation& int4 = find_mix(e, "uniform " + s.display(0));
  const io::mix_evaluation& int8 = find_mix(e, "uniform " + s.display(1));
  CHECK(int4.effective_bits < int8.effective_bits);
  CHECK(int4.mean_kl > 4.0 * int8.mean_kl);
  CHECK(int4.top1_agreement <= int8.top1_agreement);
}

TEST_CASE("a given mix replaces the search's answer in the reports and the evaluation") {
  const tiny_eval t;
  const autoquant::search_space s = t.space({"fp8_e4m3", "w4a16"});
  std::vector<std::size_t> given(s.groups.size(), s.none_index());
  for (std::size_t g = 0; g < given.size(); ++g) {
    if (s.configurable(g)) given[g] = 1;  // fp8 everywhere it may go
  }
  const autoquant::autoquant_result r = t.run(s, 6.0, given);
  CHECK(r.chosen == given);
  const io::mix_evaluation& chosen = find_mix(*r.evaluation, "chosen");
  const io::mix_evaluation& fp8 = find_mix(*r.evaluation, "uniform " + s.display(1));
  CHECK(chosen.mean_kl == fp8.mean_kl);
  CHECK(chosen.effective_bits == r.budget_bits);
  std::vector<std::size_t> wrong(s.groups.size() + 1, 0);
  CHECK_THROWS_WITH_AS(t.run(s, 6.0, wrong), doctest::Contains("recipes for"), aq::error);
}

TEST_CASE("evaluation reruns give identical numbers") {
  const tiny_eval t;
  const autoquant::search_space s = t.space({"int8_w8a8", "w4a16"});
  const io::evaluation_report a = *t.run(s, 6.0).evaluation;
  const io::evaluation_report b = *t.run(s, 6.0).evaluation;
  REQUIRE(a.mixes.size() == b.mixes.size());
  for (std::size_t i = 0; i < a.mixes.size(); ++i) {
    CHECK(a.mixes[i].mean_kl == b.mixes[i].mean_kl);
    CHECK(a.mixes[i].perplexity == b.mixes[i].perplexity);
    CHECK(a.mixes[i].recipes == b.mixes[i].recipes);
  }
}

}  // namespace test_evaluation
