// What an attention call computes, independent of the backend that runs it: head layout, scale,
// causal + key-padding mask and what a fully masked query row yields. backend/cpu/attention.hpp
// and backend/cuda/kernels/attention.cuh both take this struct (as cpu:: and cuda:: names).
#pragma once

#include <cstdint>

namespace aq {

// What a query row with no allowed key (a left-padding slot under a causal + padding mask) gets.
// transformers' eager path adds the finite dtype minimum to every score, so such a row attends
// uniformly to all keys of its segment (and autograd sends gradients through that); torch's SDPA
// returns zeros for it and no gradient.
enum class masked_row_policy { attend_all, zero };

struct attention_config {
  std::int64_t heads = 0;
  std::int64_t kv_heads = 0;
  std::int64_t head_dim = 0;  // the CUDA kernels take 16, 32, 64 or 128
  float scale = 1.0f;
  bool causal = false;
  // Per row, 0 = masked key (padding); nullptr = all valid. In the backend's memory: host for
  // the CPU, device for CUDA.
  const std::uint8_t* key_valid = nullptr;
  masked_row_policy masked_rows = masked_row_policy::attend_all;
  // CUDA with bf16 storage only (the CPU backend has no tensor cores and ignores it): tile
  // products on the tensor cores (bf16 P and dS, as FlashAttention-2) instead of fp32 CUDA-core
  // math; needs 4-byte aligned rows (even ld, aligned base pointers).
  bool tensor_cores = false;
  // CUDA with tensor_cores only: hand calls the registered fused-attention library takes (cuDNN's
  // SDPA: equal segments, no key mask) to it instead of aq's kernels. Same semantics; its own
  // summation order, so results agree with aq's kernels to bf16 rounding, not bit for bit.
  bool fused_library = false;
  std::int64_t fused_workspace_limit = 0;  // bytes the library may hold (0: no limit)
};

// Rows [start, start + length) of q/k/v attend only among themselves (one image frame of the vision
// tower; the decoder's batch rows are segments of one sequence length).
struct attention_segment {
  std::int64_t start = 0;   // first row in q/k/v
  std::int64_t length = 0;  // rows
};

}  // namespace aq
