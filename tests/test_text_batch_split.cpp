// Micro-batches of a text batch: whole sequences in order, positions sliced per axis, and the
// whole batch's target count for the loss mean.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "aq/backend/cpu/cross_entropy.hpp"
#include "aq/core/error.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"
#include "aq/model/qwen3_vl/text_batch_split.hpp"

namespace test_text_batch_split {

namespace {

using aq::qwen3_vl::text_batch;

text_batch make_batch(std::int64_t rows, std::int64_t seq) {
  text_batch b;
  b.batch = rows;
  b.seq = seq;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t s = 0; s < seq; ++s) {
      const bool pad = s < r;  // left padding grows with the row
      b.input_ids.push_back(pad ? 0 : 1000 * r + s);
      b.attention_mask.push_back(pad ? 0 : 1);
      b.labels.push_back(pad || (r == 2 && s == 4) ? -100 : 1000 * r + s);
    }
  }
  b.position_ids = aq::qwen3_vl::rope_position_ids(b.input_ids, b.attention_mask, rows, seq);
  return b;
}

// The loss's target count (the denominator a micro-batch must keep).
std::int64_t target_count(const text_batch& b) {
  return aq::cpu::causal_lm_targets(b.labels, b.batch, b.seq, std::int64_t{1} << 40).count;
}

}  // namespace

TEST_CASE("split_text_batch: whole sequences, in order, positions per axis") {
  const text_batch b = make_batch(5, 7);
  for (std::int64_t rows = 1; rows <= 6; ++rows) {
    CAPTURE(rows);
    const std::vector<text_batch> parts = aq::qwen3_vl::split_text_batch(b, rows);
    CHECK(parts.size() == static_cast<std::size_t>((5 + rows - 1) / rows));
    text_batch joined;
    std::int64_t targets = 0;
    for (const text_batch& p : parts) {
      CHECK(p.batch <= rows);
      CHECK(p.seq == 7);
      joined.input_ids.insert(joined.input_ids.end(), p.input_ids.begin(), p.input_ids.end());
      joined.attention_mask.insert(joined.attention_mask.end(), p.attention_mask.begin(), p.attention_mask.end());
      joined.labels.insert(joined.labels.end(), p.labels.begin(), p.labels.end());
      // A part's positions are what the model computes for the part alone (per-sequence RoPE).
      CHECK(p.position_ids == aq::qwen3_vl::rope_position_ids(p.input_ids, p.attention_mask, p.batch, p.seq));
      targets += target_count(p);
    }
    CHECK(joined.input_ids == b.input_ids);
    CHECK(joined.attention_mask == b.attention_mask);
    CHECK(joined.labels == b.labels);
    CHECK(targets == target_count(b));
  }
  // 5 rows of 7: targets are the labels at positions max(1, r) … 6 of row r (7 - max(1, r)), one
  // more ignored in row 2.
  CHECK(target_count(b) == 6 + 6 + (5 - 1) + 4 + 3);
}

TEST_CASE("split_text_batch: bad arguments") {
  text_batch b = make_batch(3, 4);
  CHECK_THROWS_AS(aq::qwen3_vl::split_text_batch(b, 0), aq::error);
  CHECK_THROWS_AS(aq::qwen3_vl::text_batch_rows(b, 2, 2), aq::error);
  b.labels.pop_back();
  CHECK_THROWS_AS(aq::qwen3_vl::split_text_batch(b, 1), aq::error);
}

}  // namespace test_text_batch_split
