// Dropping the leading padding of left-padded text batches: which columns may go, that the kept
// tokens keep their positions, and the claim behind it on a tiny generated Qwen3-VL (fp32 CPU,
// SDPA masking): every dropped token's X equals the kept padding token's X bit for bit and its
// dL/dY is exactly zero for every linear, so max calibration and gradient scores of trimmed
// batches equal those of the full ones (rel. 1e-5: only GEMM heights and fp32 sums differ).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/model_runner.hpp"
#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/core/error.hpp"
#include "aq/engine/engine.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"
#include "aq/model/qwen3_vl/text_batch_padding.hpp"
#include "aq/search/search_space.hpp"

#include "cli/default_model.hpp"
#include "support/tiny_vl_config.hpp"

namespace test_text_batch_padding {

namespace {

using namespace aq;
using qwen3_vl::text_batch;

constexpr std::int64_t pad = 7;

// Rows of `seq` tokens, row r left-padded with pads[r] tokens of id 7 (label -100).
text_batch padded_batch(const std::vector<std::int64_t>& pads, std::int64_t seq) {
  text_batch b;
  b.batch = static_cast<std::int64_t>(pads.size());
  b.seq = seq;
  for (std::int64_t r = 0; r < b.batch; ++r) {
    for (std::int64_t s = 0; s < seq; ++s) {
      const bool is_pad = s < pads[static_cast<std::size_t>(r)];
      b.input_ids.push_back(is_pad ? pad : 100 * (r + 1) + s);
      b.attention_mask.push_back(is_pad ? 0 : 1);
      b.labels.push_back(is_pad ? cpu::ignore_index : 100 * (r + 1) + s);
    }
  }
  b.position_ids = qwen3_vl::rope_position_ids(b.input_ids, b.attention_mask, b.batch, seq);
  return b;
}

qwen3_vl::config tiny_config() { return test_support::tiny_vl_config(); }

// Caption words hashed into the vocabulary, left-padded with id 96 to `seq`.
std::vector<io::calib_batch> caption_calib_batches(std::int64_t vocab, std::size_t samples, std::int64_t batch,
                                                   std::int64_t seq) {
  const std::vector<std::string> captions =
      io::read_caption_lines(std::string(AQ_SOURCE_DIR) + "/data/captions/coco2017_captions_small.txt", samples);
  const auto encode = [vocab](std::string_view text) {
    std::vector<std::int32_t> ids;
    std::uint64_t h = 1469598103934665603ull;
    for (const char c : text) {
      h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
      if (c == ' ') ids.push_back(static_cast<std::int32_t>(h % static_cast<std::uint64_t>(vocab - 10)));
    }
    return ids;
  };
  io::padding_options o;
  o.max_length = seq;
  o.pad_id = static_cast<std::int32_t>(vocab - 1);
  return io::make_text_calib_batches(captions, encode, batch, o);
}

std::vector<text_batch> caption_batches(std::int64_t vocab, std::size_t samples, std::int64_t batch, std::int64_t seq) {
  std::vector<text_batch> out;
  for (const io::calib_batch& b : caption_calib_batches(vocab, samples, batch, seq)) out.push_back(autoquant::to_text_batch(b));
  return out;
}

// Every linear's X (forward) and dL/dY (backward), keyed by module name.
struct recorder : qwen3_vl::linear_observer {
  std::map<std::string, tensor> x, dy;
  static tensor copy(const const_matrix_view& v) {
    tensor t({v.rows, v.cols});
    for (std::int64_t r = 0; r < v.rows; ++r) {
      for (std::int64_t c = 0; c < v.cols; ++c) t.matrix().row(r)[c] = v.row(r)[c];
    }
    return t;
  }
  void on_forward(const qwen3_vl::linear_call& c) override { x.insert_or_assign(std::string(c.name), copy(c.input)); }
  void on_backward(const qwen3_vl::linear_call& c) override { dy.insert_or_assign(std::string(c.name), copy(c.grad_output)); }
};

autoquant::model_runner runner_over(const qwen3_vl::vl_model& model, const std::vector<text_batch>& batches) {
  autoquant::model_runner runner;
  runner.num_batches = batches.size();
  runner.run = [&model, &batches](std::size_t i, autoquant::model_pass pass, qwen3_vl::linear_observer* observer) {
    const bool loss_backward = pass == autoquant::model_pass::gradient;
    text_batch b = batches.at(i);
    if (!loss_backward) b.labels.clear();
    qwen3_vl::run_options o;
    o.masked_rows = cpu::masked_row_policy::zero;
    o.backward = loss_backward;
    return model.run(std::move(b), nullptr, o, observer);
  };
  return runner;
}

}  // namespace

TEST_CASE("droppable padding: all but the last padding column shared by every row") {
  const text_batch b = padded_batch({5, 3, 7}, 10);
  CHECK(qwen3_vl::droppable_padding_columns(b) == 2);  // column 2 is the last padding of row 1
  const text_batch t = qwen3_vl::trim_padding(b);
  CHECK(t.batch == 3);
  CHECK(t.seq == 8);
  for (std::int64_t r = 0; r < 3; ++r) {
    for (std::int64_t s = 0; s < 8; ++s) {
      const auto i = static_cast<std::size_t>(r * 8 + s), j = static_cast<std::size_t>(r * 10 + s + 2);
      CHECK(t.input_ids[i] == b.input_ids[j]);
      CHECK(t.attention_mask[i] == b.attention_mask[j]);
      CHECK(t.labels[i] == b.labels[j]);
      for (std::int64_t a = 0; a < 3; ++a) CHECK(t.position_ids[static_cast<std::size_t>(a * 24) + i] == b.position_ids[static_cast<std::size_t>(a * 30) + j]);
    }
  }
  // The kept tokens' rotary positions are what the model computes for the trimmed batch itself.
  CHECK(t.position_ids == qwen3_vl::rope_position_ids(t.input_ids, t.attention_mask, t.batch, t.seq));
  // The loss keeps every target: only ignored labels went.
  CHECK(cpu::causal_lm_targets(t.labels, t.batch, t.seq, 1000).count == cpu::causal_lm_targets(b.labels, b.batch, b.seq, 1000).count);
}

TEST_CASE("droppable padding: nothing goes when a row is unpadded, a target is kept or the padding id changes") {
  CHECK(qwen3_vl::droppable_padding_columns(padded_batch({4, 0}, 6)) == 0);
  CHECK(qwen3_vl::droppable_padding_columns(padded_batch({1, 1}, 6)) == 0);  // the one padding column stays
  text_batch b = padded_batch({6, 6}, 9);
  CHECK(qwen3_vl::droppable_padding_columns(b) == 5);
  b.labels[3] = 50;  // position 2 of row 0 predicts a real label: positions 0..2 stay
  CHECK(qwen3_vl::droppable_padding_columns(b) == 2);
  b = padded_batch({6, 6}, 9);
  b.input_ids[9 + 4] = 8;  // row 1 switches padding id at column 4: columns 4.. differ from the kept one
  CHECK(qwen3_vl::droppable_padding_columns(b) == 3);
  b = padded_batch({6, 6}, 9);
  b.labels.clear();  // no loss: only the mask and the ids count
  CHECK(qwen3_vl::droppable_padding_columns(b) == 5);
  b.position_ids.clear();
  CHECK(qwen3_vl::trim_padding(b).position_ids.empty());
  CHECK(qwen3_vl::trim_padding(b).seq == 4);
}

TEST_CASE("droppable padding: bad batches are rejected") {
  text_batch b = padded_batch({2, 3}, 5);
  b.labels.pop_back();
  CHECK_THROWS_AS(qwen3_vl::droppable_padding_columns(b), aq::error);
  CHECK_THROWS_AS(qwen3_vl::drop_leading_columns(padded_batch({2}, 5), 5), aq::error);
  CHECK_THROWS_AS(qwen3_vl::drop_leading_columns(padded_batch({2}, 5), -1), aq::error);
}

TEST_CASE("dropped padding tokens carry the kept padding token's X and zero dL/dY in every linear") {
  const qwen3_vl::config cfg = tiny_config();
  const autoquant::generated_model gm = autoquant::make_generated_model(cfg, 5);
  const qwen3_vl::vl_model model(cfg, gm.text, gm.vision);
  const std::vector<text_batch> batches = caption_batches(cfg.text.vocab_size, 8, 4, 24);
  REQUIRE(batches.size() == 2);
  const autoquant::model_runner runner = runner_over(model, batches);
  int checked = 0;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const std::int64_t k = qwen3_vl::droppable_padding_columns(batches[b]);
    REQUIRE(k >= 8);  // short captions: most of each row is padding
    recorder rec;
    (void)runner.run(b, autoquant::model_pass::gradient, &rec);
    REQUIRE(rec.dy.size() == rec.x.size());
    for (const auto& [name, x] : rec.x) {
      const tensor& dy = rec.dy.at(name);
      for (std::int64_t r = 0; r < batches[b].batch; ++r) {
        const float* kept = x.matrix().row(r * 24 + k);
        for (std::int64_t c = 0; c < k; ++c) {
          const std::int64_t row = r * 24 + c;
          bool same_x = true, zero_dy = true;
          for (std::int64_t j = 0; j < x.dim(1); ++j) same_x = same_x && x.matrix().row(row)[j] == kept[j];
          for (std::int64_t j = 0; j < dy.dim(1); ++j) zero_dy = zero_dy && dy.matrix().row(row)[j] == 0.0f;
          CHECK_MESSAGE(same_x, name << " row " << r << " column " << c);
          CHECK_MESSAGE(zero_dy, name << " row " << r << " column " << c);
          ++checked;
        }
      }
    }
  }
  CHECK(checked > 1000);
}

