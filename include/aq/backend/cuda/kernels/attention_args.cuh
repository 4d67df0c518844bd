// What every attention kernel reads: the segments (cu_seqlens) and the masking arguments, and the
// rule that marks a row with no allowed key (lse +inf), shared by the CUDA-core and the tensor-core
// kernel families.
#pragma once

#include <cstdint>

namespace aq::cuda {

// Segments as consecutive row ranges: segment s is rows [cu_seqlens[s], cu_seqlens[s+1]).
// cu_seqlens lives on the device; max_length (host) sizes the grid.
struct attention_segments {
  const int* cu_seqlens = nullptr;
  int count = 0;
  int max_length = 0;
  // Segment b is rows [b·max_length, (b+1)·max_length) (a batch of one sequence length): what a
  // fused-attention library's dense layout needs. Set by the caller, which knows cu_seqlens.
  bool equal_lengths = false;
};

namespace detail {

struct attn_args {
  const int* cu_seqlens;
  const std::uint8_t* key_valid;
  std::int64_t rows;  // all rows of q (the lse/delta row stride)
  int heads;
  int group;  // heads / kv_heads
  float scale;
  bool causal;
  bool attend_all;
};

// Key kv (segment-relative) is allowed for query q: inside the segment, not in the future under
// the causal mask, and not a padding key. start: the segment's first row.
__device__ inline bool attn_key_allowed(const attn_args& a, std::int64_t start, int q, int kv, int length) {
  return kv < length && (!a.causal || kv <= q) && (a.key_valid == nullptr || a.key_valid[start + kv] != 0);
}

}  // namespace detail
}  // namespace aq::cuda
