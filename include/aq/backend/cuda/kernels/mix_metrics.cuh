// The evaluation's reduction on the GPU: per labelled row of a pass, KL(p‖q), −log q(label) and
// whether argmax q equals argmax p, p the unquantized next-token distribution (its logits kept
// on the device) and q arriving as logits in vocabulary chunks (online log-sum-exp and argmax).
// Row statistics in fp64, rows summed in a fixed order. Device twin of score::token_metrics.
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
#include "aq/backend/cuda/kernels/kl_div.cuh"
#include "aq/core/error.hpp"

namespace aq::cuda {

namespace detail {

inline constexpr int eval_block = 256;

// The first index of the largest value (torch.argmax's tie rule).
struct arg_max {
  float value;
  std::int64_t index;
};
struct arg_max_op {
  __device__ arg_max operator()(const arg_max& a, const arg_max& b) const {
    if (a.value != b.value) return a.value > b.value ? a : b;
    return a.index <= b.index ? a : b;
  }
};

template <int Block>
__device__ arg_max block_arg_max(arg_max value, typename cub::BlockReduce<arg_max, Block>::TempStorage& temp,
                                 arg_max& result) {
  const arg_max total = cub::BlockReduce<arg_max, Block>(temp).Reduce(value, arg_max_op{});
  if (threadIdx.x == 0) result = total;
  __syncthreads();
  const arg_max out = result;
  __syncthreads();
  return out;
}

// Per labelled reference row: lse, Σ p, Σ p·log p (= −H) and argmax p.
template <int Unused = 0>
__global__ void __launch_bounds__(eval_block)
    eval_reference_kernel(device_matrix<const float> logits, const std::int64_t* labels, double* lse, double* p_sum,
                          double* neg_entropy, std::int64_t* argmax) {
  __shared__ typename cub::BlockReduce<arg_max, eval_block>::TempStorage temp;
  __shared__ arg_max best_shared;
  __shared__ block_reducer<double, eval_block> red_d;
  for (std::int64_t r = blockIdx.x; r < logits.rows; r += gridDim.x) {
    if (labels[r] < 0) continue;
    const float* z = logits.row(r);
    arg_max best{-INFINITY, logits.cols};
    for (std::int64_t c = threadIdx.x; c < logits.cols; c += eval_block) {
      if (z[c] > best.value) best = {z[c], c};
    }
    best = block_arg_max<eval_block>(best, temp, best_shared);
    double s = 0.0;
    for (std::int64_t c = threadIdx.x; c < logits.cols; c += eval_block) s += exp(static_cast<double>(z[c]) - best.value);
    s = block_sum(s, red_d);
    const double l = static_cast<double>(best.value) + log(s);
    double ps = 0.0, pl = 0.0;
    for (std::int64_t c = threadIdx.x; c < logits.cols; c += eval_block) {
      const double lp = static_cast<double>(z[c]) - l;
      const double p = exp(lp);
      ps += p;
      pl += p * lp;
    }
    ps = block_sum(ps, red_d);
    pl = block_sum(pl, red_d);
    if (threadIdx.x == 0) {
      lse[r] = l;
      p_sum[r] = ps;
      neg_entropy[r] = pl;
      argmax[r] = best.index;
    }
  }
}

template <int Unused = 0>
__global__ void eval_reset_kernel(std::int64_t rows, float* q_max, double* q_sum, double* pq, float* q_best,
                                  std::int64_t* q_argmax, float* z_label) {
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    q_max[r] = -INFINITY;
    q_sum[r] = 0.0;
    pq[r] = 0.0;
    q_best[r] = -INFINITY;
    q_argmax[r] = -1;
    z_label[r] = 0.0f;
  }
}

// One chunk of q (columns [v0, v0 + q.cols)) folded into each labelled row's online
// log-sum-exp, Σ p·(q − lse_p), argmax and the label's logit.
template <int Unused = 0>
__global__ void __launch_bounds__(eval_block)
    eval_chunk_kernel(device_matrix<const float> q, std::int64_t v0, device_matrix<const float> p_logits,
                      const std::int64_t* labels, const double* p_lse, float* q_max, double* q_sum, double* pq,
                      float* q_best, std::int64_t* q_argmax, float* z_label) {
  __shared__ typename cub::BlockReduce<arg_max, eval_block>::TempStorage temp;
  __shared__ arg_max best_shared;
  __shared__ block_reducer<double, eval_block> red_d;
  for (std::int64_t r = blockIdx.x; r < q.rows; r += gridDim.x) {
    const std::int64_t y = labels[r];
    if (y < 0) continue;
    const float* qr = q.row(r);
    const float* pr = p_logits.row(r) + v0;
    const double lp = p_lse[r];
    arg_max best{-INFINITY, v0 + q.cols};
    for (std::int64_t c = threadIdx.x; c < q.cols; c += eval_block) {
      if (qr[c] > best.value) best = {qr[c], v0 + c};
    }
    best = block_arg_max<eval_block>(best, temp, best_shared);
    double s = 0.0, a = 0.0;
    for (std::int64_t c = threadIdx.x; c < q.cols; c += eval_block) {
      const double x = qr[c];
      s += exp(x - best.value);
      a += exp(static_cast<double>(pr[c]) - lp) * (x - lp);
    }
    s = block_sum(s, red_d);
    a = block_sum(a, red_d);
    if (threadIdx.x == 0) {
      fold_log_sum_exp(q_max[r], q_sum[r], best.value, s);
      pq[r] += a;
      if (best.value > q_best[r]) {  // chunks arrive in index order: a tie keeps the earlier index
        q_best[r] = best.value;
        q_argmax[r] = best.index;
      }
      if (y >= v0 && y < v0 + q.cols) z_label[r] = qr[y - v0];
    }
  }
}

// Per row: KL = Σ p log p − Σ p log q, with Σ p log q = pq − (lse_q − lse_p)·Σ p; NLL; agreement.
template <int Unused = 0>
__global__ void eval_row_kernel(std::int64_t rows, const std::int64_t* labels, const double* p_lse, const double* p_sum,
                                const double* neg_entropy, const std::int64_t* p_argmax, const float* q_max,
                                const double* q_sum, const double* pq, const std::int64_t* q_argmax,
                                const float* z_label, double* kl, double* nll, double* agree) {
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    if (labels[r] < 0) {
      kl[r] = nll[r] = agree[r] = 0.0;
      continue;
    }
    const double lse_q = static_cast<double>(q_max[r]) + log(q_sum[r]);
    kl[r] = neg_entropy[r] - (pq[r] - (lse_q - p_lse[r]) * p_sum[r]);
    nll[r] = lse_q - static_cast<double>(z_label[r]);
    agree[r] = q_argmax[r] == p_argmax[r] ? 1.0 : 0.0;
  }
}

}  // namespace detail