TEST_CASE("trimmed batches give the full batches' calibration amax and gradient scores") {
  const qwen3_vl::config cfg = tiny_config();
  const autoquant::generated_model gm = autoquant::make_generated_model(cfg, 9);
  const qwen3_vl::vl_model model(cfg, gm.text, gm.vision);
  const std::vector<text_batch> full = caption_batches(cfg.text.vocab_size, 12, 4, 32);
  std::vector<text_batch> trimmed;
  std::int64_t tokens_full = 0, tokens_trimmed = 0;
  for (const text_batch& b : full) {
    trimmed.push_back(qwen3_vl::trim_padding(b));
    tokens_full += b.batch * b.seq;
    tokens_trimmed += trimmed.back().batch * trimmed.back().seq;
  }
  CHECK(2 * tokens_trimmed < tokens_full);
  const std::vector<std::string> formats{"int8_w8a8", "fp8_e4m3", "w4a8"};
  const autoquant::search_space space =
      autoquant::make_search_space(qwen3_vl::quantizable_modules(cfg), formats, autoquant::scope_patterns(autoquant::scope_preset::lm));
  const auto run = [&](const std::vector<text_batch>& batches, std::vector<float>& amax) {
    const autoquant::model_runner runner = runner_over(model, batches);
    score::calibrated_recipes calibration = autoquant::make_calibrated_recipes(space);
    autoquant::calibrate(runner, calibration, 3);
    for (std::size_t m = 0; m < space.modules.size(); ++m) {
      if (calibration.has_input_amax(m)) amax.push_back(calibration.input_amax(m));
    }
    return autoquant::gradient_scores(space, runner, calibration, 3);
  };
  std::vector<float> amax_full, amax_trimmed;
  const auto a = run(full, amax_full);
  const auto b = run(trimmed, amax_trimmed);
  REQUIRE(amax_full.size() == amax_trimmed.size());
  REQUIRE(!amax_full.empty());
  for (std::size_t i = 0; i < amax_full.size(); ++i) CHECK(amax_trimmed[i] == doctest::Approx(amax_full[i]).epsilon(1e-6));
  int compared = 0;
  double worst = 0.0;
  for (std::size_t g = 0; g < a.size(); ++g) {
    REQUIRE(a[g].size() == b[g].size());
    for (std::size_t r = 0; r < a[g].size(); ++r) {
      REQUIRE(a[g][r] > 0.0);
      CHECK_MESSAGE(std::abs(b[g][r] - a[g][r]) <= 1e-5 * a[g][r], space.groups[g].name << ": " << b[g][r] << " vs " << a[g][r]);
      worst = std::max(worst, std::abs(b[g][r] - a[g][r]) / a[g][r]);
      ++compared;
    }
  }
  CHECK(compared == 9 * 3);
  MESSAGE("tokens " << tokens_trimmed << " of " << tokens_full << ", worst relative score difference " << worst);
}

