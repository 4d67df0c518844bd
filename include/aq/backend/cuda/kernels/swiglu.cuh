// SwiGLU gate of the text MLP on the GPU, y = silu(a) ⊙ b, and its input gradient, matching
// cpu::swiglu_forward/backward (a = gate_proj output, b = up_proj output); fp32 math, 4
// columns a thread where the rows allow.
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
  static constexpr int pack = 4;
  template <int V>
  __device__ void run(std::int64_t r, std::int64_t c) const {
    const auto av = load_pack<V>(a, r, c), bv = load_pack<V>(b, r, c);
    element_pack<Out, V> yv;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const float x = to_float(av.v[j]);
      yv.v[j] = from_float<Out>(x * sigmoid(x) * to_float(bv.v[j]));
    }
    store_pack<V>(y, r, c, yv);
  }
  bool packed() const { return rows_packed<pack>(a) && rows_packed<pack>(b) && rows_packed<pack>(y); }
};

template <class In, class G, class Out>
struct swiglu_backward_op {
  device_matrix<const In> a, b;
  device_matrix<const G> g;
  device_matrix<Out> da, db;
  static constexpr int pack = 4;
  template <int V>
  __device__ void run(std::int64_t r, std::int64_t c) const {
    const auto av = load_pack<V>(a, r, c), bv = load_pack<V>(b, r, c);
    const auto gv = load_pack<V>(g, r, c);
    element_pack<Out, V> dav, dbv;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const float x = to_float(av.v[j]);
      const float u = to_float(bv.v[j]);
      const float gr = to_float(gv.v[j]);
      const float s = sigmoid(x);
      dav.v[j] = from_float<Out>(gr * u * s * (1.0f + x * (1.0f - s)));
      dbv.v[j] = from_float<Out>(gr * x * s);
    }
    store_pack<V>(da, r, c, dav);
    store_pack<V>(db, r, c, dbv);
  }
  bool packed() const {
    return rows_packed<pack>(a) && rows_packed<pack>(b) && rows_packed<pack>(g) && rows_packed<pack>(da) &&
           rows_packed<pack>(db);
  }
};

}  // namespace detail

// y may alias a or b when its element type is theirs (each pack is read before the same thread
// writes it).
template <class In, class Out>
void swiglu_forward(device_matrix<const In> a, device_matrix<const In> b, device_matrix<Out> y,
                    cudaStream_t stream = nullptr) {
  check_same_shape(a, b, "cuda swiglu_forward: up");
  check_same_shape(a, y, "cuda swiglu_forward: y");
  const detail::swiglu_forward_op<In, Out> op{a, b, y};
  launch_elementwise(a.rows, a.cols, op, stream);
}

// da = g⊙b⊙σ(a)(1 + a(1−σ(a))), db = g⊙silu(a); da/db may alias a/b/g element for element.
template <class In, class G, class Out>
void swiglu_backward(device_matrix<const In> a, device_matrix<const In> b, device_matrix<const G> g,
                     device_matrix<Out> da, device_matrix<Out> db, cudaStream_t stream = nullptr) {
  check_same_shape(a, b, "cuda swiglu_backward: up");
  check_same_shape(a, g, "cuda swiglu_backward: g");
  check_same_shape(a, da, "cuda swiglu_backward: da");
  check_same_shape(a, db, "cuda swiglu_backward: db");
  const detail::swiglu_backward_op<In, G, Out> op{a, b, g, da, db};
  launch_elementwise(a.rows, a.cols, op, stream);
}

}  // namespace aq::cuda