// The unquantized pass's next-token distribution and each labelled row's statistics: store its
// logits chunk by chunk (device_reference_distribution), then finalize with the row labels
// (−100: the row is not measured). Memory: rows × vocab × 4 bytes plus 40 bytes a row.
class device_eval_reference {
 public:
  void begin(std::int64_t rows, std::int64_t vocab, const std::vector<std::int64_t>& labels, cudaStream_t stream) {
    if (static_cast<std::int64_t>(labels.size()) != rows) {
      throw error("evaluation reference: " + std::to_string(labels.size()) + " labels for " + std::to_string(rows) + " rows");
    }
    logits_.begin(rows, vocab);
    labels_.grow_to(rows);
    labels_.upload(labels, stream);
    for (auto* b : {&lse_, &p_sum_, &neg_entropy_}) b->grow_to(rows);
    argmax_.grow_to(rows);
  }
  void store(device_matrix<const float> chunk, std::int64_t v0, cudaStream_t stream) { logits_.store(chunk, v0, stream); }
  void finalize(cudaStream_t stream) {
    detail::eval_reference_kernel<><<<detail::row_grid(rows()), detail::eval_block, 0, stream>>>(
        logits_.logits(), labels_.data(), lse_.data(), p_sum_.data(), neg_entropy_.data(), argmax_.data());
    AQ_CUDA_CHECK_LAUNCH();
  }

