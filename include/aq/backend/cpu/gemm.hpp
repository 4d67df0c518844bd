// CPU GEMMs of a linear layer in fp32 (Eigen), split over the thread pool: the forward
// Y = X·Wᵀ and the input gradient dX = dY·W. Every quantizable module of the model runs here,
// and the scorer re-runs the forward with fake-quantized W or X through the same function.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "aq/backend/cpu/eigen.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"

namespace aq::cpu {

namespace detail {

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using const_map = Eigen::Map<const row_major, 0, Eigen::OuterStride<>>;
using map = Eigen::Map<row_major, 0, Eigen::OuterStride<>>;

inline const_map eigen(const const_matrix_view& m, std::int64_t r0, std::int64_t nr, std::int64_t c0, std::int64_t nc) {
  return const_map(m.data + r0 * m.ld + c0, nr, nc, Eigen::OuterStride<>(m.ld));
}
inline map eigen(const matrix_view& m, std::int64_t r0, std::int64_t nr, std::int64_t c0, std::int64_t nc) {
  return map(m.data + r0 * m.ld + c0, nr, nc, Eigen::OuterStride<>(m.ld));
}

inline void check(bool ok, const char* what, const const_matrix_view& a, const const_matrix_view& b,
                  const const_matrix_view& c) {
  if (!ok) {
    throw error(std::string("cpu gemm: ") + what + ": shapes [" + std::to_string(a.rows) + ", " +
                std::to_string(a.cols) + "], [" + std::to_string(b.rows) + ", " + std::to_string(b.cols) +
                "] -> [" + std::to_string(c.rows) + ", " + std::to_string(c.cols) + "]");
  }
}

// Splits the output over rows when there are many, else over columns (few tokens, wide W such as
// lm_head); each block is an independent Eigen product, so the sum order per element is fixed.
template <class Block>
void split_output(std::int64_t rows, std::int64_t cols, std::int64_t depth, const Block& block) {
  thread_pool& pool = default_thread_pool();
  const std::int64_t work = rows * cols * std::max<std::int64_t>(depth, 1);
  if (work < (1 << 18) || pool.size() == 1) {
    block(0, rows, 0, cols);
    return;
  }
  if (rows >= 4 * static_cast<std::int64_t>(pool.size())) {
    pool.parallel_for(rows, 4, [&](std::int64_t r0, std::int64_t r1) { block(r0, r1 - r0, 0, cols); });
  } else {
    pool.parallel_for(cols, 16, [&](std::int64_t c0, std::int64_t c1) { block(0, rows, c0, c1 - c0); });
  }
}

}  // namespace detail

// y[t, o] (+)= Σ_i x[t, i] · w[o, i] (+ bias[o]): a PyTorch Linear with W stored [out, in].
inline void linear_forward(const const_matrix_view& x, const const_matrix_view& w, const matrix_view& y,
                           const float* bias = nullptr, bool accumulate = false) {
  detail::check(x.cols == w.cols && y.rows == x.rows && y.cols == w.rows, "linear_forward", x, w, y);
  detail::split_output(y.rows, y.cols, x.cols, [&](std::int64_t r0, std::int64_t nr, std::int64_t c0, std::int64_t nc) {
    auto out = detail::eigen(y, r0, nr, c0, nc);
    const auto lhs = detail::eigen(x, r0, nr, 0, x.cols);
    const auto rhs = detail::eigen(w, c0, nc, 0, w.cols);
    if (accumulate) {
      out.noalias() += lhs * rhs.transpose();
    } else {
      out.noalias() = lhs * rhs.transpose();
    }
    if (bias != nullptr) {
      for (std::int64_t r = 0; r < nr; ++r) {
        float* row = y.row(r0 + r) + c0;
        for (std::int64_t c = 0; c < nc; ++c) row[c] += bias[c0 + c];
      }
    }
  });
}

// dx[t, i] (+)= Σ_o dy[t, o] · w[o, i]: the input gradient of linear_forward (weights frozen).
inline void linear_backward_input(const const_matrix_view& dy, const const_matrix_view& w, const matrix_view& dx,
                                  bool accumulate = false) {
  detail::check(dy.cols == w.rows && dx.rows == dy.rows && dx.cols == w.cols, "linear_backward_input", dy, w, dx);
  detail::split_output(dx.rows, dx.cols, dy.cols, [&](std::int64_t r0, std::int64_t nr, std::int64_t c0, std::int64_t nc) {
    auto out = detail::eigen(dx, r0, nr, c0, nc);
    const auto lhs = detail::eigen(dy, r0, nr, 0, dy.cols);
    const auto rhs = detail::eigen(w, 0, w.rows, c0, nc);
    if (accumulate) {
      out.noalias() += lhs * rhs;
    } else {
      out.noalias() = lhs * rhs;
    }
  });
}

}  // namespace aq::cpu
