// The gradient (Fisher) score of one quantized module output on the GPU:
// score += Σ (dL/dY)²·(Y_r − Y)², with Y_r the output of the quantized GEMM, Y the unquantized
// one and G = dL/dY. One fused pass reads the three tensors once; each block reduces its rows in
// fp32, the partials are summed in fp64 by one block in a fixed order (no float atomics), so a
// score is bit-reproducible run to run and independent of the GPU's SM count.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "aq/backend/cuda/block_reduce.cuh"
#include "aq/backend/cuda/check.hpp"
#include "aq/backend/cuda/device_buffer.cuh"
#include "aq/backend/cuda/device_matrix.cuh"
#include "aq/core/bf16.hpp"

namespace aq::cuda {

// How Y_r − Y is rounded before squaring. ModelOpt forms the difference in the module dtype
// (bf16 for Qwen3-VL), so bf16 reproduces its scores; fp32 keeps the exact difference.
enum class score_difference { bf16, fp32 };

namespace detail {

inline constexpr int score_block = 256;
// Fixed, device-independent grid: the partial sums (and so the result's rounding) never depend
// on the GPU the score runs on.
inline constexpr int score_blocks = 512;

template <class TR, class TY, class TG>
__global__ void __launch_bounds__(score_block)
    score_partials_kernel(device_matrix<const TR> yr, device_matrix<const TY> y, device_matrix<const TG> g,
                          score_difference rounding, double* partials) {
  __shared__ block_reducer<float, score_block> red;
  float acc = 0.0f;
  for (std::int64_t r = blockIdx.x; r < y.rows; r += score_blocks) {
    const TR* pr = yr.row(r);
    const TY* py = y.row(r);
    const TG* pg = g.row(r);
    for (std::int64_t c = threadIdx.x; c < y.cols; c += score_block) {
      float d = to_float(pr[c]) - to_float(py[c]);
      if (rounding == score_difference::bf16) d = round_to_bf16(d);
      const float gv = to_float(pg[c]);
      acc += (gv * gv) * (d * d);
    }
  }
  const float block_total = block_sum(acc, red);
  if (threadIdx.x == 0) partials[blockIdx.x] = static_cast<double>(block_total);
}

__global__ void __launch_bounds__(score_blocks) score_total_kernel(const double* partials, double* score) {
  __shared__ block_reducer<double, score_blocks> red;
  const double total = block_sum(partials[threadIdx.x], red);
  if (threadIdx.x == 0) *score += total;
}

}  // namespace detail

// Scratch for accumulate_gradient_score (one per stream).
struct gradient_score_workspace {
  device_buffer<double> partials{static_cast<std::size_t>(detail::score_blocks)};
};

// *score (device fp64) += Σ_{r,c} g² · d², d = yr − y rounded per `rounding`. Stream-ordered, no sync.
template <class TR, class TY, class TG>
void accumulate_gradient_score(device_matrix<const TR> yr, device_matrix<const TY> y, device_matrix<const TG> g,
                               score_difference rounding, double* score, gradient_score_workspace& ws,
                               cudaStream_t stream = nullptr) {
  check_same_shape(y, yr, "cuda accumulate_gradient_score: y_r");
  check_same_shape(y, g, "cuda accumulate_gradient_score: grad_output");
  detail::score_partials_kernel<TR, TY, TG>
      <<<detail::score_blocks, detail::score_block, 0, stream>>>(yr, y, g, rounding, ws.partials.data());
  AQ_CUDA_CHECK_LAUNCH();
  detail::score_total_kernel<<<1, detail::score_blocks, 0, stream>>>(ws.partials.data(), score);
  AQ_CUDA_CHECK_LAUNCH();
}

}  // namespace aq::cuda
