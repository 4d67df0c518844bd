// Rotary position embedding on the GPU, matching backend/cpu/rope.hpp: the interleaved M-RoPE
// tables of the text decoder (t/h/w positions on frequency pairs THW THW … TT; the vision tower's
// 2-D tables are made on the host, qwen3_vl::vision_rotary_tables), and the rotation x' = x·cos + rot(x)·sin applied in place to
// every q/k head, with its input gradient. Tables are fp32 [tokens, head_dim].
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <string>

#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/elementwise.cuh"
#include "aq/core/error.hpp"

namespace aq::cuda {

namespace detail {

struct mrope_section3 {
  std::int64_t s[3];
};

// Same axis map as cpu::mrope_axis.
__device__ inline int mrope_axis(std::int64_t j, const mrope_section3& section) {
  if (j % 3 == 1 && j < 3 * section.s[1]) return 1;
  if (j % 3 == 2 && j < 3 * section.s[2]) return 2;
  return 0;
}

struct mrope_tables_op {
  const std::int64_t* pos;  // [3, tokens]: t, h, w
  std::int64_t tokens;
  const float* inv_freq;  // [half]
  std::int64_t half;
  mrope_section3 section;
  device_matrix<float> cos, sin;
  __device__ void operator()(std::int64_t n, std::int64_t j) const {
    const float angle = static_cast<float>(pos[mrope_axis(j, section) * tokens + n]) * inv_freq[j];
    const float c = cosf(angle);
    const float s = sinf(angle);
    cos(n, j) = c;
    cos(n, j + half) = c;
    sin(n, j) = s;
    sin(n, j + half) = s;
  }
};

template <class T, bool Backward>
struct rope_apply_op {
  device_matrix<T> x;  // [tokens, heads·dim]
  device_matrix<const float> cos, sin;
  std::int64_t half;
  __device__ void operator()(std::int64_t n, std::int64_t col) const {
    const std::int64_t h = col / half;
    const std::int64_t i = col % half;
    T* v = x.row(n) + h * 2 * half;
    const float* c = cos.row(n);
    const float* s = sin.row(n);
    const float a = to_float(v[i]);
    const float b = to_float(v[i + half]);
    if constexpr (!Backward) {
      v[i] = from_float<T>(a * c[i] + (-b) * s[i]);
      v[i + half] = from_float<T>(b * c[i + half] + a * s[i + half]);
    } else {  // transpose of the rotation: rotᵀ(z) = cat(z[n/2:], −z[:n/2])
      v[i] = from_float<T>(a * c[i] + b * s[i + half]);
      v[i + half] = from_float<T>(b * c[i + half] - a * s[i]);
    }
  }
};

template <class T>
void check_rope(const device_matrix<T>& x, std::int64_t heads, const device_matrix<const float>& cos,
                const device_matrix<const float>& sin, const char* what) {
  if (heads <= 0 || cos.cols % 2 != 0 || x.cols != heads * cos.cols || cos.rows != x.rows || sin.rows != cos.rows ||
      sin.cols != cos.cols) {
    throw error(std::string(what) + ": tables [" + std::to_string(cos.rows) + ", " + std::to_string(cos.cols) +
                "] do not match the input [" + std::to_string(x.rows) + ", " + std::to_string(x.cols) + "] with " +
                std::to_string(heads) + " heads");
  }
}

}  // namespace detail

// cos/sin [tokens, 2·half] from positions pos [3, tokens] (device int64: t, h, w rows) and
// inv_freq [half] (device, cpu::rope_inv_freq's values); section sums to half.
inline void mrope_tables(const std::int64_t* pos, std::int64_t tokens, const float* inv_freq, std::int64_t half,
                         const std::array<std::int64_t, 3>& section, device_matrix<float> cos, device_matrix<float> sin,
                         cudaStream_t stream = nullptr) {
  if (section[0] + section[1] + section[2] != half) {
    throw error("cuda mrope_tables: mrope_section sums to " + std::to_string(section[0] + section[1] + section[2]) +
                ", expected head_dim/2 = " + std::to_string(half));
  }
  if (cos.rows != tokens || cos.cols != 2 * half || sin.rows != tokens || sin.cols != 2 * half) {
    throw error("cuda mrope_tables: tables must be [" + std::to_string(tokens) + ", " + std::to_string(2 * half) + "]");
  }
  launch_elementwise(tokens, half,
                     detail::mrope_tables_op{pos, tokens, inv_freq, half, {{section[0], section[1], section[2]}}, cos, sin},
                     stream);
}

// In place on x [tokens, heads·dim] (a column block of a wider matrix is fine through ld).
template <class T>
void rope_forward(device_matrix<T> x, std::int64_t heads, device_matrix<const float> cos, device_matrix<const float> sin,
                  cudaStream_t stream = nullptr) {
  detail::check_rope(x, heads, cos, sin, "cuda rope_forward");
  launch_elementwise(x.rows, x.cols / 2, detail::rope_apply_op<T, false>{x, cos, sin, cos.cols / 2}, stream);
}

// In place: g ← g·cos + rotᵀ(g·sin), the input gradient of rope_forward.
template <class T>
void rope_backward(device_matrix<T> g, std::int64_t heads, device_matrix<const float> cos, device_matrix<const float> sin,
                   cudaStream_t stream = nullptr) {
  detail::check_rope(g, heads, cos, sin, "cuda rope_backward");
  launch_elementwise(g.rows, g.cols / 2, detail::rope_apply_op<T, true>{g, cos, sin, cos.cols / 2}, stream);
}

}  // namespace aq::cuda
