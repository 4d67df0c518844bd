// Sequences of several (trimmed) text batches packed into fewer, fuller device passes. Once the
// padding that cannot change a score is gone (text_batch_padding.hpp), a caption batch is a few
// dozen tokens wide: packing every batch of a stage into passes of up to `max_tokens` tokens
// turns many weight-bound GEMMs into a few compute-bound ones. Rows keep their own loss
// denominator (their batch's target count), so every dL/dY is the one of the row's own batch.
// A row narrower than its pass is widened on the left with copies of its own first token, which
// must be padding (attention_mask 0, label ignored): under SDPA masking that is the same
// score-neutral padding trim_padding removes, so the caller must use SDPA masking too.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/model/causal_lm_targets.hpp"
#include "aq/model/qwen3_vl/batch.hpp"
#include "aq/model/qwen3_vl/text_batch_split.hpp"

namespace aq::qwen3_vl {

// Where a packed row came from: its batch's index in the packed span, and its row there.
struct packed_row_source {
  std::size_t batch = 0;
  std::int64_t row = 0;
};

struct packed_text_batch {
  text_batch batch;
  std::vector<std::int64_t> row_targets;  // per sequence: the loss denominator of its own batch
  std::vector<packed_row_source> sources;  // per sequence
};

// A second budget a pass must keep besides its tokens (the vision patches of image rows):
// cost[b][r] of row r of batch b, at most `limit` per pass. A row over the limit runs alone.
struct row_cost_limit {
  std::span<const std::vector<std::int64_t>> cost;
  std::int64_t limit = 0;
};

// Packs the rows of `batches` in order into passes of at most max_tokens tokens (rows × width).
// All batches must agree on having labels and on having explicit position_ids. A row whose
// width is below its pass's and whose first token is not padding starts a new pass instead. The
// per-row denominators are each batch's causal-LM target count (0 without labels). With a
// row_cost_limit, a pass also keeps the rows' summed cost within its limit.
inline std::vector<packed_text_batch> pack_text_batches(std::span<const text_batch> batches, std::int64_t max_tokens,
                                                        row_cost_limit costs = {}) {
  if (max_tokens <= 0) throw error("pack_text_batches: max_tokens must be positive");
  const bool costed = !costs.cost.empty();
  if (costed && costs.cost.size() != batches.size()) {
    throw error("pack_text_batches: " + std::to_string(costs.cost.size()) + " row cost lists for " +
                std::to_string(batches.size()) + " batches");
  }
  struct row_ref {
    const text_batch* b;
    std::int64_t row;
    std::int64_t targets;
    bool widenable;  // starts with padding whose label is ignored
    std::size_t index;  // of its batch
    std::int64_t cost;
  };
  std::vector<row_ref> rows;
  const bool labels = !batches.empty() && !batches.front().labels.empty();
  const bool positions = !batches.empty() && !batches.front().position_ids.empty();
  for (std::size_t i = 0; i < batches.size(); ++i) {
    const text_batch& b = batches[i];
    check_text_batch(b, "pack_text_batches: batch " + std::to_string(i));
    if (b.labels.empty() == labels || b.position_ids.empty() == positions) {
      throw error("pack_text_batches: batch " + std::to_string(i) + " differs from batch 0 in having labels or position_ids");
    }
    const std::int64_t targets =
        labels ? causal_lm_targets(b.labels, b.batch, b.seq, std::int64_t{1} << 62, "pack_text_batches").count : 0;
    if (costed && static_cast<std::int64_t>(costs.cost[i].size()) != b.batch) {
      throw error("pack_text_batches: batch " + std::to_string(i) + " has " + std::to_string(b.batch) + " rows but " +
                  std::to_string(costs.cost[i].size()) + " row costs");
    }
    for (std::int64_t r = 0; r < b.batch; ++r) {
      if (b.seq > max_tokens) {
        throw error("pack_text_batches: batch " + std::to_string(i) + " has sequences of " + std::to_string(b.seq) +
                    " tokens, above max_tokens " + std::to_string(max_tokens));
      }
      const auto first_token = static_cast<std::size_t>(r * b.seq);
      const bool widenable = b.attention_mask[first_token] == 0 && (!labels || b.labels[first_token] == ignore_index);
      rows.push_back({&b, r, targets, widenable, i, costed ? costs.cost[i][static_cast<std::size_t>(r)] : 0});
    }
  }

  // Greedy, in order: a row joins the open pass when every narrower row can be widened and the
  // pass stays within max_tokens.
  std::vector<std::pair<std::size_t, std::size_t>> spans;  // [first, last) row of each pass
  std::size_t first = 0;
  std::int64_t width = 0;      // of the open pass's rows
  std::int64_t cost = 0;       // of the open pass's rows
  bool all_widenable = true;   // every row of the open pass starts with padding
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const row_ref& r = rows[i];
    if (i > first) {
      const std::int64_t w = std::max(width, r.b->seq);
      const bool fits = static_cast<std::int64_t>(i - first + 1) * w <= max_tokens && (w == width || all_widenable) &&
                        (r.b->seq == w || r.widenable) && (!costed || cost + r.cost <= costs.limit);
      if (!fits) {
        spans.emplace_back(first, i);
        first = i;
        width = 0;
        cost = 0;
        all_widenable = true;
      }
    }
    width = std::max(width, r.b->seq);
    cost += r.cost;
    all_widenable = all_widenable && r.widenable;
  }
  if (first < rows.size()) spans.emplace_back(first, rows.size());

