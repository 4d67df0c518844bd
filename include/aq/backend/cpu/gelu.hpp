// GELU activations of the vision tower and their derivatives: the tanh approximation
// (gelu_pytorch_tanh, vision block MLPs) and the exact erf form (patch mergers).
#pragma once

#include <cmath>
#include <cstdint>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"

namespace aq::cpu {

struct gelu_tanh {
  static float value(float x) {
    constexpr float k = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
  }
  static float derivative(float x) {
    constexpr float k = 0.7978845608028654f;
    const float t = std::tanh(k * (x + 0.044715f * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * x * x);
  }
};

struct gelu_erf {
  static float value(float x) { return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f)); }
  static float derivative(float x) {
    const float cdf = 0.5f * (1.0f + std::erf(x * 0.7071067811865476f));
    const float pdf = 0.3989422804014327f * std::exp(-0.5f * x * x);
    return cdf + x * pdf;
  }
};

// y = act(x) elementwise (y may alias x only when the backward does not need x).
template <class Act>
void activation_forward(const const_matrix_view& x, const matrix_view& y) {
  if (y.rows != x.rows || y.cols != x.cols) throw error("activation_forward: output shape differs from input");
  default_thread_pool().parallel_for(x.rows, 16, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      for (std::int64_t c = 0; c < x.cols; ++c) y(r, c) = Act::value(x(r, c));
    }
  });
}

// dx = g ⊙ act'(x); dx may alias g.
template <class Act>
void activation_backward(const const_matrix_view& x, const const_matrix_view& g, const matrix_view& dx) {
  if (g.rows != x.rows || g.cols != x.cols || dx.rows != x.rows || dx.cols != x.cols) {
    throw error("activation_backward: gradient shapes differ from the input");
  }
  default_thread_pool().parallel_for(x.rows, 16, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      for (std::int64_t c = 0; c < x.cols; ++c) dx(r, c) = g(r, c) * Act::derivative(x(r, c));
    }
  });
}

}  // namespace aq::cpu
