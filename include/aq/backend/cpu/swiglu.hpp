// SwiGLU gate of the text MLP, y = silu(a) ⊙ b with silu(x) = x·σ(x), and its input gradient
// (da = g⊙b⊙σ(a)(1 + a(1−σ(a))), db = g⊙silu(a)). a = gate_proj output, b = up_proj output.
#pragma once

#include <cmath>
#include <cstdint>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"

namespace aq::cpu {

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

inline void swiglu_forward(const const_matrix_view& a, const const_matrix_view& b, const matrix_view& y) {
  if (a.rows != b.rows || a.cols != b.cols || y.rows != a.rows || y.cols != a.cols) {
    throw error("swiglu_forward: gate, up and output shapes differ");
  }
  default_thread_pool().parallel_for(a.rows, 16, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* pa = a.row(r);
      const float* pb = b.row(r);
      float* out = y.row(r);
      for (std::int64_t c = 0; c < a.cols; ++c) out[c] = pa[c] * sigmoid(pa[c]) * pb[c];
    }
  });
}

// da, db may not alias a, b.
inline void swiglu_backward(const const_matrix_view& a, const const_matrix_view& b, const const_matrix_view& g,
                            const matrix_view& da, const matrix_view& db) {
  if (g.rows != a.rows || g.cols != a.cols || da.rows != a.rows || db.rows != a.rows) {
    throw error("swiglu_backward: gradient shapes differ from the inputs");
  }
  default_thread_pool().parallel_for(a.rows, 16, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* pa = a.row(r);
      const float* pb = b.row(r);
      const float* pg = g.row(r);
      float* pda = da.row(r);
      float* pdb = db.row(r);
      for (std::int64_t c = 0; c < a.cols; ++c) {
        const float s = sigmoid(pa[c]);
        pda[c] = pg[c] * pb[c] * s * (1.0f + pa[c] * (1.0f - s));
        pdb[c] = pg[c] * pa[c] * s;
      }
    }
  });
}

}  // namespace aq::cpu
