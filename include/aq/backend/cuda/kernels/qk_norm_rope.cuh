// Qwen3's per-head q/k RMSNorm followed by the rotary embedding, in one pass that writes the
// attention operand directly (bf16 for the tensor-core kernels): one warp per (token, head) row
// instead of a norm kernel, a rope kernel and a cast over fp32 intermediates. Same arithmetic as
// rms_norm_forward + rope_forward (fp64 sum of squares, y = w·(x·r), then the rotation in fp32);
// only the order of the fp64 sum differs.
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

// x: [tokens·heads, dim] (rows of one token consecutive), cos/sin [tokens, dim].
template <class In, class Out>
__global__ void __launch_bounds__(32 * qk_warps_per_block)
    qk_norm_rope_kernel(device_matrix<const In> x, std::int64_t heads, const float* weight, float eps,
                        device_matrix<const float> cos, device_matrix<const float> sin, device_matrix<Out> y,
                        float* inv_rms) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const std::int64_t warp = static_cast<std::int64_t>(blockIdx.x) * qk_warps_per_block + (threadIdx.x >> 5);
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * qk_warps_per_block;
  const std::int64_t half = x.cols / 2;
  for (std::int64_t r = warp; r < x.rows; r += stride) {
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

}  // namespace detail

// y = rope(rms_norm(x)) per head; inv_rms[row] (device fp32) kept for the norm's backward.
template <class In, class Out>
void qk_norm_rope_forward(device_matrix<const In> x, std::int64_t heads, const float* weight, float eps,
                          device_matrix<const float> cos, device_matrix<const float> sin, device_matrix<Out> y,
                          float* inv_rms, cudaStream_t stream = nullptr) {
  check_same_shape(x, y, "cuda qk_norm_rope_forward: y");
  if (heads <= 0 || x.rows % heads != 0 || x.cols % 2 != 0 || cos.cols != x.cols || sin.cols != x.cols ||
      cos.rows != x.rows / heads || sin.rows != cos.rows) {
    throw error("cuda qk_norm_rope_forward: x [" + std::to_string(x.rows) + ", " + std::to_string(x.cols) +
                "] with " + std::to_string(heads) + " heads does not match tables [" + std::to_string(cos.rows) +
                ", " + std::to_string(cos.cols) + "]");
  }
  if (x.rows == 0) return;
  const std::int64_t blocks = (x.rows + detail::qk_warps_per_block - 1) / detail::qk_warps_per_block;
  detail::qk_norm_rope_kernel<In, Out><<<static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8),
                                         32 * detail::qk_warps_per_block, 0, stream>>>(x, heads, weight, eps, cos,
                                                                                       sin, y, inv_rms);
  AQ_CUDA_CHECK_LAUNCH();
}

}  // namespace aq::cuda
