// Next-token cross-entropy over a large vocabulary on the GPU without materialising the logits:
// the caller (qwen3_vl_text_model) runs the LM head over vocabulary chunks, an online log-sum-exp
// keeps (max, Σexp) per row, and a second pass over recomputed chunks emits dlogits =
// (softmax − onehot)/targets chunk by chunk, feeding the caller's input-gradient GEMM. Semantics as cpu::causal_lm_loss (shifted labels,
// −100 ignored, mean over valid targets); row statistics in fp64, loss summed in a fixed order.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/block_reduce.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/elementwise.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/model/causal_lm_targets.hpp"

namespace aq::cuda {

// The targets and their count are the CPU loss's (one definition of the label shift).
using aq::ignore_index;
using aq::lm_targets;

inline lm_targets causal_lm_targets(const std::vector<std::int64_t>& labels, std::int64_t batch, std::int64_t seq,
                                    std::int64_t vocab) {
  return aq::causal_lm_targets(labels, batch, seq, vocab, "cuda causal_lm_targets");
}

namespace detail {

inline constexpr int ce_block = 256;

// The kernels that are not templates are static: defined in a header, they would otherwise be
// defined again by every .cu file of a program that includes it.

// Online log-sum-exp: fold one chunk of logits (vocabulary columns [v0, v0 + cols)) into the
// per-row (max, Σexp(z − max)) and pick up the target's logit when it lies in the chunk.
static __global__ void __launch_bounds__(ce_block)
    ce_chunk_update_kernel(device_matrix<const float> logits, std::int64_t v0, const std::int64_t* target,
                           float* row_max, double* row_sum, float* target_logit) {
  __shared__ block_reducer<float, ce_block> red_f;
  __shared__ block_reducer<double, ce_block> red_d;
  for (std::int64_t r = blockIdx.x; r < logits.rows; r += gridDim.x) {
    const std::int64_t y = target[r];
    if (y == ignore_index) continue;  // uniform per block
    const float* z = logits.row(r);
    float m = -INFINITY;
    for (std::int64_t c = threadIdx.x; c < logits.cols; c += ce_block) m = fmaxf(m, z[c]);
    m = block_max(m, red_f);
    double s = 0.0;
    for (std::int64_t c = threadIdx.x; c < logits.cols; c += ce_block) s += expf(z[c] - m);
    s = block_sum(s, red_d);
    if (threadIdx.x == 0) {
      fold_log_sum_exp(row_max[r], row_sum[r], m, s);
      if (y >= v0 && y < v0 + logits.cols) target_logit[r] = z[y - v0];
    }
  }
}

static __global__ void ce_init_kernel(std::int64_t rows, float* row_max, double* row_sum, float* target_logit) {
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0;
    target_logit[r] = NAN;
  }
}

// lse[r] = max + log Σ; row_loss[r] = lse − z_target (0 for rows without a target).
static __global__ void ce_finalize_kernel(std::int64_t rows, const std::int64_t* target, const float* row_max,
                                          const double* row_sum, const float* target_logit, double* lse,
                                          double* row_loss) {
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    if (target[r] == ignore_index) {
      lse[r] = 0.0;
      row_loss[r] = 0.0;
      continue;
    }
    lse[r] = static_cast<double>(row_max[r]) + log(row_sum[r]);
    row_loss[r] = lse[r] - static_cast<double>(target_logit[r]);
  }
}

// dlogits of one chunk: exp(z − lse)/count − onehot/count, 0 on rows without a target; count is
// per row when row_inv_count is given (rows of several batches packed into one pass).
template <class Out>
struct ce_grad_op {
  device_matrix<const float> logits;
  std::int64_t v0;
  const std::int64_t* target;
  const double* lse;
  float inv_count;
  const float* row_inv_count;  // nullptr: inv_count for every row
  device_matrix<Out> grad;
  __device__ void operator()(std::int64_t r, std::int64_t c) const {
    const std::int64_t y = target[r];
    float g = 0.0f;
    if (y != ignore_index) {
      const float inv = row_inv_count != nullptr ? row_inv_count[r] : inv_count;
      g = expf(static_cast<float>(static_cast<double>(logits(r, c)) - lse[r])) * inv;
      if (v0 + c == y) g -= inv;
    }
    grad(r, c) = from_float<Out>(g);
  }
};

}  // namespace detail

