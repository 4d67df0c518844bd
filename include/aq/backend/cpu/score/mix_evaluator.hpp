// Closed-loop evaluation on the CPU: per held-out batch one unquantized forward keeps the
// reference logits, then every mix runs the batch with its modules quantized (quantized_mix_forward)
// and adds its mix_metrics over the rows that have a next-token label.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/model_runner.hpp"
#include "aq/backend/cpu/score/calibrated_recipes.hpp"
#include "aq/backend/cpu/score/quantized_mix_forward.hpp"
#include "aq/core/error.hpp"
#include "aq/core/progress.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"
#include "aq/model/causal_lm_targets.hpp"
#include "aq/score/mix_metrics.hpp"

namespace aq::score {

// The labelled rows of a batch and the reference summary of each.
struct reference_rows {
  std::vector<std::int64_t> rows;
  std::vector<std::int64_t> labels;
  std::vector<row_summary> summaries;
};

inline reference_rows labelled_reference_rows(const const_matrix_view& p, const lm_targets& targets) {
  if (static_cast<std::int64_t>(targets.target.size()) != p.rows) {
    throw error("evaluation: " + std::to_string(targets.target.size()) + " targets for " + std::to_string(p.rows) +
                " logit rows");
  }
  reference_rows ref;
  for (std::int64_t r = 0; r < p.rows; ++r) {
    const std::int64_t y = targets.target[static_cast<std::size_t>(r)];
    if (y == ignore_index) continue;
    ref.rows.push_back(r);
    ref.labels.push_back(y);
  }
  ref.summaries.resize(ref.rows.size());
  default_thread_pool().parallel_for(static_cast<std::int64_t>(ref.rows.size()), 4, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) ref.summaries[static_cast<std::size_t>(i)] = summarize_row(p.row(ref.rows[static_cast<std::size_t>(i)]), p.cols);
  });
  return ref;
}

// Σ of token_metrics over the labelled rows; per-row terms are summed in row order so the result
// does not depend on the thread count.
inline mix_metrics batch_mix_metrics(const const_matrix_view& p, const reference_rows& ref, const const_matrix_view& q) {
  if (q.rows != p.rows || q.cols != p.cols) throw error("evaluation: quantized logits differ in shape from the reference");
  std::vector<mix_metrics> per_row(ref.rows.size());
  default_thread_pool().parallel_for(static_cast<std::int64_t>(ref.rows.size()), 4, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const auto k = static_cast<std::size_t>(i);
      per_row[k] = token_metrics(p.row(ref.rows[k]), ref.summaries[k], q.row(ref.rows[k]), p.cols, ref.labels[k]);
    }
  });
  mix_metrics sum;
  for (const mix_metrics& m : per_row) sum += m;
  return sum;
}

// Every mix over every batch of `eval` (batch outer: one reference held at a time); a mix that
// quantizes nothing is measured on the reference logits themselves.
inline std::vector<mix_metrics> measure_mixes(const autoquant::model_runner& eval, calibrated_recipes& calibration,
                                              const std::vector<module_mix>& mixes,
                                              const autoquant::progress_callback& progress = {}) {
  if (eval.num_batches == 0) throw error("evaluation: no held-out batches");
  std::vector<mix_metrics> out(mixes.size());
  quantized_mix_forward observer(calibration);
  const std::size_t total = eval.num_batches * mixes.size();
  std::size_t done = 0;
  if (progress) progress("evaluation", 0, total);
  for (std::size_t b = 0; b < eval.num_batches; ++b) {
    const tensor p = eval.run(b, autoquant::model_pass::logits, nullptr).logits;
    const reference_rows ref = labelled_reference_rows(p.matrix(), eval.targets.at(b));
    for (std::size_t i = 0; i < mixes.size(); ++i) {
      if (quantizes_nothing(mixes[i], calibration.num_recipes())) {
        out[i] += batch_mix_metrics(p.matrix(), ref, p.matrix());
      } else {
        observer.select(mixes[i]);
        const tensor q = eval.run(b, autoquant::model_pass::logits, &observer).logits;
        out[i] += batch_mix_metrics(p.matrix(), ref, q.matrix());
      }
      if (progress) progress("evaluation", ++done, total);
    }
  }
  return out;
}

}  // namespace aq::score
