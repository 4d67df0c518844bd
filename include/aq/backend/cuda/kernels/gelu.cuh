// GELU activations of the vision tower on the GPU and their derivatives, matching cpu::gelu_tanh
// (gelu_pytorch_tanh, block MLPs) and cpu::gelu_erf (patch mergers); fp32 math.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/elementwise.cuh"

namespace aq::cuda {

struct gelu_tanh {
  __device__ static float value(float x) {
    constexpr float k = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
  }
  __device__ static float derivative(float x) {
    constexpr float k = 0.7978845608028654f;
    const float t = tanhf(k * (x + 0.044715f * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * x * x);
  }
};

struct gelu_erf {
  __device__ static float value(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }
  __device__ static float derivative(float x) {
    const float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
    const float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
    return cdf + x * pdf;
  }
};

namespace detail {

template <class Act, class In, class Out>
struct activation_forward_op {
  device_matrix<const In> x;
  device_matrix<Out> y;
  __device__ void operator()(std::int64_t r, std::int64_t c) const { y(r, c) = from_float<Out>(Act::value(to_float(x(r, c)))); }
};

template <class Act, class In, class G, class Out>
struct activation_backward_op {
  device_matrix<const In> x;
  device_matrix<const G> g;
  device_matrix<Out> dx;
  __device__ void operator()(std::int64_t r, std::int64_t c) const {
    dx(r, c) = from_float<Out>(to_float(g(r, c)) * Act::derivative(to_float(x(r, c))));
  }
};

}  // namespace detail

// y = act(x); y may alias x.
template <class Act, class In, class Out>
void activation_forward(device_matrix<const In> x, device_matrix<Out> y, cudaStream_t stream = nullptr) {
  check_same_shape(x, y, "cuda activation_forward: y");
  launch_elementwise(x.rows, x.cols, detail::activation_forward_op<Act, In, Out>{x, y}, stream);
}

// dx = g ⊙ act'(x); dx may alias g.
template <class Act, class In, class G, class Out>
void activation_backward(device_matrix<const In> x, device_matrix<const G> g, device_matrix<Out> dx,
                         cudaStream_t stream = nullptr) {
  check_same_shape(x, g, "cuda activation_backward: g");
  check_same_shape(x, dx, "cuda activation_backward: dx");
  launch_elementwise(x.rows, x.cols, detail::activation_backward_op<Act, In, G, Out>{x, g, dx}, stream);
}

}  // namespace aq::cuda
