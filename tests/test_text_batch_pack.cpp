// Packing trimmed text batches into passes: every row once and in order, its own batch's loss
// denominator, widened only on the left with its own ignored padding, passes within the token
// limit; and, on a tiny generated Qwen3-VL (fp32 CPU, SDPA masking), packed passes calibrate to
// the separate batches' amax.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "aq/backend/cpu/cross_entropy.hpp"
#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/core/error.hpp"
#include "aq/engine/engine.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"
#include "aq/model/qwen3_vl/text_batch_pack.hpp"
#include "aq/model/qwen3_vl/text_batch_padding.hpp"
#include "aq/search/search_space.hpp"

#include "cli/default_model.hpp"
#include "support/tiny_vl_config.hpp"

namespace test_text_batch_pack {

namespace {

using namespace aq;
using qwen3_vl::text_batch;

constexpr std::int64_t pad = 7;

// Row r: pads[r] padding tokens (id 7, label -100), then ids tag·1000 + 10·r + s.
text_batch padded_batch(const std::vector<std::int64_t>& pads, std::int64_t seq, std::int64_t tag) {
  text_batch b;
  b.batch = static_cast<std::int64_t>(pads.size());
  b.seq = seq;
  for (std::int64_t r = 0; r < b.batch; ++r) {
    for (std::int64_t s = 0; s < seq; ++s) {
      const bool is_pad = s < pads[static_cast<std::size_t>(r)];
      const std::int64_t id = tag * 1000 + 10 * r + s;
      b.input_ids.push_back(is_pad ? pad : id);
      b.attention_mask.push_back(is_pad ? 0 : 1);
      b.labels.push_back(is_pad ? cpu::ignore_index : id);
    }
  }
  b.position_ids = qwen3_vl::rope_position_ids(b.input_ids, b.attention_mask, b.batch, seq);
  return b;
}

std::int64_t targets(const text_batch& b) { return cpu::causal_lm_targets(b.labels, b.batch, b.seq, 1 << 20).count; }

}  // namespace

TEST_CASE("packing: rows in order, widened on the left with ignored padding, own loss denominators") {
  const std::vector<text_batch> batches = {qwen3_vl::trim_padding(padded_batch({5, 3}, 10, 1)),   // width 8
                                           qwen3_vl::trim_padding(padded_batch({2, 4, 6}, 8, 2)),  // width 7
                                           qwen3_vl::trim_padding(padded_batch({9}, 12, 3))};      // width 4
  REQUIRE(batches[0].seq == 8);
  REQUIRE(batches[1].seq == 7);
  REQUIRE(batches[2].seq == 4);
  const auto one = qwen3_vl::pack_text_batches(batches, 48);
  REQUIRE(one.size() == 1);
  const text_batch& p = one[0].batch;
  CHECK(p.batch == 6);
  CHECK(p.seq == 8);
  CHECK(one[0].row_targets == std::vector<std::int64_t>{targets(batches[0]), targets(batches[0]), targets(batches[1]),
                                                        targets(batches[1]), targets(batches[1]), targets(batches[2])});
  // Each row: the source row right-aligned, copies of its first (padding) token before it.
  std::int64_t row = 0, loss_targets = 0;
  for (const text_batch& b : batches) {
    for (std::int64_t r = 0; r < b.batch; ++r, ++row) {
      const std::int64_t extra = p.seq - b.seq;
      for (std::int64_t s = 0; s < p.seq; ++s) {
        const auto i = static_cast<std::size_t>(row * p.seq + s);
        const auto j = static_cast<std::size_t>(r * b.seq + std::max<std::int64_t>(s - extra, 0));
        if (s < extra) {
          CHECK(p.input_ids[i] == pad);
          CHECK(p.attention_mask[i] == 0);
          CHECK(p.labels[i] == cpu::ignore_index);
          for (int a = 0; a < 3; ++a) CHECK(p.position_ids[static_cast<std::size_t>(a) * p.input_ids.size() + i] == 1);
        } else {
          CHECK(p.input_ids[i] == b.input_ids[j]);
          CHECK(p.attention_mask[i] == b.attention_mask[j]);
          CHECK(p.labels[i] == b.labels[j]);
          for (int a = 0; a < 3; ++a) {
            CHECK(p.position_ids[static_cast<std::size_t>(a) * p.input_ids.size() + i] ==
                  b.position_ids[static_cast<std::size_t>(a) * b.input_ids.size() + j]);
          }
        }
      }
    }
    loss_targets += targets(b);
  }
  // The packed pass keeps every target (widening adds only ignored ones).
  CHECK(targets(p) == loss_targets);
  CHECK(p.position_ids == qwen3_vl::rope_position_ids(p.input_ids, p.attention_mask, p.batch, p.seq));
}

TEST_CASE("packing: passes stay within the token limit and keep every row once") {
  std::vector<text_batch> batches;
  for (std::int64_t i = 0; i < 5; ++i) batches.push_back(qwen3_vl::trim_padding(padded_batch({6 + i, 3 + i, 8}, 16, i)));
  std::int64_t rows = 0;
  for (const std::int64_t limit : {16, 30, 40, 100, 1000}) {
    CAPTURE(limit);
    const auto passes = qwen3_vl::pack_text_batches(batches, limit);
    std::vector<std::int64_t> first_ids;
    rows = 0;
    for (const auto& p : passes) {
      CHECK(p.batch.batch * p.batch.seq <= limit);
      CHECK(p.row_targets.size() == static_cast<std::size_t>(p.batch.batch));
      for (std::int64_t r = 0; r < p.batch.batch; ++r) {
        // The last token of each row identifies it (tag·1000 + 10·r + 15).
        first_ids.push_back(p.batch.input_ids[static_cast<std::size_t>((r + 1) * p.batch.seq - 1)]);
      }
      rows += p.batch.batch;
    }
    std::vector<std::int64_t> expected;
    for (std::int64_t i = 0; i < 5; ++i) {
      for (std::int64_t r = 0; r < 3; ++r) expected.push_back(i * 1000 + 10 * r + 15);
    }
    CHECK(first_ids == expected);
  }
  CHECK(rows == 15);
  CHECK(qwen3_vl::pack_text_batches(batches, 1000).size() == 1);
}

TEST_CASE("packing: a row without leading padding is never widened") {
  const text_batch unpadded = padded_batch({0, 0}, 6, 1);  // width 6, starts with real tokens
  const text_batch narrow = qwen3_vl::trim_padding(padded_batch({5}, 8, 2));  // width 4
  const text_batch wide = qwen3_vl::trim_padding(padded_batch({1}, 9, 3));    // width 9
  const auto passes = qwen3_vl::pack_text_batches(std::vector<text_batch>{unpadded, narrow, wide}, 100);
  // unpadded (6) + narrow widened to 6; wide (9) would widen the unpadded rows: a new pass.
  REQUIRE(passes.size() == 2);
  CHECK(passes[0].batch.batch == 3);
  CHECK(passes[0].batch.seq == 6);
  CHECK(passes[1].batch.batch == 1);
  CHECK(passes[1].batch.seq == 9);
  // A row whose first label counts cannot be widened either.
  text_batch counted = narrow;
  counted.labels[0] = 5;
  const auto split = qwen3_vl::pack_text_batches(std::vector<text_batch>{unpadded, counted}, 100);
  CHECK(split.size() == 2);
}

TEST_CASE("packing: bad arguments") {
  const std::vector<text_batch> batches = {padded_batch({2}, 8, 1)};
  CHECK_THROWS_AS(qwen3_vl::pack_text_batches(batches, 0), aq::error);
  CHECK_THROWS_AS(qwen3_vl::pack_text_batches(batches, 7), aq::error);  // one sequence is wider
  std::vector<text_batch> mixed = {padded_batch({2}, 8, 1), padded_batch({2}, 8, 2)};
  mixed[1].labels.clear();
  CHECK_THROWS_AS(qwen3_vl::pack_text_batches(mixed, 100), aq::error);
  mixed[1] = padded_batch({2}, 8, 2);
  mixed[1].input_ids.pop_back();
  CHECK_THROWS_AS(qwen3_vl::pack_text_batches(mixed, 100), aq::error);
}

TEST_CASE("planned pass shapes: a stage's odd one out runs without a plan of its own") {
  const auto passes = [](std::initializer_list<std::pair<std::int64_t, std::int64_t>> shapes) {
    std::vector<text_batch> out;
    for (const auto& [rows, seq] : shapes) {
      out.emplace_back();
      out.back().batch = rows;
      out.back().seq = seq;
    }
    return out;
  };
  // 128 sequences in passes of 5: 25 of [5, 512] and the last [3, 512].
  std::vector<text_batch> stage(25, passes({{5, 512}})[0]);
  stage.push_back(passes({{3, 512}})[0]);
  const std::vector<bool> planned = qwen3_vl::planned_pass_shapes(stage);
  CHECK(std::count(planned.begin(), planned.end(), true) == 25);
  CHECK_FALSE(planned.back());
  // No shape repeats (one pass, or widths that all differ): every pass keeps the library.
  CHECK(qwen3_vl::planned_pass_shapes(passes({{8, 512}})) == std::vector<bool>{true});
  CHECK(qwen3_vl::planned_pass_shapes(passes({{8, 40}, {6, 52}, {5, 61}})) == std::vector<bool>(3, true));
  // Two shapes that both repeat keep it; one that repeats beside two singles keeps it alone.
  CHECK(qwen3_vl::planned_pass_shapes(passes({{2, 64}, {4, 32}, {2, 64}, {4, 32}})) == std::vector<bool>(4, true));
  CHECK(qwen3_vl::planned_pass_shapes(passes({{2, 64}, {1, 64}, {2, 64}, {3, 64}})) ==
        std::vector<bool>{true, false, true, false});
  CHECK(qwen3_vl::planned_pass_shapes({}).empty());
}

TEST_CASE("packed passes calibrate to the separate batches' amax") {
  const qwen3_vl::config cfg = test_support::tiny_vl_config();
  const autoquant::generated_model gm = autoquant::make_generated_model(cfg, 4);
  const qwen3_vl::vl_model model(cfg, gm.text, gm.vision);
  std::vector<text_batch> batches;
  for (std::int64_t i = 0; i < 4; ++i) {
    text_batch b = padded_batch({10 + i, 14 - i, 12}, 20, i);
    for (auto& id : b.input_ids) id = id == pad ? 96 : id % 89;
    b.labels.clear();
    batches.push_back(b);
  }
  std::vector<text_batch> packed;
  for (auto& p : qwen3_vl::pack_text_batches(
           [&] {
             std::vector<text_batch> t;
             for (const text_batch& b : batches) t.push_back(qwen3_vl::trim_padding(b));
             return t;
           }(),
           1000)) {
    packed.push_back(std::move(p.batch));
  }
  REQUIRE(packed.size() == 1);
  const autoquant::search_space space = autoquant::make_search_space(
      qwen3_vl::quantizable_modules(cfg), std::vector<std::string>{"int8_w8a8", "fp8_e4m3"}, autoquant::scope_patterns(autoquant::scope_preset::lm));
  const auto amax = [&](const std::vector<text_batch>& data) {
    autoquant::model_runner runner;
    runner.num_batches = data.size();
    runner.run = [&](std::size_t i, autoquant::model_pass, qwen3_vl::linear_observer* observer) {
      qwen3_vl::run_options o;
      o.masked_rows = cpu::masked_row_policy::zero;
      o.backward = false;
      return model.run(data.at(i), nullptr, o, observer);
    };
    score::calibrated_recipes calibration = autoquant::make_calibrated_recipes(space);
    autoquant::calibrate(runner, calibration, static_cast<std::int64_t>(data.size()));
    std::vector<float> out;
    for (std::size_t m = 0; m < space.modules.size(); ++m) {
      if (calibration.has_input_amax(m)) out.push_back(calibration.input_amax(m));
    }
    return out;
  };
  const std::vector<float> separate = amax(batches), together = amax(packed);
  REQUIRE(separate.size() == together.size());
  REQUIRE(!separate.empty());
  for (std::size_t i = 0; i < separate.size(); ++i) CHECK(together[i] == doctest::Approx(separate[i]).epsilon(1e-6));
}

}  // namespace test_text_batch_pack
