// Leading padding a left-padded text batch can lose without changing calibration or gradient
// scores. Under SDPA masking (a query with no allowed key yields zeros), a padding token whose
// earlier keys are all padding has no attention input, so every such token of one id holds the
// same hidden state in every layer; no query attends to it (its key is masked), and its own
// target is ignored, so dL/dY is zero there and it adds nothing to a gradient score. Its only
// effect is one more copy of the same row in each max calibration. Columns [0, k) can therefore
// go as long as column k is still such a padding token in every row: it keeps that row's values
// (and, in the longest row, the loss of predicting the first real token). Only valid for
// duplicate-insensitive calibrators (max) and per-token sums weighted by dL/dY: not for a
// KL-divergence over all logits, nor under the eager (attend-all) masked-row policy.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "aq/core/error.hpp"
#include "aq/model/causal_lm_targets.hpp"
#include "aq/model/qwen3_vl/batch.hpp"
#include "aq/model/qwen3_vl/text_batch_split.hpp"

namespace aq::qwen3_vl {

// The largest k such that, in every row, columns [0, k] are padding (attention_mask 0) of the
// row's first id and the targets of positions [0, k) (labels [1, k]) are ignored. 0: nothing to drop.
inline std::int64_t droppable_padding_columns(const text_batch& b) {
  check_text_batch(b, "droppable_padding_columns");
  std::int64_t k = b.seq - 1;  // at least one column stays
  for (std::int64_t r = 0; r < b.batch && k > 0; ++r) {
    const std::int64_t row = r * b.seq;
    const std::int64_t pad_id = b.input_ids[static_cast<std::size_t>(row)];
    std::int64_t c = 0;  // first column that breaks the run of ignorable padding
    while (c <= k) {
      const auto i = static_cast<std::size_t>(row + c);
      const bool padding = b.attention_mask[i] == 0 && b.input_ids[i] == pad_id;
      const bool target_ignored = c == 0 || b.labels.empty() || b.labels[i] == ignore_index;
      if (!padding || !target_ignored) break;
      ++c;
    }
    k = std::min(k, c - 1);
  }
  return std::max<std::int64_t>(k, 0);
}

// `b` without its first `columns` columns (positions kept per axis, so the rotary angles of the
// kept tokens do not move).
inline text_batch drop_leading_columns(const text_batch& b, std::int64_t columns) {
  if (columns < 0 || columns >= b.seq) {
    throw error("drop_leading_columns: " + std::to_string(columns) + " of " + std::to_string(b.seq) + " columns");
  }
  return columns == 0 ? b : detail::text_batch_block(b, 0, b.batch, columns);
}

// The batch with every droppable padding column removed.
inline text_batch trim_padding(const text_batch& b) { return drop_leading_columns(b, droppable_padding_columns(b)); }

}  // namespace aq::qwen3_vl
