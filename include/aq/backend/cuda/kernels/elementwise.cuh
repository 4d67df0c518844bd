// A 2-D elementwise launcher over row-major views: blocks tile the columns, grid rows stride over
// the matrix rows, so strided views need no per-element division. The activation, RoPE and
// embedding kernels are functors run through it.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "aq/backend/cuda/kernels/check.hpp"

namespace aq::cuda {

namespace detail {

inline constexpr unsigned elementwise_block = 256;

// op(r, c) for every r < rows, c < cols.
template <class Op>
__global__ void __launch_bounds__(elementwise_block) elementwise_kernel(std::int64_t rows, std::int64_t cols, Op op) {
  const std::int64_t c0 = static_cast<std::int64_t>(blockIdx.x) * elementwise_block + threadIdx.x;
  const std::int64_t col_stride = static_cast<std::int64_t>(gridDim.x) * elementwise_block;
  for (std::int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    for (std::int64_t c = c0; c < cols; c += col_stride) op(r, c);
  }
}

}  // namespace detail

template <class Op>
void launch_elementwise(std::int64_t rows, std::int64_t cols, const Op& op, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const std::int64_t col_blocks = std::min<std::int64_t>((cols + detail::elementwise_block - 1) / detail::elementwise_block, 1024);
  const std::int64_t row_blocks = std::min<std::int64_t>(rows, 65535);
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(row_blocks));
  detail::elementwise_kernel<Op><<<grid, detail::elementwise_block, 0, stream>>>(rows, cols, op);
  AQ_CUDA_CHECK_LAUNCH();
}

}  // namespace aq::cuda
