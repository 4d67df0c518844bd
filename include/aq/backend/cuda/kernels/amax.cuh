// Max |x| reductions for calibration: per tensor (cub::DeviceReduce), folded into a running
// per-tensor max (one pass of 16-byte loads, blocks joined by atomicMax), and per row
// (cub::BlockReduce, one block a row). The max runs on the float bits with the sign cleared
// (non-negative floats order like their bits), so it is exact, order-free and a NaN input gives
// a NaN amax, as the atomic per-slot kernel in fake_quant.cuh; callers check finiteness.
#pragma once

#include <cub/device/device_reduce.cuh>
#include <cuda_runtime.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "aq/backend/cuda/kernels/block_reduce.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"

namespace aq::cuda {

namespace detail {

// |v|'s float bits: on a contiguous view, element by element (no per-element row/column arithmetic).
template <class T>
struct abs_bits_of {
  __host__ __device__ unsigned int operator()(const T& v) const {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(to_float(v)) & 0x7fffffffu;
#else
    (void)v;
    return 0u;  // never evaluated on the host
#endif
  }
};

// The same for element i of a strided view, in row-major order.
template <class T>
struct abs_bits_at {
  device_matrix<const T> x;
  __host__ __device__ unsigned int operator()(std::int64_t i) const {
    const std::int64_t r = i / x.cols;
    return abs_bits_of<T>{}(x(r, i - r * x.cols));
  }
};

struct max_bits {
  __host__ __device__ unsigned int operator()(unsigned int a, unsigned int b) const { return a < b ? b : a; }
};

inline constexpr int amax_row_block = 256;

template <class T>
__global__ void __launch_bounds__(amax_row_block) amax_per_row_kernel(device_matrix<const T> x, float* amax) {
  __shared__ block_reducer<unsigned int, amax_row_block> red;
  for (std::int64_t r = blockIdx.x; r < x.rows; r += gridDim.x) {
    const T* in = x.row(r);
    unsigned int m = 0;
    for (std::int64_t c = threadIdx.x; c < x.cols; c += amax_row_block) {
      m = max(m, __float_as_uint(to_float(in[c])) & 0x7fffffffu);
    }
    m = block_max(m, red);
    if (threadIdx.x == 0) amax[r] = __uint_as_float(m);
  }
}


inline constexpr int amax_fold_block = 256;
// Blocks of the folding pass: enough to fill an H100 several times over; a max needs no fixed
// grid for reproducibility (it is exact in any order).
inline constexpr unsigned amax_fold_blocks = 1024;

// *running_bits = max(*running_bits, |x|'s bits) over the view, V elements a load.
template <int V, class T>
__global__ void __launch_bounds__(amax_fold_block) amax_fold_kernel(device_matrix<const T> x, unsigned int* running_bits) {
  __shared__ block_reducer<unsigned int, amax_fold_block> red;
  const std::int64_t packs_per_row = x.cols / V;
  const std::int64_t packs = x.rows * packs_per_row;
  unsigned int m = 0;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(amax_fold_block) + threadIdx.x; i < packs;
       i += static_cast<std::int64_t>(gridDim.x) * amax_fold_block) {
    const std::int64_t r = i / packs_per_row;
    const auto p = load_pack<V>(x, r, (i - r * packs_per_row) * V);
#pragma unroll
    for (int j = 0; j < V; ++j) m = max(m, __float_as_uint(to_float(p.v[j])) & 0x7fffffffu);
  }
  m = block_max(m, red);
  if (threadIdx.x == 0 && m != 0) atomicMax(running_bits, m);
}
}  // namespace detail

// amax[0] = max |x| over the whole view (0 for an empty one). temp grows as CUB needs.
template <class T>
void amax_per_tensor(device_matrix<const T> x, float* amax, device_buffer<std::byte>& temp,
                     cudaStream_t stream = nullptr) {
  check_view(x, "cuda amax_per_tensor: x");
  const std::int64_t n = x.rows * x.cols;
  if (n == 0) {
    AQ_CUDA_CHECK(cudaMemsetAsync(amax, 0, sizeof(float), stream));
    return;
  }
  auto* out = reinterpret_cast<unsigned int*>(amax);
  const auto reduce = [&](auto in) {
    std::size_t bytes = 0;
    AQ_CUDA_CHECK(cub::DeviceReduce::Reduce(nullptr, bytes, in, out, n, detail::max_bits{}, 0u, stream));
    temp.grow_to(bytes);
    AQ_CUDA_CHECK(cub::DeviceReduce::Reduce(temp.data(), bytes, in, out, n, detail::max_bits{}, 0u, stream));
  };
  if (x.ld == x.cols) {
    reduce(thrust::make_transform_iterator(x.data, detail::abs_bits_of<T>{}));
  } else {
    reduce(thrust::make_transform_iterator(thrust::make_counting_iterator<std::int64_t>(0), detail::abs_bits_at<T>{x}));
  }
}

// *running = max(*running, max |x|) over the view (running a non-negative float or NaN, which
// stays NaN): calibration's fold of one batch into a module's input amax, without a batch slot.
template <class T>
void fold_amax(device_matrix<const T> x, float* running, cudaStream_t stream = nullptr) {
  check_view(x, "cuda fold_amax: x");
  if (x.rows * x.cols == 0) return;
  constexpr int V = 16 / static_cast<int>(sizeof(T));
  auto* bits = reinterpret_cast<unsigned int*>(running);
  const auto blocks = [&](std::int64_t packs) {
    return static_cast<unsigned>(std::min<std::int64_t>(detail::amax_fold_blocks, (packs + detail::amax_fold_block - 1) / detail::amax_fold_block));
  };
  if (rows_packed<V>(x)) {
    detail::amax_fold_kernel<V, T><<<blocks(x.rows * (x.cols / V)), detail::amax_fold_block, 0, stream>>>(x, bits);
  } else {
    detail::amax_fold_kernel<1, T><<<blocks(x.rows * x.cols), detail::amax_fold_block, 0, stream>>>(x, bits);
  }
  AQ_CUDA_CHECK_LAUNCH();
}

// amax[r] = max |x[r, :]| for every row (the per-channel amax of a [out, in] weight).
template <class T>
void amax_per_row(device_matrix<const T> x, float* amax, cudaStream_t stream = nullptr) {
  check_view(x, "cuda amax_per_row: x");
  if (x.rows == 0) return;
  detail::amax_per_row_kernel<T><<<detail::row_grid(x.rows), detail::amax_row_block, 0, stream>>>(x, amax);
  AQ_CUDA_CHECK_LAUNCH();
}

}  // namespace aq::cuda
