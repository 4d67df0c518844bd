// CUDA fake quantization and amax: one kernel templated on the quantizer spec (format +
// granularity), running the same AQ_HD math as the host (aq/quant/fake_quantize.hpp), so device
// results are bit-identical to the host's. Compiled only by nvcc (AQ_WITH_CUDA); do not build it
// with --use_fast_math (flushed denormals and approximate division change the results).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/config.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/quantizer.hpp"

namespace aq::cuda {

namespace detail {

inline unsigned grid_size(std::int64_t n, unsigned block) {
  const std::int64_t blocks = (n + block - 1) / block;
  return static_cast<unsigned>(blocks < 65535 * 32 ? (blocks > 0 ? blocks : 1) : 65535 * 32);
}

}  // namespace detail

// out[i] = fake_quantize(in[i]) with the amax slot of element (i / cols, i % cols).
// In/Out: float or aq::bf16 (a bf16 Out rounds like output_rounding::bf16). amax may be null
// when Q is disabled. in and out may alias.
template <quant::quantizer_spec Q, class In, class Out>
__global__ void fake_quantize_kernel(const In* in, Out* out, std::int64_t rows, std::int64_t cols, const float* amax,
                                     quant::output_rounding rounding) {
  using F = typename Q::format_type;
  using G = typename Q::granularity_type;
  const std::int64_t n = rows * cols;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = to_float(in[i]);
    float y = x;
    if constexpr (Q::enabled) {
      const float scale = quant::scale_from_amax<F>(amax[G::amax_index(i / cols, i % cols, cols)]);
      y = quant::fake_quantize_scaled<F>(x, scale, Q::narrow_range);
    }
    out[i] = from_float<Out>(quant::round_output(y, rounding));
  }
}

// Running max of |x| per amax slot, on the float bits (non-negative floats order like their
// bits, so atomicMax is exact and the result independent of the order). A NaN input yields a
// NaN slot and infinity an infinite one: the caller checks finiteness, as the host calibrator does.
template <quant::granularity G, class In>
__global__ void amax_kernel(const In* in, std::int64_t rows, std::int64_t cols, unsigned int* amax_bits) {
  const std::int64_t n = rows * cols;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const unsigned int magnitude = __float_as_uint(to_float(in[i])) & 0x7fffffffu;
    atomicMax(&amax_bits[G::amax_index(i / cols, i % cols, cols)], magnitude);
  }
}

template <quant::quantizer_spec Q, class In, class Out>
cudaError_t fake_quantize(const In* in, Out* out, std::int64_t rows, std::int64_t cols, const float* amax,
                          quant::output_rounding rounding = quant::output_rounding::fp32, cudaStream_t stream = nullptr) {
  constexpr unsigned block = 256;
  if (rows * cols == 0) return cudaSuccess;
  fake_quantize_kernel<Q, In, Out><<<detail::grid_size(rows * cols, block), block, 0, stream>>>(in, out, rows, cols,
                                                                                             amax, rounding);
  return cudaGetLastError();
}

// Fills amax[0 .. G::amax_count(rows, cols)) with max |x| per slot (zero-initialised here).
template <quant::granularity G, class In>
cudaError_t compute_amax(const In* in, std::int64_t rows, std::int64_t cols, float* amax, cudaStream_t stream = nullptr) {
  constexpr unsigned block = 256;
  const std::int64_t slots = G::amax_count(rows, cols);
  cudaError_t status = cudaMemsetAsync(amax, 0, static_cast<std::size_t>(slots) * sizeof(float), stream);
  if (status != cudaSuccess || rows * cols == 0) return status;
  amax_kernel<G, In><<<detail::grid_size(rows * cols, block), block, 0, stream>>>(
      in, rows, cols, reinterpret_cast<unsigned int*>(amax));
  return cudaGetLastError();
}

}  // namespace aq::cuda
