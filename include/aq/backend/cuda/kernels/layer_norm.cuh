// LayerNorm on the GPU (vision tower and mergers) and its input gradient, matching
// cpu::layer_norm_forward/backward: y = w ⊙ (x − μ)·r + b with the biased variance. One block per
// row; row sums in fp64 as on the CPU, elementwise math in fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "aq/backend/cuda/kernels/block_reduce.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/rms_norm.cuh"

namespace aq::cuda {

namespace detail {

template <class In, class Out>
__global__ void __launch_bounds__(norm_block)
    layer_norm_forward_kernel(device_matrix<const In> x, const float* weight, const float* bias, float eps,
                              device_matrix<Out> y, float* mean, float* inv_std) {
  __shared__ block_reducer<double, norm_block> red;
  for (std::int64_t r = blockIdx.x; r < x.rows; r += gridDim.x) {
    const In* in = x.row(r);
    double s = 0.0;
    for (std::int64_t c = threadIdx.x; c < x.cols; c += norm_block) s += to_float(in[c]);
    const double mu = block_sum(s, red) / static_cast<double>(x.cols);
    double v = 0.0;
    for (std::int64_t c = threadIdx.x; c < x.cols; c += norm_block) {
      const double d = to_float(in[c]) - mu;
      v += d * d;
    }
    v = block_sum(v, red);
    const float m = static_cast<float>(mu);
    const float rr = static_cast<float>(1.0 / sqrt(v / static_cast<double>(x.cols) + eps));
    Out* out = y.row(r);
    for (std::int64_t c = threadIdx.x; c < x.cols; c += norm_block) {
      out[c] = from_float<Out>((to_float(in[c]) - m) * rr * weight[c] + bias[c]);
    }
    if (threadIdx.x == 0) {
      mean[r] = m;
      inv_std[r] = rr;
    }
  }
}

template <class In, class G, class Out>
__global__ void __launch_bounds__(norm_block)
    layer_norm_backward_kernel(device_matrix<const In> x, const float* weight, const float* mean,
                               const float* inv_std, device_matrix<const G> dy, device_matrix<Out> dx, bool accumulate) {
  __shared__ block_reducer<double, norm_block> red;
  for (std::int64_t r = blockIdx.x; r < x.rows; r += gridDim.x) {
    const In* in = x.row(r);
    const G* g = dy.row(r);
    const float m = mean[r];
    const float rr = inv_std[r];
    double su = 0.0;
    double sux = 0.0;
    for (std::int64_t c = threadIdx.x; c < x.cols; c += norm_block) {
      const double u = static_cast<double>(to_float(g[c])) * weight[c];
      su += u;
      sux += u * ((to_float(in[c]) - m) * rr);
    }
    const float mu = static_cast<float>(block_sum(su, red) / static_cast<double>(x.cols));
    const float mux = static_cast<float>(block_sum(sux, red) / static_cast<double>(x.cols));
    Out* out = dx.row(r);
    for (std::int64_t c = threadIdx.x; c < x.cols; c += norm_block) {
      const float xhat = (to_float(in[c]) - m) * rr;
      const float v = rr * (to_float(g[c]) * weight[c] - mu - xhat * mux);
      out[c] = from_float<Out>(accumulate ? to_float(out[c]) + v : v);
    }
  }
}

}  // namespace detail

// mean[row] and inv_std[row] (device fp32) are saved for the backward; weight/bias device fp32.
template <class In, class Out>
void layer_norm_forward(device_matrix<const In> x, const float* weight, const float* bias, float eps,
                        device_matrix<Out> y, float* mean, float* inv_std, cudaStream_t stream = nullptr) {
  check_same_shape(x, y, "cuda layer_norm_forward: y");
  if (x.rows == 0) return;
  detail::layer_norm_forward_kernel<In, Out>
      <<<detail::row_grid(x.rows), detail::norm_block, 0, stream>>>(x, weight, bias, eps, y, mean, inv_std);
  AQ_CUDA_CHECK_LAUNCH();
}

// dx (+)= r·(u − mean(u) − x̂·mean(u⊙x̂)), u = dy⊙w. dx may alias dy when G == Out.
template <class In, class G, class Out>
void layer_norm_backward(device_matrix<const In> x, const float* weight, const float* mean, const float* inv_std,
                         device_matrix<const G> dy, device_matrix<Out> dx, bool accumulate = false,
                         cudaStream_t stream = nullptr) {
  check_same_shape(x, dy, "cuda layer_norm_backward: dy");
  check_same_shape(x, dx, "cuda layer_norm_backward: dx");
  if (x.rows == 0) return;
  detail::layer_norm_backward_kernel<In, G, Out><<<detail::row_grid(x.rows), detail::norm_block, 0, stream>>>(
      x, weight, mean, inv_std, dy, dx, accumulate);
  AQ_CUDA_CHECK_LAUNCH();
}

}  // namespace aq::cuda
