// Next-token cross-entropy of a causal LM, as transformers' ForCausalLMLoss: the target of
// position s is labels[s+1] (the last position of each row has none), −100 is ignored, and the
// loss is the mean over the remaining targets. Also the logits gradient of that mean.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"
#include "aq/model/causal_lm_targets.hpp"

namespace aq::cpu {

// The shifted targets are shared with the CUDA loss (model/causal_lm_targets.hpp).
using aq::causal_lm_targets;
using aq::ignore_index;
using aq::lm_targets;

struct lm_loss {
  double loss = 0.0;          // NaN when no target is valid (as torch's mean over nothing)
  std::int64_t targets = 0;   // valid targets
};

// logits [batch·seq, vocab] (row b·seq + s); labels [batch·seq]. dlogits (same shape as logits,
// may be empty) receives (softmax − onehot)/targets on rows with a valid target, 0 elsewhere.
inline lm_loss causal_lm_loss(const const_matrix_view& logits, const std::vector<std::int64_t>& labels,
                              std::int64_t batch, std::int64_t seq, matrix_view* dlogits) {
  if (logits.rows != batch * seq || static_cast<std::int64_t>(labels.size()) != batch * seq) {
    throw error("causal_lm_loss: logits rows " + std::to_string(logits.rows) + " and labels " +
                std::to_string(labels.size()) + " differ from batch*seq = " + std::to_string(batch * seq));
  }
  const std::int64_t vocab = logits.cols;
  const lm_targets targets = causal_lm_targets(labels, batch, seq, vocab, "causal_lm_loss");
  const std::vector<std::int64_t>& target = targets.target;
  const std::int64_t count = targets.count;
  std::vector<double> per_row(static_cast<std::size_t>(batch * seq), 0.0);
  const float inv_count = count > 0 ? 1.0f / static_cast<float>(count) : 0.0f;
  default_thread_pool().parallel_for(logits.rows, 4, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t y = target[static_cast<std::size_t>(r)];
      float* grad = dlogits != nullptr ? dlogits->row(r) : nullptr;
      if (y == ignore_index) {
        if (grad != nullptr) std::fill(grad, grad + vocab, 0.0f);
        continue;
      }
      const float* z = logits.row(r);
      float m = -std::numeric_limits<float>::infinity();
      for (std::int64_t v = 0; v < vocab; ++v) m = std::max(m, z[v]);
      double sum = 0.0;
      for (std::int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(z[v] - m));
      const double lse = static_cast<double>(m) + std::log(sum);
      per_row[static_cast<std::size_t>(r)] = lse - z[y];
      if (grad != nullptr) {
        for (std::int64_t v = 0; v < vocab; ++v) {
          grad[v] = static_cast<float>(std::exp(static_cast<double>(z[v]) - lse)) * inv_count;
        }
        grad[y] -= inv_count;
      }
    }
  });
  lm_loss out;
  out.targets = count;
  double total = 0.0;
  for (const double v : per_row) total += v;  // fixed order: deterministic
  out.loss = count > 0 ? total / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
  return out;
}

}  // namespace aq::cpu
