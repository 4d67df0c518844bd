// The KL-div score's reduction on the GPU: S = −Σ_rows Σ_v p_v·log q_v of one quantized pass, p
// the unquantized next-token distribution (its logits kept on the device, rows × vocab fp32) and
// q arriving as logits in vocabulary chunks (online log-sum-exp), every row statistic in fp64 and
// the rows summed in a fixed order. Device twin of score::reference_distribution + cross_entropy_sum.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "aq/backend/cuda/kernels/block_reduce.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/error.hpp"

namespace aq::cuda {

namespace detail {

inline constexpr int kl_block = 256;

// The kernels are templates only so that this header may be included by several translation
// units of one program (a plain __global__ function defined in a header would be defined twice).

// Per reference row: lse = max + log Σ exp(z − max) and Σ_v p_v with p_v = exp(z_v − lse), both in
// fp64 as the CPU's log_sum_exp. Σ p is 1 up to rounding; it is kept so that the chunked sum
// below is algebraically the CPU's Σ p·(q − lse_q).
template <int Unused = 0>
__global__ void __launch_bounds__(kl_block)
    kl_reference_rows_kernel(device_matrix<const float> logits, double* lse, double* p_sum) {
  __shared__ block_reducer<float, kl_block> red_f;
  __shared__ block_reducer<double, kl_block> red_d;
  for (std::int64_t r = blockIdx.x; r < logits.rows; r += gridDim.x) {
    const float* z = logits.row(r);
    float m = -INFINITY;
    for (std::int64_t c = threadIdx.x; c < logits.cols; c += kl_block) m = fmaxf(m, z[c]);
    m = block_max(m, red_f);
    double s = 0.0;
    for (std::int64_t c = threadIdx.x; c < logits.cols; c += kl_block) s += exp(static_cast<double>(z[c]) - m);
    s = block_sum(s, red_d);
    const double l = static_cast<double>(m) + log(s);
    double ps = 0.0;
    for (std::int64_t c = threadIdx.x; c < logits.cols; c += kl_block) ps += exp(static_cast<double>(z[c]) - l);
    ps = block_sum(ps, red_d);
    if (threadIdx.x == 0) {
      lse[r] = l;
      p_sum[r] = ps;
    }
  }
}

template <int Unused = 0>
__global__ void kl_reset_kernel(std::int64_t rows, float* q_max, double* q_sum, double* pq) {
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    q_max[r] = -INFINITY;
    q_sum[r] = 0.0;
    pq[r] = 0.0;
  }
}

// One chunk of q's logits (vocabulary columns [v0, v0 + q.cols)) folded into each row's online
// (max, Σ exp(q − max)) and pq = Σ p_v·(q_v − lse_p). Shifting q by the row's lse_p keeps the
// products at the scale of log-probabilities, so that subtracting lse_q at the end cancels no
// large magnitudes.
template <int Unused = 0>
__global__ void __launch_bounds__(kl_block)
    kl_chunk_kernel(device_matrix<const float> q, std::int64_t v0, device_matrix<const float> p_logits,
                    const double* p_lse, float* q_max, double* q_sum, double* pq) {
  __shared__ block_reducer<float, kl_block> red_f;
  __shared__ block_reducer<double, kl_block> red_d;
  for (std::int64_t r = blockIdx.x; r < q.rows; r += gridDim.x) {
    const float* qr = q.row(r);
    const float* pr = p_logits.row(r) + v0;
    const double lp = p_lse[r];
    float m = -INFINITY;
    for (std::int64_t c = threadIdx.x; c < q.cols; c += kl_block) m = fmaxf(m, qr[c]);
    m = block_max(m, red_f);
    double s = 0.0, a = 0.0;
    for (std::int64_t c = threadIdx.x; c < q.cols; c += kl_block) {
      const double x = qr[c];
      s += exp(x - m);
      a += exp(static_cast<double>(pr[c]) - lp) * (x - lp);
    }
    s = block_sum(s, red_d);
    a = block_sum(a, red_d);
    if (threadIdx.x == 0) {
      fold_log_sum_exp(q_max[r], q_sum[r], m, s);
      pq[r] += a;
    }
  }
}

// row_ce = −Σ_v p_v (q_v − lse_q) = −(pq − (lse_q − lse_p)·Σ p).
template <int Unused = 0>
__global__ void kl_row_kernel(std::int64_t rows, const double* p_lse, const double* p_sum, const float* q_max,
                              const double* q_sum, const double* pq, double* row_ce) {
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const double lse_q = static_cast<double>(q_max[r]) + log(q_sum[r]);
    row_ce[r] = -(pq[r] - (lse_q - p_lse[r]) * p_sum[r]);
  }
}

}  // namespace detail

