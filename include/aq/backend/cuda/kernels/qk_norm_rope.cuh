// Qwen3's per-head q/k RMSNorm followed by the rotary embedding, in one pass that writes the
// attention operand directly (bf16 for the tensor-core kernels): one warp per (token, head) row
// instead of a norm kernel, a rope kernel and a cast over fp32 intermediates. Same arithmetic as
// rms_norm_forward + rope_forward (fp64 sum of squares, y = w·(x·r), then the rotation in fp32);
// only the order of the fp64 sum differs. The backward is fused the same way: the attention's
// input gradient (bf16) goes through the transposed rotation and the norm's backward in one pass,
// with rope_backward + rms_norm_backward's arithmetic.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/error.hpp"

namespace aq::cuda {

namespace detail {

inline constexpr int qk_warps_per_block = 8;

// A warp's first row and the stride of its grid-stride loop over rows, and its lane.
struct qk_warp_rows {
  int lane;
  std::int64_t first, stride;
};
__device__ inline qk_warp_rows warp_rows() {
  return {static_cast<int>(threadIdx.x) & 31,
          static_cast<std::int64_t>(blockIdx.x) * qk_warps_per_block + (threadIdx.x >> 5),
          static_cast<std::int64_t>(gridDim.x) * qk_warps_per_block};
}

// A row of 32·K elements as the lanes hold it: lane l's slot j is column l + 32·j, and slots j and
// j + K/2 hold the column pair (i, i + half) that the rotation mixes.
template <int K>
struct row_slots {
  static_assert(K % 2 == 0, "a row splits into two halves of whole lane slots");
  static constexpr int half_slots = K / 2;
  static constexpr std::int64_t half = 16 * K;
};

// x: [tokens·heads, dim] (rows of one token consecutive), cos/sin [tokens, dim].
template <class In, class Out>
__global__ void __launch_bounds__(32 * qk_warps_per_block)
    qk_norm_rope_kernel(device_matrix<const In> x, std::int64_t heads, const float* weight, float eps,
                        device_matrix<const float> cos, device_matrix<const float> sin, device_matrix<Out> y,
                        float* inv_rms) {
  const auto [lane, first, stride] = warp_rows();
  const std::int64_t half = x.cols / 2;
  for (std::int64_t r = first; r < x.rows; r += stride) {
    const In* in = x.row(r);
    double sum = 0.0;
    for (std::int64_t c = lane; c < x.cols; c += 32) {
      const double v = to_float(in[c]);
      sum += v * v;
    }
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    const float mean = static_cast<float>(sum / static_cast<double>(x.cols));
    const float rr = 1.0f / sqrtf(mean + eps);
    const std::int64_t token = r / heads;
    const float* c = cos.row(token);
    const float* s = sin.row(token);
    Out* out = y.row(r);
    for (std::int64_t i = lane; i < half; i += 32) {
      const float a = weight[i] * (to_float(in[i]) * rr);
      const float b = weight[i + half] * (to_float(in[i + half]) * rr);
      out[i] = from_float<Out>(a * c[i] + (-b) * s[i]);
      out[i + half] = from_float<Out>(b * c[i + half] + a * s[i + half]);
    }
    if (inv_rms != nullptr && lane == 0) inv_rms[r] = rr;
  }
}

// The same for rows of 32·K elements (head_dim 64, 128, 256): each lane holds its K elements in
// registers between the norm's sum and the rotation instead of reading them again, with the
// generic kernel's arithmetic in its order (the same bits).
template <int K, class In, class Out>
__global__ void __launch_bounds__(32 * qk_warps_per_block)
    qk_norm_rope_cached_kernel(device_matrix<const In> x, std::int64_t heads, const float* weight, float eps,
                               device_matrix<const float> cos, device_matrix<const float> sin, device_matrix<Out> y,
                               float* inv_rms) {
  constexpr int half_slots = row_slots<K>::half_slots;
  constexpr std::int64_t half = row_slots<K>::half;
  const auto [lane, first, stride] = warp_rows();
  for (std::int64_t r = first; r < x.rows; r += stride) {
    const In* in = x.row(r);
    float v[K];
#pragma unroll
    for (int j = 0; j < K; ++j) v[j] = to_float(in[lane + 32 * j]);
    double sum = 0.0;
#pragma unroll
    for (int j = 0; j < K; ++j) sum += static_cast<double>(v[j]) * static_cast<double>(v[j]);
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    const float mean = static_cast<float>(sum / static_cast<double>(32 * K));
    const float rr = 1.0f / sqrtf(mean + eps);
    const std::int64_t token = r / heads;
    const float* c = cos.row(token);
    const float* s = sin.row(token);
    Out* out = y.row(r);
#pragma unroll
    for (int j = 0; j < half_slots; ++j) {
      const std::int64_t i = lane + 32 * j;
      const float a = weight[i] * (v[j] * rr);
      const float b = weight[i + half] * (v[j + half_slots] * rr);
      out[i] = from_float<Out>(a * c[i] + (-b) * s[i]);
      out[i + half] = from_float<Out>(b * c[i + half] + a * s[i + half]);
    }
    if (inv_rms != nullptr && lane == 0) inv_rms[r] = rr;
  }
}

// The transposed rotation of a row's gradient at column pair (i, i + half), as rope_backward.
template <class G>
__device__ inline float2 rope_transposed(const G* g, const float* c, const float* s, std::int64_t i, std::int64_t half) {
  const float a = to_float(g[i]);
  const float b = to_float(g[i + half]);
  return {a * c[i] + b * s[i + half], b * c[i + half] - a * s[i]};
}

// dx = rms_norm_backward(x, ropeᵀ(dy)) per (token, head) row, one warp a row.
template <class G, class In, class Out>
__global__ void __launch_bounds__(32 * qk_warps_per_block)
    qk_rope_norm_backward_kernel(device_matrix<const G> dy, std::int64_t heads, device_matrix<const In> x,
                                 const float* weight, const float* inv_rms, device_matrix<const float> cos,
                                 device_matrix<const float> sin, device_matrix<Out> dx) {
  const auto [lane, first, stride] = warp_rows();
  const std::int64_t half = x.cols / 2;
  for (std::int64_t r = first; r < x.rows; r += stride) {
    const G* g = dy.row(r);
    const In* in = x.row(r);
    const float* c = cos.row(r / heads);  // the row's token's tables
    const float* s = sin.row(r / heads);
    const float rr = inv_rms[r];
    double dot = 0.0;
    for (std::int64_t i = lane; i < half; i += 32) {
      const float2 u = rope_transposed(g, c, s, i, half);
      dot += static_cast<double>(u.x * weight[i]) * (to_float(in[i]) * rr);
      dot += static_cast<double>(u.y * weight[i + half]) * (to_float(in[i + half]) * rr);
    }
    for (int offset = 16; offset > 0; offset >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    const float mean = static_cast<float>(dot / static_cast<double>(x.cols));
    Out* out = dx.row(r);
    for (std::int64_t i = lane; i < half; i += 32) {
      const float2 u = rope_transposed(g, c, s, i, half);
      out[i] = from_float<Out>(rr * (u.x * weight[i] - to_float(in[i]) * rr * mean));
      out[i + half] = from_float<Out>(rr * (u.y * weight[i + half] - to_float(in[i + half]) * rr * mean));
    }
  }
}

// The same for rows of 32·K elements, each lane's rotated gradient and input held in registers
// between the dot product and the output (the generic kernel's arithmetic, in its order).
template <int K, class G, class In, class Out>
__global__ void __launch_bounds__(32 * qk_warps_per_block)
    qk_rope_norm_backward_cached_kernel(device_matrix<const G> dy, std::int64_t heads, device_matrix<const In> x,
                                        const float* weight, const float* inv_rms, device_matrix<const float> cos,
                                        device_matrix<const float> sin, device_matrix<Out> dx) {
  constexpr int half_slots = row_slots<K>::half_slots;
  constexpr std::int64_t half = row_slots<K>::half;
  const auto [lane, first, stride] = warp_rows();
  for (std::int64_t r = first; r < x.rows; r += stride) {
    float2 u[half_slots];  // the rotated gradient and the input of the lane's column pairs
    float lo[half_slots], hi[half_slots];
    double dot = 0.0;
    const G* g = dy.row(r);
    const In* in = x.row(r);
    const float* c = cos.row(r / heads);  // the row's token's tables
    const float* s = sin.row(r / heads);
    const float rr = inv_rms[r];
#pragma unroll
    for (int j = 0; j < half_slots; ++j) {
      const std::int64_t i = lane + 32 * j;
      u[j] = rope_transposed(g, c, s, i, half);
      lo[j] = to_float(in[i]);
      hi[j] = to_float(in[i + half]);
      dot += static_cast<double>(u[j].x * weight[i]) * (lo[j] * rr);
      dot += static_cast<double>(u[j].y * weight[i + half]) * (hi[j] * rr);
    }
    for (int offset = 16; offset > 0; offset >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    const float mean = static_cast<float>(dot / static_cast<double>(32 * K));
    Out* out = dx.row(r);
#pragma unroll
    for (int j = 0; j < half_slots; ++j) {
      const std::int64_t i = lane + 32 * j;
      out[i] = from_float<Out>(rr * (u[j].x * weight[i] - lo[j] * rr * mean));
      out[i + half] = from_float<Out>(rr * (u[j].y * weight[i + half] - hi[j] * rr * mean));
    }
  }
}

template <class X>
void check_qk_rows(const device_matrix<X>& x, std::int64_t heads, const device_matrix<const float>& cos,
                   const device_matrix<const float>& sin, const char* what) {
  if (heads <= 0 || x.rows % heads != 0 || x.cols % 2 != 0 || cos.cols != x.cols || sin.cols != x.cols ||
      cos.rows != x.rows / heads || sin.rows != cos.rows) {
    throw error(std::string(what) + ": x [" + std::to_string(x.rows) + ", " + std::to_string(x.cols) + "] with " +
                std::to_string(heads) + " heads does not match tables [" + std::to_string(cos.rows) + ", " +
                std::to_string(cos.cols) + "]");
  }
}

inline unsigned qk_row_blocks(std::int64_t rows) {
  const std::int64_t blocks = (rows + qk_warps_per_block - 1) / qk_warps_per_block;
  return static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

// cached.operator()<K>() for rows of 32·K elements held in registers (K = 2, 4, 8: head_dim 64,
// 128, 256), else generic().
template <class Cached, class Generic>
void by_row_slots(std::int64_t cols, Cached&& cached, Generic&& generic) {
  switch (cols) {
    case 64: cached.template operator()<2>(); break;
    case 128: cached.template operator()<4>(); break;
    case 256: cached.template operator()<8>(); break;
    default: generic(); break;
  }
}

}  // namespace detail

// y = rope(rms_norm(x)) per head; inv_rms[row] (device fp32) kept for the norm's backward.
template <class In, class Out>
void qk_norm_rope_forward(device_matrix<const In> x, std::int64_t heads, const float* weight, float eps,
                          device_matrix<const float> cos, device_matrix<const float> sin, device_matrix<Out> y,
                          float* inv_rms, cudaStream_t stream = nullptr) {
  check_same_shape(x, y, "cuda qk_norm_rope_forward: y");
  detail::check_qk_rows(x, heads, cos, sin, "cuda qk_norm_rope_forward");
  if (x.rows == 0) return;
  const unsigned blocks = detail::qk_row_blocks(x.rows), threads = 32 * detail::qk_warps_per_block;
  detail::by_row_slots(
      x.cols,
      [&]<int K>() {
        detail::qk_norm_rope_cached_kernel<K, In, Out><<<blocks, threads, 0, stream>>>(x, heads, weight, eps, cos, sin, y, inv_rms);
      },
      [&] { detail::qk_norm_rope_kernel<In, Out><<<blocks, threads, 0, stream>>>(x, heads, weight, eps, cos, sin, y, inv_rms); });
  AQ_CUDA_CHECK_LAUNCH();
}

// dx = the input gradient of qk_norm_rope_forward for the output gradient dy (x, weight and
// inv_rms as in the forward): rope_backward then rms_norm_backward in one pass.
template <class G, class In, class Out>
void qk_rope_norm_backward(device_matrix<const G> dy, std::int64_t heads, device_matrix<const In> x, const float* weight,
                           const float* inv_rms, device_matrix<const float> cos, device_matrix<const float> sin,
                           device_matrix<Out> dx, cudaStream_t stream = nullptr) {
  check_same_shape(x, dy, "cuda qk_rope_norm_backward: dy");
  check_same_shape(x, dx, "cuda qk_rope_norm_backward: dx");
  detail::check_qk_rows(x, heads, cos, sin, "cuda qk_rope_norm_backward");
  if (x.rows == 0) return;
  const unsigned blocks = detail::qk_row_blocks(x.rows), threads = 32 * detail::qk_warps_per_block;
  detail::by_row_slots(
      x.cols,
      [&]<int K>() {
        detail::qk_rope_norm_backward_cached_kernel<K, G, In, Out>
            <<<blocks, threads, 0, stream>>>(dy, heads, x, weight, inv_rms, cos, sin, dx);
      },
      [&] {
        detail::qk_rope_norm_backward_kernel<G, In, Out><<<blocks, threads, 0, stream>>>(dy, heads, x, weight, inv_rms, cos, sin, dx);
      });
  AQ_CUDA_CHECK_LAUNCH();
}

}  // namespace aq::cuda
