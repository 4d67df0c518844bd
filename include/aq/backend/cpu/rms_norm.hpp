// RMSNorm (T5 style, no +1 offset) over the last dimension and its input gradient, as used by
// Qwen3's layer norms and the per-head q_norm/k_norm: y = w ⊙ x·r, r = (mean(x²) + eps)^-½.
#pragma once

#include <cmath>
#include <cstdint>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"

namespace aq::cpu {

// Rows of x are normalized independently; inv_rms[row] = r is saved for the backward.
inline void rms_norm_forward(const const_matrix_view& x, const float* weight, float eps, const matrix_view& y,
                             float* inv_rms) {
  if (y.rows != x.rows || y.cols != x.cols) throw error("rms_norm_forward: output shape differs from input");
  default_thread_pool().parallel_for(x.rows, 64, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* in = x.row(r);
      double sum = 0.0;
      for (std::int64_t c = 0; c < x.cols; ++c) sum += static_cast<double>(in[c]) * in[c];
      const float mean = static_cast<float>(sum / static_cast<double>(x.cols));
      const float rr = 1.0f / std::sqrt(mean + eps);
      float* out = y.row(r);
      for (std::int64_t c = 0; c < x.cols; ++c) out[c] = weight[c] * (in[c] * rr);
      if (inv_rms != nullptr) inv_rms[r] = rr;
    }
  });
}

// dx = r·(u − x̂·mean(u⊙x̂)), u = dy⊙w, x̂ = x·r. dx may alias dy; accumulate adds into dx.
inline void rms_norm_backward(const const_matrix_view& x, const float* weight, const float* inv_rms,
                              const const_matrix_view& dy, const matrix_view& dx, bool accumulate = false) {
  if (dy.rows != x.rows || dy.cols != x.cols || dx.rows != x.rows || dx.cols != x.cols) {
    throw error("rms_norm_backward: gradient shapes differ from the input");
  }
  default_thread_pool().parallel_for(x.rows, 64, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* in = x.row(r);
      const float* g = dy.row(r);
      const float rr = inv_rms[r];
      double dot = 0.0;
      for (std::int64_t c = 0; c < x.cols; ++c) dot += static_cast<double>(g[c] * weight[c]) * (in[c] * rr);
      const float mean = static_cast<float>(dot / static_cast<double>(x.cols));
      float* out = dx.row(r);
      for (std::int64_t c = 0; c < x.cols; ++c) {
        const float v = rr * (g[c] * weight[c] - in[c] * rr * mean);
        out[c] = accumulate ? out[c] + v : v;
      }
    }
  });
}

}  // namespace aq::cpu
