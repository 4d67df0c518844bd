// A text batch cut into micro-batches of whole sequences, so that a device pass holds fewer
// tokens (its activations, saved layer inputs and scratch shrink with it). Attention never crosses
// sequences, so the micro-batches compute the same rows; the loss mean must use the whole batch's
// target count (causal_lm_targets(...).count) for dL/dY to stay the same.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/model/qwen3_vl/batch.hpp"

namespace aq::qwen3_vl {

// Whether input_ids and attention_mask hold batch·seq entries, and labels and position_ids
// (3·batch·seq) too where given.
inline bool text_batch_sizes_match(const text_batch& b) {
  const std::int64_t n = b.batch * b.seq;
  return static_cast<std::int64_t>(b.input_ids.size()) == n && static_cast<std::int64_t>(b.attention_mask.size()) == n &&
         (b.labels.empty() || static_cast<std::int64_t>(b.labels.size()) == n) &&
         (b.position_ids.empty() || static_cast<std::int64_t>(b.position_ids.size()) == 3 * n);
}

// Throws, naming `what`, unless `b` holds at least one token and its sizes match.
inline void check_text_batch(const text_batch& b, const std::string& what) {
  if (b.batch <= 0 || b.seq <= 0 || !text_batch_sizes_match(b)) {
    throw error(what + ": input_ids/attention_mask/labels/position_ids do not match batch*seq = " +
                std::to_string(b.batch * b.seq));
  }
}

namespace detail {

// Sequences [row0, row0 + rows) of `b` from column col0 on, positions kept per axis (callers
// check the ranges).
inline text_batch text_batch_block(const text_batch& b, std::int64_t row0, std::int64_t rows, std::int64_t col0) {
  const std::int64_t n = b.batch * b.seq, width = b.seq - col0;
  const auto keep = [&](const auto& v, std::int64_t offset) {
    std::decay_t<decltype(v)> out;
    out.reserve(static_cast<std::size_t>(rows * width));
    for (std::int64_t r = row0; r < row0 + rows; ++r) {
      const auto first = v.begin() + offset + r * b.seq + col0;
      out.insert(out.end(), first, first + width);
    }
    return out;
  };
  text_batch out;
  out.batch = rows;
  out.seq = width;
  out.input_ids = keep(b.input_ids, 0);
  out.attention_mask = keep(b.attention_mask, 0);
  if (!b.labels.empty()) out.labels = keep(b.labels, 0);
  for (std::int64_t axis = 0; axis < 3 && !b.position_ids.empty(); ++axis) {
    const auto part = keep(b.position_ids, axis * n);
    out.position_ids.insert(out.position_ids.end(), part.begin(), part.end());
  }
  return out;
}

}  // namespace detail

// Sequences [row0, row0 + rows) of `b`, positions included when given.
inline text_batch text_batch_rows(const text_batch& b, std::int64_t row0, std::int64_t rows) {
  if (row0 < 0 || rows <= 0 || row0 + rows > b.batch) {
    throw error("text_batch_rows: rows [" + std::to_string(row0) + ", " + std::to_string(row0 + rows) +
                ") outside the batch of " + std::to_string(b.batch));
  }
  return detail::text_batch_block(b, row0, rows, 0);
}

// Micro-batches of at most `rows` sequences each (the last may be shorter), in order.
inline std::vector<text_batch> split_text_batch(const text_batch& b, std::int64_t rows) {
  if (rows <= 0) throw error("split_text_batch: rows per micro-batch must be positive");
  if (!text_batch_sizes_match(b)) {
    throw error("split_text_batch: input_ids/attention_mask/labels/position_ids do not match batch*seq = " +
                std::to_string(b.batch * b.seq));
  }
  std::vector<text_batch> out;
  for (std::int64_t r = 0; r < b.batch; r += rows) out.push_back(text_batch_rows(b, r, std::min(rows, b.batch - r)));
  return out;
}

}  // namespace aq::qwen3_vl
