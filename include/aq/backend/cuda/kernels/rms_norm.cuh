// RMSNorm on the GPU (Qwen3's layer norms and per-head q_norm/k_norm) and its input gradient,
// matching cpu::rms_norm_forward/backward: y = w ⊙ x·r, r = (mean(x²) + eps)^-½. One block per
// row; the row sums are taken in fp64 as on the CPU, elementwise math in fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "aq/backend/cuda/kernels/block_reduce.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_matrix.cuh"

namespace aq::cuda {

namespace detail {

inline constexpr int norm_block = 256;

template <class In, class Out>
__global__ void __launch_bounds__(norm_block) rms_norm_forward_kernel(device_matrix<const In> x, const float* weight,
                                                                      float eps, device_matrix<Out> y, float* inv_rms) {
  __shared__ block_reducer<double, norm_block> red;
  for (std::int64_t r = blockIdx.x; r < x.rows; r += gridDim.x) {
    const In* in = x.row(r);
    double sum = 0.0;
    for (std::int64_t c = threadIdx.x; c < x.cols; c += norm_block) {
      const double v = to_float(in[c]);
      sum += v * v;
    }
    sum = block_sum(sum, red);
    const float mean = static_cast<float>(sum / static_cast<double>(x.cols));
    const float rr = 1.0f / sqrtf(mean + eps);
    Out* out = y.row(r);
    for (std::int64_t c = threadIdx.x; c < x.cols; c += norm_block) {
      out[c] = from_float<Out>(weight[c] * (to_float(in[c]) * rr));
    }
    if (inv_rms != nullptr && threadIdx.x == 0) inv_rms[r] = rr;
  }
}

template <class In, class G, class Out>
__global__ void __launch_bounds__(norm_block)
    rms_norm_backward_kernel(device_matrix<const In> x, const float* weight, const float* inv_rms,
                             device_matrix<const G> dy, device_matrix<Out> dx, bool accumulate) {
  __shared__ block_reducer<double, norm_block> red;
  for (std::int64_t r = blockIdx.x; r < x.rows; r += gridDim.x) {
    const In* in = x.row(r);
    const G* g = dy.row(r);
    const float rr = inv_rms[r];
    double dot = 0.0;
    for (std::int64_t c = threadIdx.x; c < x.cols; c += norm_block) {
      dot += static_cast<double>(to_float(g[c]) * weight[c]) * (to_float(in[c]) * rr);
    }
    dot = block_sum(dot, red);
    const float mean = static_cast<float>(dot / static_cast<double>(x.cols));
    Out* out = dx.row(r);
    for (std::int64_t c = threadIdx.x; c < x.cols; c += norm_block) {
      const float v = rr * (to_float(g[c]) * weight[c] - to_float(in[c]) * rr * mean);
      out[c] = from_float<Out>(accumulate ? to_float(out[c]) + v : v);
    }
  }
}

}  // namespace detail

// Rows of x are normalised independently; inv_rms[row] (device, may be null) is saved for the
// backward. weight: device fp32 [cols]. y may alias x when In == Out.
template <class In, class Out>
void rms_norm_forward(device_matrix<const In> x, const float* weight, float eps, device_matrix<Out> y, float* inv_rms,
                      cudaStream_t stream = nullptr) {
  check_same_shape(x, y, "cuda rms_norm_forward: y");
  if (x.rows == 0) return;
  detail::rms_norm_forward_kernel<In, Out>
      <<<detail::row_grid(x.rows), detail::norm_block, 0, stream>>>(x, weight, eps, y, inv_rms);
  AQ_CUDA_CHECK_LAUNCH();
}

// dx (+)= r·(u − x̂·mean(u⊙x̂)), u = dy⊙w, x̂ = x·r. dx may alias dy when G == Out.
template <class In, class G, class Out>
void rms_norm_backward(device_matrix<const In> x, const float* weight, const float* inv_rms, device_matrix<const G> dy,
                       device_matrix<Out> dx, bool accumulate = false, cudaStream_t stream = nullptr) {
  check_same_shape(x, dy, "cuda rms_norm_backward: dy");
  check_same_shape(x, dx, "cuda rms_norm_backward: dx");
  if (x.rows == 0) return;
  detail::rms_norm_backward_kernel<In, G, Out>
      <<<detail::row_grid(x.rows), detail::norm_block, 0, stream>>>(x, weight, inv_rms, dy, dx, accumulate);
  AQ_CUDA_CHECK_LAUNCH();
}

}  // namespace aq::cuda
