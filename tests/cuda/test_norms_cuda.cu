// RMSNorm and LayerNorm CUDA kernels (forward, input gradient, saved statistics) against the CPU
// backend on random data. Tolerance: fp32 in/out ≤ 1e-5 relative to the reference's max |value|
// (row sums are fp64 on both sides; only fp32 rounding of the elementwise math may differ);
// bf16 output ≤ 1e-2 (one bf16 rounding).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "aq/backend/cpu/layer_norm.hpp"
#include "aq/backend/cpu/rms_norm.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/layer_norm.cuh"
#include "aq/backend/cuda/kernels/rms_norm.cuh"
#include "cuda_test_util.cuh"

namespace test_norms_cuda {

namespace {

using aq::bf16;
using aq::cuda::device_buffer;
using aq::cuda::device_matrix;
using namespace aq_test;

constexpr double fp32_tol = 1e-5;
constexpr double bf16_tol = 1e-2;

void rms_case(std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
  const std::string label = "rms_norm [" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  const auto n = static_cast<std::size_t>(rows * cols);
  std::vector<float> x = random_floats(n, seed, 2.0f, 0.3f);
  std::vector<float> w = random_floats(static_cast<std::size_t>(cols), seed + 1, 0.1f, 1.0f);
  std::vector<float> g = random_floats(n, seed + 2);
  const float eps = 1e-6f;
  std::vector<float> y(n), inv(static_cast<std::size_t>(rows)), dx(n), dx_acc(n);
  const aq::const_matrix_view xv{x.data(), rows, cols, cols};
  aq::cpu::rms_norm_forward(xv, w.data(), eps, {y.data(), rows, cols, cols}, inv.data());
  aq::cpu::rms_norm_backward(xv, w.data(), inv.data(), {g.data(), rows, cols, cols}, {dx.data(), rows, cols, cols});
  dx_acc = g;  // accumulate into a copy of g
  aq::cpu::rms_norm_backward(xv, w.data(), inv.data(), {g.data(), rows, cols, cols}, {dx_acc.data(), rows, cols, cols},
                             true);

  device_buffer<float> d_x(x), d_w(w), d_g(g), d_y(n), d_inv(static_cast<std::size_t>(rows)), d_dx(n);
  d_y.fill_bytes(0xff);
  d_inv.fill_bytes(0xff);
  d_dx.fill_bytes(0xff);
  const device_matrix<const float> X{d_x.data(), rows, cols, cols};
  const device_matrix<const float> G{d_g.data(), rows, cols, cols};
  aq::cuda::rms_norm_forward(X, d_w.data(), eps, device_matrix<float>{d_y.data(), rows, cols, cols}, d_inv.data());
  aq::cuda::rms_norm_backward(X, d_w.data(), d_inv.data(), G, device_matrix<float>{d_dx.data(), rows, cols, cols});
  expect_close(rel_err(d_y.to_host(), y), fp32_tol, label + " forward");
  expect_close(rel_err(d_inv.to_host(), inv), fp32_tol, label + " saved 1/rms");
  expect_close(rel_err(d_dx.to_host(), dx), fp32_tol, label + " backward");
  // In place and accumulating: dx aliases dy.
  device_buffer<float> d_acc(g);
  aq::cuda::rms_norm_backward(X, d_w.data(), d_inv.data(), G, device_matrix<float>{d_acc.data(), rows, cols, cols}, true);
  expect_close(rel_err(d_acc.to_host(), dx_acc), fp32_tol, label + " backward accumulate");

  // bf16 in, bf16 out (the GEMM input of the next layer).
  device_buffer<bf16> d_xb(to_bf16(x)), d_yb(n);
  std::vector<float> yb_ref(n);
  const std::vector<float> xr = bf16_rounded(x);
  aq::cpu::rms_norm_forward({xr.data(), rows, cols, cols}, w.data(), eps, {yb_ref.data(), rows, cols, cols}, nullptr);
  aq::cuda::rms_norm_forward(device_matrix<const bf16>{d_xb.data(), rows, cols, cols}, d_w.data(), eps,
                             device_matrix<bf16>{d_yb.data(), rows, cols, cols}, nullptr);
  expect_close(rel_err(to_float(d_yb.to_host()), yb_ref), bf16_tol, label + " forward bf16 in/out");
}

void layer_case(std::int64_t rows, std::int64_t cols, std::int64_t ld, std::uint32_t seed) {
  const std::string label = "layer_norm [" + std::to_string(rows) + ", " + std::to_string(cols) + "] ld " + std::to_string(ld);
  const auto n = static_cast<std::size_t>(rows * ld);
  std::vector<float> x = random_floats(n, seed, 3.0f, 1.5f);
  std::vector<float> w = random_floats(static_cast<std::size_t>(cols), seed + 1, 0.2f, 1.0f);
  std::vector<float> b = random_floats(static_cast<std::size_t>(cols), seed + 2, 0.1f);
  std::vector<float> g = random_floats(n, seed + 3);
  const float eps = 1e-6f;
  std::vector<float> y(n, 0.0f), mean(static_cast<std::size_t>(rows)), rstd(static_cast<std::size_t>(rows)), dx(n, 0.0f);
  const aq::const_matrix_view xv{x.data(), rows, cols, ld};
  aq::cpu::layer_norm_forward(xv, w.data(), b.data(), eps, {y.data(), rows, cols, ld}, mean.data(), rstd.data());
  aq::cpu::layer_norm_backward(xv, w.data(), mean.data(), rstd.data(), {g.data(), rows, cols, ld},
                               {dx.data(), rows, cols, ld});

  device_buffer<float> d_x(x), d_w(w), d_b(b), d_g(g), d_y(std::vector<float>(n, 0.0f)),
      d_mean(static_cast<std::size_t>(rows)), d_rstd(static_cast<std::size_t>(rows)), d_dx(std::vector<float>(n, 0.0f));
  const device_matrix<const float> X{d_x.data(), rows, cols, ld};
  aq::cuda::layer_norm_forward(X, d_w.data(), d_b.data(), eps, device_matrix<float>{d_y.data(), rows, cols, ld},
                               d_mean.data(), d_rstd.data());
  aq::cuda::layer_norm_backward(X, d_w.data(), d_mean.data(), d_rstd.data(),
                                device_matrix<const float>{d_g.data(), rows, cols, ld},
                                device_matrix<float>{d_dx.data(), rows, cols, ld});
  expect_close(rel_err(d_y.to_host(), y), fp32_tol, label + " forward");
  expect_close(rel_err(d_mean.to_host(), mean), fp32_tol, label + " saved mean");
  expect_close(rel_err(d_rstd.to_host(), rstd), fp32_tol, label + " saved 1/std");
  expect_close(rel_err(d_dx.to_host(), dx), fp32_tol, label + " backward");
}

}  // namespace

AQ_GPU_TEST("cuda norms") {
  rms_case(67, 2560, 1);      // decoder hidden size
  rms_case(67 * 8, 128, 11);  // per-head q_norm/k_norm rows
  rms_case(3, 1000, 21);      // not a multiple of the block
  layer_case(45, 1024, 1024, 31);  // vision hidden size
  layer_case(19, 4096, 4100, 41);  // merger width, strided rows
}

}  // namespace test_norms_cuda
