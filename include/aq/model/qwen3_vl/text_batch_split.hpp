// A text batch cut into micro-batches of whole sequences, so that a device pass holds fewer
// tokens (its activations, saved layer inputs and scratch shrink with it). Attention never crosses
// sequences, so the micro-batches compute the same rows; the loss mean must use the whole batch's
// target count (cpu::causal_lm_targets(...).count) for dL/dY to stay the same.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/model/qwen3_vl/text_model.hpp"

namespace aq::qwen3_vl {

// Sequences [row0, row0 + rows) of `b`, positions included when given.
inline text_batch text_batch_rows(const text_batch& b, std::int64_t row0, std::int64_t rows) {
  if (row0 < 0 || rows <= 0 || row0 + rows > b.batch) {
    throw error("text_batch_rows: rows [" + std::to_string(row0) + ", " + std::to_string(row0 + rows) +
                ") outside the batch of " + std::to_string(b.batch));
  }
  const std::int64_t n = b.batch * b.seq, first = row0 * b.seq, count = rows * b.seq;
  const auto slice = [&](const auto& v, std::int64_t offset) {
    using V = std::decay_t<decltype(v)>;
    return V(v.begin() + offset, v.begin() + offset + count);
  };
  text_batch out;
  out.batch = rows;
  out.seq = b.seq;
  out.input_ids = slice(b.input_ids, first);
  out.attention_mask = slice(b.attention_mask, first);
  if (!b.labels.empty()) out.labels = slice(b.labels, first);
  if (!b.position_ids.empty()) {
    for (std::int64_t axis = 0; axis < 3; ++axis) {
      const auto part = slice(b.position_ids, axis * n + first);
      out.position_ids.insert(out.position_ids.end(), part.begin(), part.end());
    }
  }
  return out;
}

// Micro-batches of at most `rows` sequences each (the last may be shorter), in order.
inline std::vector<text_batch> split_text_batch(const text_batch& b, std::int64_t rows) {
  if (rows <= 0) throw error("split_text_batch: rows per micro-batch must be positive");
  const std::int64_t n = b.batch * b.seq;
  if (static_cast<std::int64_t>(b.input_ids.size()) != n || static_cast<std::int64_t>(b.attention_mask.size()) != n ||
      (!b.labels.empty() && static_cast<std::int64_t>(b.labels.size()) != n) ||
      (!b.position_ids.empty() && static_cast<std::int64_t>(b.position_ids.size()) != 3 * n)) {
    throw error("split_text_batch: input_ids/attention_mask/labels/position_ids do not match batch*seq = " +
                std::to_string(n));
  }
  std::vector<text_batch> out;
  for (std::int64_t r = 0; r < b.batch; r += rows) out.push_back(text_batch_rows(b, r, std::min(rows, b.batch - r)));
  return out;
}

}  // namespace aq::qwen3_vl