  std::vector<packed_text_batch> out;
  for (const auto& [lo, hi] : spans) {
    std::int64_t w = 0;
    for (std::size_t i = lo; i < hi; ++i) w = std::max(w, rows[i].b->seq);
    packed_text_batch p;
    p.batch.batch = static_cast<std::int64_t>(hi - lo);
    p.batch.seq = w;
    std::vector<std::int64_t> pos[3];
    for (std::size_t i = lo; i < hi; ++i) {
      const text_batch& b = *rows[i].b;
      const std::int64_t row0 = rows[i].row * b.seq, extra = w - b.seq, n = b.batch * b.seq;
      // The row's values in `from` (from `offset` on), after `extra` copies of `fill`.
      const auto append = [&](auto& to, const auto& from, auto fill, std::int64_t offset) {
        to.insert(to.end(), static_cast<std::size_t>(extra), fill);
        to.insert(to.end(), from.begin() + offset + row0, from.begin() + offset + row0 + b.seq);
      };
      append(p.batch.input_ids, b.input_ids, b.input_ids[static_cast<std::size_t>(row0)], 0);
      append(p.batch.attention_mask, b.attention_mask, std::uint8_t{0}, 0);
      if (labels) append(p.batch.labels, b.labels, ignore_index, 0);
      // Padding sits at position 1 on every axis, as rope_position_ids puts it.
      for (std::int64_t a = 0; a < 3 && positions; ++a) append(pos[a], b.position_ids, std::int64_t{1}, a * n);
      p.row_targets.push_back(rows[i].targets);
      p.sources.push_back({rows[i].index, rows[i].row});
    }
    for (const auto& axis : pos) p.batch.position_ids.insert(p.batch.position_ids.end(), axis.begin(), axis.end());
    out.push_back(std::move(p));
  }
  return out;
}

// Whether each pass's shape [rows, seq] earns a plan of its own from a library that plans per
// shape (cuDNN's attention: ~0.14 s a shape at 4B, more than a pass of aq's kernels costs): every
// shape the stage runs more than once, and every shape where none repeats; a shape run once
// beside repeated ones (a stage's short last pass) does not.
inline std::vector<bool> planned_pass_shapes(std::span<const text_batch> passes) {
  std::map<std::pair<std::int64_t, std::int64_t>, int> count;
  int most = 0;
  for (const text_batch& p : passes) most = std::max(most, ++count[{p.batch, p.seq}]);
  std::vector<bool> planned;
  for (const text_batch& p : passes) planned.push_back(most == 1 || count[{p.batch, p.seq}] > 1);
  return planned;
}

}  // namespace aq::qwen3_vl
