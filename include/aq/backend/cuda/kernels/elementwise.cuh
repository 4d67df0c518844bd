// A 2-D elementwise launcher over row-major views: blocks tile the columns, grid rows stride over
// the matrix rows, so strided views need no per-element division. The activation, RoPE and
// embedding kernels are functors run through it; the casts and residual adds of both models are
// defined here. Ops with packs move V columns a thread with aligned vector loads and stores (the
// bandwidth-bound passes of the text model).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_matrix.cuh"

namespace aq::cuda {

namespace detail {

inline constexpr unsigned elementwise_block = 256;

// op.template run<V>(r, c) for columns c = 0, V, 2V, ... of every row (cols % V == 0).
template <int V, class Op>
__global__ void __launch_bounds__(elementwise_block)
    packed_elementwise_kernel(std::int64_t rows, std::int64_t cols, Op op) {
  const std::int64_t c0 = (static_cast<std::int64_t>(blockIdx.x) * elementwise_block + threadIdx.x) * V;
  const std::int64_t col_stride = static_cast<std::int64_t>(gridDim.x) * elementwise_block * V;
  for (std::int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    for (std::int64_t c = c0; c < cols; c += col_stride) op.template run<V>(r, c);
  }
}

// A scalar op, op(r, c), as an op with packs of one column.
template <class Op>
struct one_column_op {
  Op op;
  template <int V>
  __device__ void run(std::int64_t r, std::int64_t c) {
    op(r, c);
  }
};

inline dim3 elementwise_grid(std::int64_t rows, std::int64_t steps_per_row) {
  const std::int64_t col_blocks = std::min<std::int64_t>((steps_per_row + elementwise_block - 1) / elementwise_block, 1024);
  return dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(std::min<std::int64_t>(rows, 65535)));
}

// y = x converted element for element (float ↔ bf16, or a copy).
template <class In, class Out>
struct convert_op {
  device_matrix<const In> x;
  device_matrix<Out> y;
  static constexpr int pack = 4;
  template <int V>
  __device__ void run(std::int64_t r, std::int64_t c) const {
    const auto xv = load_pack<V>(x, r, c);
    element_pack<Out, V> yv;
#pragma unroll
    for (int j = 0; j < V; ++j) yv.v[j] = from_float<Out>(to_float(xv.v[j]));
    store_pack<V>(y, r, c, yv);
  }
  bool packed() const { return rows_packed<pack>(x) && rows_packed<pack>(y); }
};

// y = a + b (the residual stream, fp32).
struct add_op {
  device_matrix<const float> a, b;
  device_matrix<float> y;
  static constexpr int pack = 4;
  template <int V>
  __device__ void run(std::int64_t r, std::int64_t c) const {
    const auto av = load_pack<V>(a, r, c), bv = load_pack<V>(b, r, c);
    element_pack<float, V> yv;
#pragma unroll
    for (int j = 0; j < V; ++j) yv.v[j] = av.v[j] + bv.v[j];
    store_pack<V>(y, r, c, yv);
  }
  bool packed() const { return rows_packed<pack>(a) && rows_packed<pack>(b) && rows_packed<pack>(y); }
};

}  // namespace detail

// Runs op over rows × cols, V columns at a time where `packed` (every view op touches has
// rows_packed<V>), else one column at a time; op.template run<W>(r, c) does columns c .. c+W-1.
template <int V, class Op>
void launch_packed_elementwise(std::int64_t rows, std::int64_t cols, bool packed, const Op& op, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  if (packed) {
    detail::packed_elementwise_kernel<V, Op>
        <<<detail::elementwise_grid(rows, cols / V), detail::elementwise_block, 0, stream>>>(rows, cols, op);
  } else {
    detail::packed_elementwise_kernel<1, Op>
        <<<detail::elementwise_grid(rows, cols), detail::elementwise_block, 0, stream>>>(rows, cols, op);
  }
  AQ_CUDA_CHECK_LAUNCH();
}

// op(r, c) for every element; an op with packs (Op::pack columns by op.template run<W>(r, c),
// op.packed(): whether its views' rows split into aligned packs) runs packed where it can.
template <class Op>
void launch_elementwise(std::int64_t rows, std::int64_t cols, const Op& op, cudaStream_t stream) {
  if constexpr (requires { Op::pack; }) {
    launch_packed_elementwise<Op::pack>(rows, cols, op.packed(), op, stream);
  } else {
    launch_packed_elementwise<1>(rows, cols, false, detail::one_column_op<Op>{op}, stream);
  }
}

}  // namespace aq::cuda