// The chunk kernels, for callers that produce logits chunks themselves. State arrays are device
// buffers of `rows` elements.
struct cross_entropy_state {
  device_buffer<float> row_max;
  device_buffer<double> row_sum;
  device_buffer<float> target_logit;
  device_buffer<double> lse;
  device_buffer<double> row_loss;
  device_buffer<double> total;
  std::int64_t rows = 0;

  explicit cross_entropy_state(std::int64_t n)
      : row_max(static_cast<std::size_t>(n)),
        row_sum(static_cast<std::size_t>(n)),
        target_logit(static_cast<std::size_t>(n)),
        lse(static_cast<std::size_t>(n)),
        row_loss(static_cast<std::size_t>(n)),
        total(1),
        rows(n) {}

  void reset(cudaStream_t stream) {
    detail::ce_init_kernel<<<grid_for(rows, 256), 256, 0, stream>>>(rows, row_max.data(), row_sum.data(),
                                                                     target_logit.data());
    AQ_CUDA_CHECK_LAUNCH();
  }
  // Folds logits columns [v0, v0 + chunk.cols) of every row in.
  void update(device_matrix<const float> chunk, std::int64_t v0, const std::int64_t* target, cudaStream_t stream) {
    check_rows(chunk.rows, "update");
    if (rows == 0 || chunk.cols == 0) return;
    detail::ce_chunk_update_kernel<<<detail::row_grid(rows), detail::ce_block, 0, stream>>>(
        chunk, v0, target, row_max.data(), row_sum.data(), target_logit.data());
    AQ_CUDA_CHECK_LAUNCH();
  }
  // After the last chunk: lse and per-row losses; the loss sum lands in total[0].
  void finalize(const std::int64_t* target, cudaStream_t stream) {
    if (rows == 0) {
      total.fill_bytes(0, stream);
      return;
    }
    detail::ce_finalize_kernel<<<grid_for(rows, 256), 256, 0, stream>>>(rows, target, row_max.data(), row_sum.data(),
                                                                         target_logit.data(), lse.data(), row_loss.data());
    AQ_CUDA_CHECK_LAUNCH();
    detail::sum_rows_kernel<false><<<1, detail::sum_rows_block, 0, stream>>>(rows, row_loss.data(), total.data());
    AQ_CUDA_CHECK_LAUNCH();
  }
  // dlogits of one chunk (needs finalize first); grad may alias the chunk when Out is float.
  // row_inv_count (device, per row, optional) replaces 1/count row by row.
  template <class Out>
  void gradient(device_matrix<const float> chunk, std::int64_t v0, const std::int64_t* target, std::int64_t count,
                device_matrix<Out> grad, cudaStream_t stream, const float* row_inv_count = nullptr) const {
    check_rows(chunk.rows, "gradient");
    check_same_shape(chunk, grad, "cuda cross_entropy gradient: grad");
    const float inv_count = count > 0 ? 1.0f / static_cast<float>(count) : 0.0f;
    launch_elementwise(chunk.rows, chunk.cols,
                       detail::ce_grad_op<Out>{chunk, v0, target, lse.data(), inv_count, row_inv_count, grad}, stream);
  }

 private:
  void check_rows(std::int64_t n, const char* what) const {
    if (n != rows) {
      throw error(std::string("cuda cross_entropy ") + what + ": chunk has " + std::to_string(n) + " rows, state " +
                  std::to_string(rows));
    }
  }
};

}  // namespace aq::cuda
