// RMSNorm on the GPU (Qwen3's layer norms and per-head q_norm/k_norm) and its input gradient,
// matching cpu::rms_norm_forward/backward: y = w ⊙ x·r, r = (mean(x²) + eps)^-½. One block per
// row, 4 columns a thread where the rows allow; the row sums are taken in fp64 as on the CPU,
// elementwise math in fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "aq/backend/cuda/kernels/block_reduce.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_matrix.cuh"

namespace aq::cuda {

namespace detail {

inline constexpr int norm_block = 256;

// V: columns a thread moves at once (rows split into aligned packs of V, else V = 1).
template <int V, class In, class Out>
__global__ void __launch_bounds__(norm_block) rms_norm_forward_kernel(device_matrix<const In> x, const float* weight,
                                                                      float eps, device_matrix<Out> y, float* inv_rms) {
  __shared__ block_reducer<double, norm_block> red;
  for (std::int64_t r = blockIdx.x; r < x.rows; r += gridDim.x) {
    double sum = 0.0;
    for (std::int64_t c = static_cast<std::int64_t>(threadIdx.x) * V; c < x.cols; c += norm_block * V) {
      const auto xv = load_pack<V>(x, r, c);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const double v = to_float(xv.v[j]);
        sum += v * v;
      }
    }
    sum = block_sum(sum, red);
    const float mean = static_cast<float>(sum / static_cast<double>(x.cols));
    const float rr = 1.0f / sqrtf(mean + eps);
    for (std::int64_t c = static_cast<std::int64_t>(threadIdx.x) * V; c < x.cols; c += norm_block * V) {
      const auto xv = load_pack<V>(x, r, c);
      element_pack<Out, V> yv;
#pragma unroll
      for (int j = 0; j < V; ++j) yv.v[j] = from_float<Out>(weight[c + j] * (to_float(xv.v[j]) * rr));
      store_pack<V>(y, r, c, yv);
    }
    if (inv_rms != nullptr && threadIdx.x == 0) inv_rms[r] = rr;
  }
}

template <int V, class In, class G, class Out>
__global__ void __launch_bounds__(norm_block)
    rms_norm_backward_kernel(device_matrix<const In> x, const float* weight, const float* inv_rms,
                             device_matrix<const G> dy, device_matrix<Out> dx, bool accumulate) {
  __shared__ block_reducer<double, norm_block> red;
  for (std::int64_t r = blockIdx.x; r < x.rows; r += gridDim.x) {
    const float rr = inv_rms[r];
    double dot = 0.0;
    for (std::int64_t c = static_cast<std::int64_t>(threadIdx.x) * V; c < x.cols; c += norm_block * V) {
      const auto xv = load_pack<V>(x, r, c);
      const auto gv = load_pack<V>(dy, r, c);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        dot += static_cast<double>(to_float(gv.v[j]) * weight[c + j]) * (to_float(xv.v[j]) * rr);
      }
    }
    dot = block_sum(dot, red);
    const float mean = static_cast<float>(dot / static_cast<double>(x.cols));
    for (std::int64_t c = static_cast<std::int64_t>(threadIdx.x) * V; c < x.cols; c += norm_block * V) {
      const auto xv = load_pack<V>(x, r, c);
      const auto gv = load_pack<V>(dy, r, c);
      element_pack<Out, V> dv = accumulate ? load_pack<V>(dx, r, c) : element_pack<Out, V>{};
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const float v = rr * (to_float(gv.v[j]) * weight[c + j] - to_float(xv.v[j]) * rr * mean);
        dv.v[j] = from_float<Out>(accumulate ? to_float(dv.v[j]) + v : v);
      }
      store_pack<V>(dx, r, c, dv);
    }
  }
}

// The widest pack every view allows: 4 columns (16 bytes of fp32) or 1.
template <class... T>
int norm_pack(const device_matrix<T>&... views) {
  return (rows_packed<4>(views) && ...) ? 4 : 1;
}

}  // namespace detail

// Rows of x are normalised independently; inv_rms[row] (device, may be null) is saved for the
// backward. weight: device fp32 [cols]. y may alias x when In == Out.
template <class In, class Out>
void rms_norm_forward(device_matrix<const In> x, const float* weight, float eps, device_matrix<Out> y, float* inv_rms,
                      cudaStream_t stream = nullptr) {
  check_same_shape(x, y, "cuda rms_norm_forward: y");
  if (x.rows == 0) return;
  if (detail::norm_pack(x, y) == 4) {
    detail::rms_norm_forward_kernel<4, In, Out>
        <<<detail::row_grid(x.rows), detail::norm_block, 0, stream>>>(x, weight, eps, y, inv_rms);
  } else {
    detail::rms_norm_forward_kernel<1, In, Out>
        <<<detail::row_grid(x.rows), detail::norm_block, 0, stream>>>(x, weight, eps, y, inv_rms);
  }
  AQ_CUDA_CHECK_LAUNCH();
}

// dx (+)= r·(u − x̂·mean(u⊙x̂)), u = dy⊙w, x̂ = x·r. dx may alias dy when G == Out.
template <class In, class G, class Out>
void rms_norm_backward(device_matrix<const In> x, const float* weight, const float* inv_rms, device_matrix<const G> dy,
                       device_matrix<Out> dx, bool accumulate = false, cudaStream_t stream = nullptr) {
  check_same_shape(x, dy, "cuda rms_norm_backward: dy");
  check_same_shape(x, dx, "cuda rms_norm_backward: dx");
  if (x.rows == 0) return;
  if (detail::norm_pack(x, dy, dx) == 4) {
    detail::rms_norm_backward_kernel<4, In, G, Out>
        <<<detail::row_grid(x.rows), detail::norm_block, 0, stream>>>(x, weight, inv_rms, dy, dx, accumulate);
  } else {
    detail::rms_norm_backward_kernel<1, In, G, Out>
        <<<detail::row_grid(x.rows), detail::norm_block, 0, stream>>>(x, weight, inv_rms, dy, dx, accumulate);
  }
  AQ_CUDA_CHECK_LAUNCH();
}

}  // namespace aq::cuda
