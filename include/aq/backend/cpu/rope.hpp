// Rotary position embedding: the interleaved M-RoPE tables of Qwen3-VL's text decoder (3-D
// positions t/h/w mapped onto frequency pairs as THW THW … TT) and the rotation applied to every
// q/k head, x' = x·cos + rot(x)·sin with rot(x) = cat(−x[n/2:], x[:n/2]), and its input gradient.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"
#include "aq/model/rope_frequencies.hpp"

namespace aq::cpu {

// The frequencies are shared with the CUDA tables (model/rope_frequencies.hpp).
using aq::rope_inv_freq;

// Which position axis (0 = t, 1 = h, 2 = w) drives frequency pair j: h on j ≡ 1 (mod 3) for the
// first 3·section[1] pairs, w on j ≡ 2 (mod 3) for the first 3·section[2], t everywhere else.
inline int mrope_axis(std::int64_t j, const std::array<std::int64_t, 3>& section) {
  if (j % 3 == 1 && j < 3 * section[1]) return 1;
  if (j % 3 == 2 && j < 3 * section[2]) return 2;
  return 0;
}

// cos/sin tables [tokens, dim] for 3-D positions given as three rows of `tokens` ids.
inline void mrope_tables(const std::int64_t* pos_t, const std::int64_t* pos_h, const std::int64_t* pos_w,
                         std::int64_t tokens, const std::vector<float>& inv_freq,
                         const std::array<std::int64_t, 3>& section, tensor& cos, tensor& sin) {
  const auto half = static_cast<std::int64_t>(inv_freq.size());
  if (section[0] + section[1] + section[2] != half) {
    throw error("mrope_tables: mrope_section sums to " + std::to_string(section[0] + section[1] + section[2]) +
                ", expected head_dim/2 = " + std::to_string(half));
  }
  cos = tensor({tokens, 2 * half});
  sin = tensor({tokens, 2 * half});
  const std::int64_t* axes[3] = {pos_t, pos_h, pos_w};
  for (std::int64_t n = 0; n < tokens; ++n) {
    for (std::int64_t j = 0; j < half; ++j) {
      const float angle = static_cast<float>(axes[mrope_axis(j, section)][n]) * inv_freq[static_cast<std::size_t>(j)];
      const float c = std::cos(angle);
      const float s = std::sin(angle);
      cos.data()[n * 2 * half + j] = c;
      cos.data()[n * 2 * half + j + half] = c;
      sin.data()[n * 2 * half + j] = s;
      sin.data()[n * 2 * half + j + half] = s;
    }
  }
}

// In place on x [tokens, heads·dim] with tables [tokens, dim].
inline void rope_forward(const matrix_view& x, std::int64_t heads, const tensor& cos, const tensor& sin) {
  const std::int64_t dim = cos.dim(1);
  const std::int64_t half = dim / 2;
  if (x.cols != heads * dim || cos.dim(0) != x.rows) throw error("rope_forward: tables do not match the input");
  default_thread_pool().parallel_for(x.rows, 32, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t n = r0; n < r1; ++n) {
      const float* c = cos.data() + n * dim;
      const float* s = sin.data() + n * dim;
      for (std::int64_t h = 0; h < heads; ++h) {
        float* v = x.row(n) + h * dim;
        for (std::int64_t i = 0; i < half; ++i) {
          const float a = v[i];
          const float b = v[i + half];
          v[i] = a * c[i] + (-b) * s[i];
          v[i + half] = b * c[i + half] + a * s[i + half];
        }
      }
    }
  });
}

// In place: dx = g·cos + rotᵀ(g·sin), rotᵀ(z) = cat(z[n/2:], −z[:n/2]).
inline void rope_backward(const matrix_view& g, std::int64_t heads, const tensor& cos, const tensor& sin) {
  const std::int64_t dim = cos.dim(1);
  const std::int64_t half = dim / 2;
  if (g.cols != heads * dim || cos.dim(0) != g.rows) throw error("rope_backward: tables do not match the gradient");
  default_thread_pool().parallel_for(g.rows, 32, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t n = r0; n < r1; ++n) {
      const float* c = cos.data() + n * dim;
      const float* s = sin.data() + n * dim;
      for (std::int64_t h = 0; h < heads; ++h) {
        float* v = g.row(n) + h * dim;
        for (std::int64_t i = 0; i < half; ++i) {
          const float a = v[i];
          const float b = v[i + half];
          v[i] = a * c[i] + b * s[i + half];
          v[i + half] = b * c[i + half] - a * s[i];
        }
      }
    }
  });
}

}  // namespace aq::cpu
