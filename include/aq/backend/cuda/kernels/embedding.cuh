// Token embedding gather on the GPU: out[n, :] = table[ids[n], :] (bf16 or fp32 table, the
// decoder's embed_tokens). Ids come from the host, so they are validated there, where an error
// can name the offending position, before the kernel reads the table.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/elementwise.cuh"
#include "aq/core/error.hpp"

namespace aq::cuda {

// Throws aq::error naming the first id outside [0, vocab).
inline void check_token_ids(const std::vector<std::int64_t>& ids, std::int64_t vocab) {
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      throw error("cuda embedding: token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                  " outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
  }
}

namespace detail {

template <class T, class Out>
struct embedding_op {
  const std::int64_t* ids;
  device_matrix<const T> table;
  device_matrix<Out> out;
  __device__ void operator()(std::int64_t n, std::int64_t c) const { out(n, c) = from_float<Out>(to_float(table(ids[n], c))); }
};

}  // namespace detail

// ids: device int64 [out.rows], already checked with check_token_ids against table.rows.
template <class T, class Out>
void embedding_forward(const std::int64_t* ids, device_matrix<const T> table, device_matrix<Out> out,
                       cudaStream_t stream = nullptr) {
  if (out.cols != table.cols) {
    throw error("cuda embedding_forward: output has " + std::to_string(out.cols) + " columns, table " +
                std::to_string(table.cols));
  }
  launch_elementwise(out.rows, out.cols, detail::embedding_op<T, Out>{ids, table, out}, stream);
}

// Validates host ids against the table, uploads them into ids_device (grown as needed) on the
// stream and gathers.
template <class T, class Out>
void embedding_forward(const std::vector<std::int64_t>& ids, device_buffer<std::int64_t>& ids_device,
                       device_matrix<const T> table, device_matrix<Out> out, cudaStream_t stream = nullptr) {
  check_token_ids(ids, table.rows);
  if (static_cast<std::int64_t>(ids.size()) != out.rows) {
    throw error("cuda embedding_forward: " + std::to_string(ids.size()) + " ids for " + std::to_string(out.rows) +
                " output rows");
  }
  ids_device.upload(ids, stream);
  embedding_forward(ids_device.data(), table, out, stream);
}

}  // namespace aq::cuda
