// The targets of a causal LM's next-token loss, as transformers' ForCausalLMLoss shifts them:
// position s predicts labels[s+1], −100 is ignored. Host math shared by both backends' losses and
// by the batch packing that must keep the number of targets (the mean's denominator) unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "aq/core/error.hpp"

namespace aq {

inline constexpr std::int64_t ignore_index = -100;

// Per-row targets of a causal LM: target[b·seq + s] = labels[b·seq + s + 1], ignore_index where
// there is none; count = valid targets (the mean loss's denominator). `what` names the caller in
// errors (a label outside [0, vocab), labels not batch·seq long).
struct lm_targets {
  std::vector<std::int64_t> target;
  std::int64_t count = 0;
};

inline lm_targets causal_lm_targets(const std::vector<std::int64_t>& labels, std::int64_t batch, std::int64_t seq,
                                    std::int64_t vocab, const std::string& what = "causal_lm_targets") {
  if (static_cast<std::int64_t>(labels.size()) != batch * seq) {
    throw error(what + ": labels " + std::to_string(labels.size()) + " differ from batch*seq = " +
                std::to_string(batch * seq));
  }
  lm_targets t;
  t.target.assign(labels.size(), ignore_index);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t s = 0; s + 1 < seq; ++s) {
      const std::int64_t y = labels[static_cast<std::size_t>(b * seq + s + 1)];
      if (y == ignore_index) continue;
      if (y < 0 || y >= vocab) {
        throw error(what + ": label " + std::to_string(y) + " at row " + std::to_string(b) + ", position " +
                    std::to_string(s + 1) + " outside the vocabulary [0, " + std::to_string(vocab) + ")");
      }
      t.target[static_cast<std::size_t>(b * seq + s)] = y;
      ++t.count;
    }
  }
  return t;
}

// The targets of the positions that are tokens themselves (attention_mask 1): what an evaluation
// measures. With left padding, causal_lm_targets also counts the last padding position predicting
// the first token, which is no prediction from the text.
template <class Mask>
lm_targets attended_targets(lm_targets t, const std::vector<Mask>& attention_mask) {
  if (attention_mask.size() != t.target.size()) {
    throw error("attended_targets: attention_mask holds " + std::to_string(attention_mask.size()) + " entries for " +
                std::to_string(t.target.size()) + " targets");
  }
  for (std::size_t i = 0; i < t.target.size(); ++i) {
    if (attention_mask[i] == 0 && t.target[i] != ignore_index) {
      t.target[i] = ignore_index;
      --t.count;
    }
  }
  return t;
}

}  // namespace aq
