// The gradient scorer against a float64 brute force on a tiny generated Qwen3-VL: for every
// group and recipe, Σ_batches Σ_i (dL/dY)² (Y_r − Y)² recomputed from recorded X, Y, dL/dY with
// fp64 GEMMs and an independent per-element fake quantization. Tolerance: rel. error ≤ 1e-4
// (the engine's GEMMs and Y_r − Y are fp32; its sums fp64).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/model_runner.hpp"
#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/backend/cpu/score/gradient_scorer.hpp"
#include "aq/engine/engine.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/recipes.hpp"
#include "aq/score/monotone_clamp.hpp"
#include "aq/search/search_space.hpp"

#include "cli/default_model.hpp"
#include "support/tiny_vl_config.hpp"

namespace test_score_gradient {

namespace {

using namespace aq;

std::vector<io::calib_batch> tiny_batches(std::int64_t vocab, std::size_t samples, std::int64_t batch, std::int64_t seq) {
  std::vector<std::string> captions = io::read_caption_lines(std::string(AQ_SOURCE_DIR) + "/data/captions/coco2017_captions_small.txt", samples);
  const auto encode = [vocab](std::string_view text) {
    std::vector<std::int32_t> ids;
    std::uint64_t h = 1469598103934665603ull;
    for (const char c : text) {
      h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
      if (c == ' ') ids.push_back(static_cast<std::int32_t>(h % static_cast<std::uint64_t>(vocab - 10)));
    }
    ids.push_back(static_cast<std::int32_t>(h % static_cast<std::uint64_t>(vocab - 10)));
    return ids;
  };
  io::padding_options o;
  o.max_length = seq;
  o.pad_id = static_cast<std::int32_t>(vocab - 1);
  return io::make_text_calib_batches(captions, encode, batch, o);
}

// X (forward, all batches), and per batch X, Y, dL/dY of every linear, in fp32 as the model made them.
struct recorded_call {
  std::vector<float> x, y, g, w, bias;
  std::int64_t rows = 0, in = 0, out = 0;
};
struct recorder : qwen3_vl::linear_observer {
  std::map<std::string, std::vector<recorded_call>> calls;
  std::map<std::string, double> input_max;
  bool backward_phase = false;
  static std::vector<float> copy(const const_matrix_view& m) {
    std::vector<float> v;
    for (std::int64_t r = 0; r < m.rows; ++r) v.insert(v.end(), m.row(r), m.row(r) + m.cols);
    return v;
  }
  void on_forward(const qwen3_vl::linear_call& c) override {
    if (backward_phase) return;
    double& mx = input_max[std::string(c.name)];
    for (std::int64_t r = 0; r < c.input.rows; ++r)
      for (std::int64_t k = 0; k < c.input.cols; ++k) mx = std::max(mx, std::abs(static_cast<double>(c.input(r, k))));
  }
  void on_backward(const qwen3_vl::linear_call& c) override {
    recorded_call rc{copy(c.input), copy(c.output), copy(c.grad_output), copy(c.weight), {}, c.input.rows, c.input.cols,
                     c.output.cols};
    if (c.bias) rc.bias.assign(c.bias, c.bias + c.output.cols);
    calls[std::string(c.name)].push_back(std::move(rc));
  }
};

// Independent fake quantization: amax by direct loops, one element at a time with the format's
// per-element function; weight rows are the output channels, blocks 128 consecutive inputs.
template <class Q>
std::vector<double> reference_quantize_weight(const std::vector<float>& w, std::int64_t out, std::int64_t in) {
  using F = typename Q::format_type;
  using G = typename Q::granularity_type;
  std::vector<double> q(w.begin(), w.end());
  if constexpr (Q::enabled) {
    for (std::int64_t r = 0; r < out; ++r) {
      for (std::int64_t c = 0; c < in; ++c) {
        float amax = 0.0f;
        for (std::int64_t r2 = 0; r2 < out; ++r2) {
          for (std::int64_t c2 = 0; c2 < in; ++c2) {
            if (G::amax_index(r2, c2, in) == G::amax_index(r, c, in)) amax = std::max(amax, std::abs(w[r2 * in + c2]));
          }
        }
        q[r * in + c] = quant::fake_quantize<F>(w[r * in + c], amax, Q::narrow_range);
      }
    }
  }
  return q;
}

template <class Q>
double reference_quantize_input(float x, double amax) {
  if constexpr (Q::enabled) {
    return quant::fake_quantize<typename Q::format_type>(x, static_cast<float>(amax), Q::narrow_range);
  } else {
    return x;
  }
}

template <class R>
double brute_force_score(const std::vector<recorded_call>& calls, double input_amax) {
  if (calls.empty()) return 0.0;
  const std::vector<double> wq =
      reference_quantize_weight<typename R::weight>(calls[0].w, calls[0].out, calls[0].in);
  double total = 0.0;
  for (const recorded_call& c : calls) {
    std::vector<double> xq(c.x.size());
    for (std::size_t i = 0; i < c.x.size(); ++i) xq[i] = reference_quantize_input<typename R::input>(c.x[i], input_amax);
    double step = 0.0;
    for (std::int64_t t = 0; t < c.rows; ++t) {
      for (std::int64_t o = 0; o < c.out; ++o) {
        double yr = c.bias.empty() ? 0.0 : c.bias[o];
        for (std::int64_t k = 0; k < c.in; ++k) yr += xq[t * c.in + k] * wq[o * c.in + k];
        const double d = yr - c.y[t * c.out + o];
        const double g = c.g[t * c.out + o];
        step += g * g * d * d;
      }
    }
    total += step;
  }
  return total;
}

}  // namespace

TEST_CASE("gradient scores equal the fp64 brute force of sum (dL/dY)^2 (Y_r - Y)^2 for every group and recipe") {
  const qwen3_vl::config cfg = test_support::tiny_vl_config();
  const autoquant::generated_model gm = autoquant::make_generated_model(cfg, 7);
  const qwen3_vl::vl_model model(cfg, gm.text, gm.vision);
  const std::vector<io::calib_batch> batches = tiny_batches(cfg.text.vocab_size, 12, 4, 24);
  REQUIRE(batches.size() == 3);
  const autoquant::model_runner runner = autoquant::make_model_runner(model, batches);
  const std::vector<std::string> formats{"int8_w8a8", "fp8_e4m3", "w4a8", "w8a4", "w4a16"};
  const autoquant::search_space space =
      autoquant::make_search_space(qwen3_vl::quantizable_modules(cfg), formats, autoquant::scope_patterns(autoquant::scope_preset::lm));

  score::calibrated_recipes calibration = autoquant::make_calibrated_recipes(space);
  autoquant::calibrate(runner, calibration, 3);
  const auto raw = autoquant::gradient_scores(space, runner, calibration, 2);

  // The reference: calibration maxima over all 3 batches, scores over the first 2.
  recorder rec;
  for (std::size_t b = 0; b < 3; ++b) (void)runner.run(b, autoquant::model_pass::calibrate, &rec);
  rec.backward_phase = true;
  for (std::size_t b = 0; b < 2; ++b) (void)runner.run(b, autoquant::model_pass::gradient, &rec);

  double worst = 0.0;
  int compared = 0;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (!space.configurable(g)) {
      CHECK(raw[g].empty());
      continue;
    }
    for (std::size_t c = 0; c + 1 < space.candidates.size(); ++c) {
      double expected = 0.0;
      for (const std::size_t m : space.groups[g].members) {
        const std::string& name = space.modules[m].name;
        recipes::all_recipes::for_each([&]<class R>() {
          if (R::name == space.candidates[c].recipe->name) expected += brute_force_score<R>(rec.calls.at(name), rec.input_max.at(name));
        });
      }
      REQUIRE(expected > 0.0);
      const double rel = std::abs(raw[g][c] - expected) / expected;
      worst = std::max(worst, rel);
      ++compared;
      CHECK_MESSAGE(rel <= 1e-4, space.groups[g].name << " " << space.candidates[c].recipe->name << ": " << raw[g][c]
                                                      << " vs " << expected);
    }
  }
  CHECK(compared == 9 * 5);  // 2 layers x 4 groups + lm_head, 5 recipes
  MESSAGE("worst relative error vs fp64 brute force: " << worst);
}

TEST_CASE("gradient scores do not depend on the thread count") {
  const qwen3_vl::config cfg = test_support::tiny_vl_config();
  const autoquant::generated_model gm = autoquant::make_generated_model(cfg, 3);
  const qwen3_vl::vl_model model(cfg, gm.text, gm.vision);
  const std::vector<io::calib_batch> batches = tiny_batches(cfg.text.vocab_size, 8, 4, 16);
  const autoquant::model_runner runner = autoquant::make_model_runner(model, batches);
  const std::vector<std::string> formats{"int8_w8a8", "w8a4"};
  const autoquant::search_space space =
      autoquant::make_search_space(qwen3_vl::quantizable_modules(cfg), formats, autoquant::scope_patterns(autoquant::scope_preset::lm));
  const auto run = [&] {
    score::calibrated_recipes calibration = autoquant::make_calibrated_recipes(space);
    autoquant::calibrate(runner, calibration, 2);
    return autoquant::gradient_scores(space, runner, calibration, 2);
  };
  const auto threads = default_thread_pool().size();
  const auto many = run();
  default_thread_pool().resize(1);
  const auto one = run();
  default_thread_pool().resize(threads);
  CHECK(many == one);
}

}  // namespace test_score_gradient