  std::int64_t rows() const { return logits_.rows(); }
  std::int64_t vocab() const { return logits_.vocab(); }
  device_matrix<const float> logits() const { return logits_.logits(); }
  const std::int64_t* labels() const { return labels_.data(); }
  const double* lse() const { return lse_.data(); }
  const double* p_sum() const { return p_sum_.data(); }
  const double* neg_entropy() const { return neg_entropy_.data(); }
  const std::int64_t* argmax() const { return argmax_.data(); }

 private:
  device_reference_distribution logits_;
  device_buffer<std::int64_t> labels_, argmax_;
  device_buffer<double> lse_, p_sum_, neg_entropy_;
};

// One mix's pass against the reference: begin, update per vocabulary chunk in order, finalize
// adds Σ KL, Σ NLL and the agreements over the labelled rows to totals[0..2] (device fp64).
class device_mix_metrics {
 public:
  void begin(const device_eval_reference& p, cudaStream_t stream) {
    p_ = &p;
    seen_ = 0;
    const std::int64_t rows = p.rows();
    for (auto* b : {&q_max_, &q_best_, &z_label_}) b->grow_to(rows);
    for (auto* b : {&q_sum_, &pq_, &kl_, &nll_, &agree_}) b->grow_to(rows);
    q_argmax_.grow_to(rows);
    detail::eval_reset_kernel<><<<grid_for(rows, 256), 256, 0, stream>>>(rows, q_max_.data(), q_sum_.data(), pq_.data(),
                                                                           q_best_.data(), q_argmax_.data(), z_label_.data());
    AQ_CUDA_CHECK_LAUNCH();
  }
  void update(device_matrix<const float> chunk, std::int64_t v0, cudaStream_t stream) {
    if (p_ == nullptr || chunk.rows != p_->rows() || v0 != seen_ || chunk.cols <= 0 || v0 + chunk.cols > p_->vocab()) {
      throw error("evaluation: logits chunk at column " + std::to_string(v0) + " does not continue the pass");
    }
    detail::eval_chunk_kernel<><<<detail::row_grid(chunk.rows), detail::eval_block, 0, stream>>>(
        chunk, v0, p_->logits(), p_->labels(), p_->lse(), q_max_.data(), q_sum_.data(), pq_.data(), q_best_.data(),
        q_argmax_.data(), z_label_.data());
    AQ_CUDA_CHECK_LAUNCH();
    seen_ += chunk.cols;
  }
  void finalize(double* totals, cudaStream_t stream) {
    if (p_ == nullptr || seen_ != p_->vocab()) throw error("evaluation: a pass ended before its last logits chunk");
    const std::int64_t rows = p_->rows();
    detail::eval_row_kernel<><<<grid_for(rows, 256), 256, 0, stream>>>(
        rows, p_->labels(), p_->lse(), p_->p_sum(), p_->neg_entropy(), p_->argmax(), q_max_.data(), q_sum_.data(),
        pq_.data(), q_argmax_.data(), z_label_.data(), kl_.data(), nll_.data(), agree_.data());
    AQ_CUDA_CHECK_LAUNCH();
    const double* parts[3] = {kl_.data(), nll_.data(), agree_.data()};
    for (int k = 0; k < 3; ++k) {
      detail::sum_rows_kernel<true><<<1, detail::sum_rows_block, 0, stream>>>(rows, parts[k], totals + k);
      AQ_CUDA_CHECK_LAUNCH();
    }
    p_ = nullptr;
  }

 private:
  const device_eval_reference* p_ = nullptr;
  std::int64_t seen_ = 0;
  device_buffer<float> q_max_, q_best_, z_label_;
  device_buffer<double> q_sum_, pq_, kl_, nll_, agree_;
  device_buffer<std::int64_t> q_argmax_;
};

}  // namespace aq::cuda
