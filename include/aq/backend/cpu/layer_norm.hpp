// LayerNorm over the last dimension (vision tower and mergers) and its input gradient:
// y = w ⊙ (x − μ)·r + b, r = (var(x) + eps)^-½ with the biased variance, as torch computes it.
#pragma once

#include <cmath>
#include <cstdint>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"

namespace aq::cpu {

// mean[row] and inv_std[row] are saved for the backward.
inline void layer_norm_forward(const const_matrix_view& x, const float* weight, const float* bias, float eps,
                               const matrix_view& y, float* mean, float* inv_std) {
  if (y.rows != x.rows || y.cols != x.cols) throw error("layer_norm_forward: output shape differs from input");
  default_thread_pool().parallel_for(x.rows, 64, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* in = x.row(r);
      double s = 0.0;
      for (std::int64_t c = 0; c < x.cols; ++c) s += in[c];
      const double mu = s / static_cast<double>(x.cols);
      double v = 0.0;
      for (std::int64_t c = 0; c < x.cols; ++c) v += (in[c] - mu) * (in[c] - mu);
      const float m = static_cast<float>(mu);
      const float rr = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(x.cols) + eps));
      float* out = y.row(r);
      for (std::int64_t c = 0; c < x.cols; ++c) out[c] = (in[c] - m) * rr * weight[c] + bias[c];
      mean[r] = m;
      inv_std[r] = rr;
    }
  });
}

// dx = r·(u − mean(u) − x̂·mean(u⊙x̂)), u = dy⊙w. dx may alias dy.
inline void layer_norm_backward(const const_matrix_view& x, const float* weight, const float* mean,
                                const float* inv_std, const const_matrix_view& dy, const matrix_view& dx,
                                bool accumulate = false) {
  if (dy.rows != x.rows || dy.cols != x.cols || dx.rows != x.rows || dx.cols != x.cols) {
    throw error("layer_norm_backward: gradient shapes differ from the input");
  }
  default_thread_pool().parallel_for(x.rows, 64, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* in = x.row(r);
      const float* g = dy.row(r);
      double su = 0.0;
      double sux = 0.0;
      for (std::int64_t c = 0; c < x.cols; ++c) {
        const double u = static_cast<double>(g[c]) * weight[c];
        su += u;
        sux += u * ((in[c] - mean[r]) * inv_std[r]);
      }
      const float mu = static_cast<float>(su / static_cast<double>(x.cols));
      const float mux = static_cast<float>(sux / static_cast<double>(x.cols));
      float* out = dx.row(r);
      for (std::int64_t c = 0; c < x.cols; ++c) {
        const float xhat = (in[c] - mean[r]) * inv_std[r];
        const float v = inv_std[r] * (g[c] * weight[c] - mu - xhat * mux);
        out[c] = accumulate ? out[c] + v : v;
      }
    }
  });
}

}  // namespace aq::cpu
