// SwiGLU gate of the text MLP on the GPU, y = silu(a) ⊙ b, and its input gradient, matching
// cpu::swiglu_forward/backward (a = gate_proj output, b = up_proj output); fp32 math.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/elementwise.cuh"

namespace aq::cuda {

namespace detail {

__device__ inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

template <class In, class Out>
struct swiglu_forward_op {
  device_matrix<const In> a, b;
  device_matrix<Out> y;
  __device__ void operator()(std::int64_t r, std::int64_t c) const {
    const float x = to_float(a(r, c));
    y(r, c) = from_float<Out>(x * sigmoid(x) * to_float(b(r, c)));
  }
};

template <class In, class G, class Out>
struct swiglu_backward_op {
  device_matrix<const In> a, b;
  device_matrix<const G> g;
  device_matrix<Out> da, db;
  __device__ void operator()(std::int64_t r, std::int64_t c) const {
    const float x = to_float(a(r, c));
    const float u = to_float(b(r, c));
    const float gr = to_float(g(r, c));
    const float s = sigmoid(x);
    da(r, c) = from_float<Out>(gr * u * s * (1.0f + x * (1.0f - s)));
    db(r, c) = from_float<Out>(gr * x * s);
  }
};

}  // namespace detail

// y may alias a or b (each element is read before it is written by the same thread).
template <class In, class Out>
void swiglu_forward(device_matrix<const In> a, device_matrix<const In> b, device_matrix<Out> y,
                    cudaStream_t stream = nullptr) {
  check_same_shape(a, b, "cuda swiglu_forward: up");
  check_same_shape(a, y, "cuda swiglu_forward: y");
  launch_elementwise(a.rows, a.cols, detail::swiglu_forward_op<In, Out>{a, b, y}, stream);
}

// da = g⊙b⊙σ(a)(1 + a(1−σ(a))), db = g⊙silu(a); da/db may alias a/b/g element for element.
template <class In, class G, class Out>
void swiglu_backward(device_matrix<const In> a, device_matrix<const In> b, device_matrix<const G> g,
                     device_matrix<Out> da, device_matrix<Out> db, cudaStream_t stream = nullptr) {
  check_same_shape(a, b, "cuda swiglu_backward: up");
  check_same_shape(a, g, "cuda swiglu_backward: g");
  check_same_shape(a, da, "cuda swiglu_backward: da");
  check_same_shape(a, db, "cuda swiglu_backward: db");
  launch_elementwise(a.rows, a.cols, detail::swiglu_backward_op<In, G, Out>{a, b, g, da, db}, stream);
}

}  // namespace aq::cuda
