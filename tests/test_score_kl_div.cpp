// The kl_div scorer: −Σ p log q over every token (padding included) and the vocabulary, with only
// one group quantized. Checked against an independent run of the model whose group weights were
// replaced by fake-quantized copies (weight-only recipes), with the sum in fp64: rel. error ≤ 1e-9.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/engine/engine.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/recipes.hpp"
#include "aq/search/search_space.hpp"

#include "cli/default_model.hpp"

namespace test_score_kl_div {

namespace {

using namespace aq;

qwen3_vl::config tiny_config() {
  qwen3_vl::config cfg = autoquant::default_model_config();
  cfg.text.vocab_size = 89;
  cfg.text.hidden_size = 32;
  cfg.text.intermediate_size = 48;
  cfg.text.head_dim = 8;
  cfg.text.mrope_section = {2, 1, 1};
  cfg.image_token_id = 80;
  return cfg;
}

std::vector<io::calib_batch> batches(std::int64_t vocab) {
  std::vector<std::string> captions{"a cat on a mat", "two dogs", "a red bus in the street at night", "snow"};
  const auto encode = [vocab](std::string_view text) {
    std::vector<std::int32_t> ids;
    for (const char c : text) ids.push_back(static_cast<std::int32_t>(static_cast<unsigned char>(c) % (vocab - 5)));
    return ids;
  };
  io::padding_options o;
  o.max_length = 40;
  o.pad_id = static_cast<std::int32_t>(vocab - 1);
  return io::make_text_calib_batches(captions, encode, 2, o);
}

double cross_entropy(const tensor& p_logits, const tensor& q_logits) {
  const const_matrix_view p = p_logits.matrix();
  const const_matrix_view q = q_logits.matrix();
  double total = 0.0;
  for (std::int64_t r = 0; r < p.rows; ++r) {
    double mp = -INFINITY, mq = -INFINITY;
    for (std::int64_t v = 0; v < p.cols; ++v) {
      mp = std::max(mp, static_cast<double>(p(r, v)));
      mq = std::max(mq, static_cast<double>(q(r, v)));
    }
    double sp = 0.0, sq = 0.0;
    for (std::int64_t v = 0; v < p.cols; ++v) {
      sp += std::exp(p(r, v) - mp);
      sq += std::exp(q(r, v) - mq);
    }
    for (std::int64_t v = 0; v < p.cols; ++v) {
      const double log_p = p(r, v) - mp - std::log(sp);
      const double log_q = q(r, v) - mq - std::log(sq);
      total -= std::exp(log_p) * log_q;
    }
  }
  return total;
}

template <class W>
void quantize_in_place(tensor& w) {
  const std::int64_t rows = w.dim(0);
  const std::int64_t cols = w.numel() / rows;
  quant::fake_quantize_weight<W>(std::span<const float>(w.storage()), std::span<float>(w.storage()), rows, cols);
}

}  // namespace

TEST_CASE("kl_div scores equal the cross-entropy of an independently quantized model, per group") {
  const qwen3_vl::config cfg = tiny_config();
  const autoquant::generated_model gm = autoquant::make_generated_model(cfg, 5);
  const qwen3_vl::vl_model model(cfg, gm.text, gm.vision);
  const std::vector<io::calib_batch> data = batches(cfg.text.vocab_size);
  const autoquant::model_runner runner = autoquant::make_model_runner(model, data);
  const std::vector<std::string> formats{"w4a16", "w8a16"};
  const autoquant::search_space space = autoquant::make_search_space(
      qwen3_vl::quantizable_modules(cfg), formats, autoquant::scope_patterns(autoquant::scope_preset::lm));
  score::calibrated_recipes calibration = autoquant::make_calibrated_recipes(space);
  autoquant::calibrate(runner, calibration, 2);
  const auto raw = autoquant::kl_div_scores(space, runner, calibration, 2);

  // Reference for layer 1's MLP gate/up group and for lm_head (tied: quantizing lm_head must not
  // touch the embedding, so the reference quantizes a separate untied head).
  const auto check_group = [&](const std::string& group_name, auto quantize_group) {
    std::size_t g = 0;
    while (space.groups[g].name != group_name) ++g;
    for (std::size_t c = 0; c < 2; ++c) {
      qwen3_vl::text_weights text = gm.text;
      qwen3_vl::config cfg_q = cfg;
      recipes::all_recipes::for_each([&]<class R>() {
        if (R::name == space.candidates[c].recipe->name) quantize_group.template operator()<typename R::weight>(text, cfg_q);
      });
      const qwen3_vl::vl_model quantized(cfg_q, text, gm.vision);
      const autoquant::model_runner q_runner = autoquant::make_model_runner(quantized, data);
      double expected = 0.0;
      for (std::size_t b = 0; b < 2; ++b) {
        expected += cross_entropy(runner.run(b, autoquant::model_pass::logits, nullptr).logits, q_runner.run(b, autoquant::model_pass::logits, nullptr).logits);
      }
      CHECK(raw[g][c] == doctest::Approx(expected).epsilon(1e-9));
      CHECK(raw[g][c] > 0.0);
    }
  };
  check_group("model.language_model.layers.1.mlp.gate_proj.quant_recipe",
              []<class W>(qwen3_vl::text_weights& t, qwen3_vl::config&) {
                quantize_in_place<W>(t.layers[1].gate_proj);
                quantize_in_place<W>(t.layers[1].up_proj);
              });
  check_group("lm_head.quant_recipe", []<class W>(qwen3_vl::text_weights& t, qwen3_vl::config& c) {
    t.lm_head = t.embed_tokens;
    c.tie_word_embeddings = false;
    quantize_in_place<W>(t.lm_head);
  });
  // Disabled (vision) groups are not scored; the more aggressive recipe scores higher on lm_head.
  for (std::size_t g = 0; g < space.groups.size(); ++g) CHECK(raw[g].empty() == !space.configurable(g));
  CHECK(raw.back()[0] > raw.back()[1]);
}

}  // namespace test_score_kl_div