TEST_CASE("the CPU engine trims calibration and gradient passes only: same results as with every padding column") {
  const qwen3_vl::config cfg = tiny_config();
  const autoquant::generated_model gm = autoquant::make_generated_model(cfg, 13);
  const qwen3_vl::vl_model model(cfg, gm.text, gm.vision);
  const std::vector<io::calib_batch> batches = caption_calib_batches(cfg.text.vocab_size, 12, 4, 32);
  const autoquant::search_space space = autoquant::make_search_space(
      qwen3_vl::quantizable_modules(cfg), std::vector<std::string>{"int8_w8a8", "fp8_e4m3"},
      autoquant::scope_patterns(autoquant::scope_preset::lm));
  const autoquant::model_runner trimmed = autoquant::make_model_runner(model, batches);
  const autoquant::model_runner full = autoquant::make_model_runner(model, batches, cpu::masked_row_policy::zero, false);
  // Logits passes (KL-div) are never trimmed: every token's distribution counts.
  CHECK(trimmed.run(0, autoquant::model_pass::logits, nullptr).logits.storage() ==
        full.run(0, autoquant::model_pass::logits, nullptr).logits.storage());
  CHECK(trimmed.run(0, autoquant::model_pass::gradient, nullptr).targets ==
        full.run(0, autoquant::model_pass::gradient, nullptr).targets);
  for (const autoquant::score_method method : {autoquant::score_method::gradient, autoquant::score_method::kl_div}) {
    CAPTURE(autoquant::to_string(method));
    autoquant::engine_options e;
    e.method = method;
    e.effective_bits = 8.0;
    e.num_calib_steps = 3;
    e.num_score_steps = 3;
    autoquant::cpu_scoring_backend full_backend(space, full), trimmed_backend(space, trimmed);
    const autoquant::autoquant_result a = autoquant::run_autoquant(space, full_backend, e);
    const autoquant::autoquant_result b = autoquant::run_autoquant(space, trimmed_backend, e);
    CHECK(a.chosen == b.chosen);
    REQUIRE(a.raw_scores.size() == b.raw_scores.size());
    for (std::size_t g = 0; g < a.raw_scores.size(); ++g) {
      for (std::size_t r = 0; r < a.raw_scores[g].size(); ++r) {
        CHECK(b.raw_scores[g][r] == doctest::Approx(a.raw_scores[g][r]).epsilon(1e-5));
      }
    }
  }
}

}  // namespace test_text_batch_padding
