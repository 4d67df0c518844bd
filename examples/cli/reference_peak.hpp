// ModelOpt's device memory peak for the run aq is about to make, estimated from the architecture:
// the default memory budget of aq-autoquant --device cuda is half of it.
//
// ModelOpt 0.39's auto_quantize on a Hugging Face Qwen3-VL holds the whole model in bf16 and scores
// with gradient checkpointing, so per token of its largest batch it keeps one bf16 hidden state per
// decoder layer plus the loss's logits path (bf16 logits, their fp32 copy, log-softmax and their
// gradients: about 20 bytes per vocabulary entry). Measured against torch's peak_allocated on the
// 2B, 4B and 8B shapes at 1,024 to 8,192 tokens a batch (benchmarks/modelopt/results/README.md,
// "Peak memory"), this is 0.91-0.99 of the real peak and never above it, so half of it is at most
// half of ModelOpt's. The vision tower's activations on image data are left out (a lower bound).
#pragma once

#include <cstddef>
#include <cstdint>

#include <aq/model/qwen3_vl/config.hpp>
#include <aq/model/qwen3_vl/parameters.hpp>

namespace aq::autoquant {

// Bytes ModelOpt keeps per token of a batch: the logits path and the checkpointed layer inputs.
inline double modelopt_bytes_per_token(const qwen3_vl::text_config& t) {
  constexpr double logits_bytes_per_entry = 20.0;
  constexpr double hidden_state_bytes = 2.0;  // bf16
  return logits_bytes_per_entry * static_cast<double>(t.vocab_size) +
         hidden_state_bytes * static_cast<double>(t.num_hidden_layers) * static_cast<double>(t.hidden_size);
}

// ModelOpt's estimated peak for batches of at most `batch_tokens` tokens (rows x sequence, padding
// included: ModelOpt runs every column).
inline double modelopt_peak_bytes(const qwen3_vl::config& cfg, std::int64_t batch_tokens) {
  const double weights = 2.0 * static_cast<double>(qwen3_vl::count_parameters(cfg).total);
  return weights + static_cast<double>(batch_tokens) * modelopt_bytes_per_token(cfg.text);
}

}  // namespace aq::autoquant