// The unquantized distribution of one pass on the device: its logits [rows, vocab] stored chunk
// by chunk in vocabulary order, then per row log Σ exp and Σ p. Memory: rows × vocab × 4 bytes
// plus 16 bytes a row (buffers grow to the largest pass and are reused).
class device_reference_distribution {
 public:
  void begin(std::int64_t rows, std::int64_t vocab) {
    if (rows <= 0 || vocab <= 0) {
      throw error("kl_div reference: rows " + std::to_string(rows) + " and vocab " + std::to_string(vocab) +
                  " must be positive");
    }
    rows_ = rows;
    vocab_ = vocab;
    stored_ = 0;
    finalized_ = false;
    logits_.grow_to(rows * vocab);
    lse_.grow_to(rows);
    p_sum_.grow_to(rows);
  }
  // Columns [v0, v0 + chunk.cols) of every row; chunks come in vocabulary order.
  void store(device_matrix<const float> chunk, std::int64_t v0, cudaStream_t stream) {
    if (chunk.rows != rows_ || v0 != stored_ || chunk.cols <= 0 || v0 + chunk.cols > vocab_ || chunk.ld < chunk.cols) {
      throw error("kl_div reference: chunk [" + std::to_string(chunk.rows) + ", " + std::to_string(chunk.cols) +
                  "] at column " + std::to_string(v0) + " does not continue logits [" + std::to_string(rows_) + ", " +
                  std::to_string(vocab_) + "] stored up to column " + std::to_string(stored_));
    }
    AQ_CUDA_CHECK(cudaMemcpy2DAsync(logits_.data() + v0, static_cast<std::size_t>(vocab_) * sizeof(float), chunk.data,
                                    static_cast<std::size_t>(chunk.ld) * sizeof(float),
                                    static_cast<std::size_t>(chunk.cols) * sizeof(float),
                                    static_cast<std::size_t>(chunk.rows), cudaMemcpyDeviceToDevice, stream));
    stored_ += chunk.cols;
  }
  // After the last chunk: each row's lse and Σ p.
  void finalize(cudaStream_t stream) {
    if (rows_ == 0 || stored_ != vocab_) {
      throw error("kl_div reference: finalized with " + std::to_string(stored_) + " of " + std::to_string(vocab_) +
                  " vocabulary columns stored");
    }
    detail::kl_reference_rows_kernel<><<<detail::row_grid(rows_), detail::kl_block, 0, stream>>>(
        logits(), lse_.data(), p_sum_.data());
    AQ_CUDA_CHECK_LAUNCH();
    finalized_ = true;
  }

  bool finalized() const { return finalized_; }
  std::int64_t rows() const { return rows_; }
  std::int64_t vocab() const { return vocab_; }
  device_matrix<const float> logits() const { return {logits_.data(), rows_, vocab_, vocab_}; }
  const double* lse() const { return lse_.data(); }
  const double* p_sum() const { return p_sum_.data(); }

 private:
  std::int64_t rows_ = 0;
  std::int64_t vocab_ = 0;
  std::int64_t stored_ = 0;
  bool finalized_ = false;
  device_buffer<float> logits_;
  device_buffer<double> lse_, p_sum_;
};

// −Σ_rows Σ_v p_v log q_v of one pass against a finalized reference, from q's logits in
// vocabulary chunks: begin, update per chunk in order, finalize. Every row counts (padding too,
// as ModelOpt's kl_div sums them). Device state: 28 bytes a row.
class device_cross_entropy_sum {
 public:
  void begin(const device_reference_distribution& p, cudaStream_t stream) {
    if (!p.finalized()) throw error("kl_div cross-entropy: the reference distribution is not finalized");
    p_ = &p;
    seen_ = 0;
    const std::int64_t rows = p.rows();
    q_max_.grow_to(rows);
    q_sum_.grow_to(rows);
    pq_.grow_to(rows);
    row_ce_.grow_to(rows);
    detail::kl_reset_kernel<><<<grid_for(rows, 256), 256, 0, stream>>>(rows, q_max_.data(), q_sum_.data(), pq_.data());
    AQ_CUDA_CHECK_LAUNCH();
  }
  // Columns [v0, v0 + chunk.cols) of q's logits for every row; chunks come in vocabulary order.
  void update(device_matrix<const float> chunk, std::int64_t v0, cudaStream_t stream) {
    if (p_ == nullptr || chunk.rows != p_->rows() || v0 != seen_ || chunk.cols <= 0 || v0 + chunk.cols > p_->vocab()) {
      throw error("kl_div cross-entropy: chunk [" + std::to_string(chunk.rows) + ", " + std::to_string(chunk.cols) +
                  "] at column " + std::to_string(v0) + " does not continue the pass (" +
                  std::to_string(p_ != nullptr ? p_->rows() : 0) + " rows, " + std::to_string(seen_) + " of " +
                  std::to_string(p_ != nullptr ? p_->vocab() : 0) + " columns seen)");
    }
    detail::kl_chunk_kernel<><<<detail::row_grid(chunk.rows), detail::kl_block, 0, stream>>>(
        chunk, v0, p_->logits(), p_->lse(), q_max_.data(), q_sum_.data(), pq_.data());
    AQ_CUDA_CHECK_LAUNCH();
    seen_ += chunk.cols;
  }
  // After the last chunk: *total += the pass's sum over rows (total: device fp64, on `stream`).
  void finalize(double* total, cudaStream_t stream) {
    if (p_ == nullptr || seen_ != p_->vocab()) {
      throw error("kl_div cross-entropy: finalized with " + std::to_string(seen_) + " of " +
                  std::to_string(p_ != nullptr ? p_->vocab() : 0) + " vocabulary columns seen");
    }
    const std::int64_t rows = p_->rows();
    detail::kl_row_kernel<><<<grid_for(rows, 256), 256, 0, stream>>>(rows, p_->lse(), p_->p_sum(), q_max_.data(),
                                                                      q_sum_.data(), pq_.data(), row_ce_.data());
    AQ_CUDA_CHECK_LAUNCH();
    detail::sum_rows_kernel<true><<<1, detail::sum_rows_block, 0, stream>>>(rows, row_ce_.data(), total);
    AQ_CUDA_CHECK_LAUNCH();
    p_ = nullptr;
  }

 private:
  const device_reference_distribution* p_ = nullptr;
  std::int64_t seen_ = 0;
  device_buffer<float> q_max_;
  device_buffer<double> q_sum_, pq_, row_ce_;
};

}  // namespace aq::cuda
