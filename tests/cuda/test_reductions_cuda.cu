// CUB amax reductions and the fused gradient-score accumulation on the GPU. amax per tensor and
// per row equal the host's exactly (max is exact); a NaN propagates. The score
// Σ G²·(Y_r − Y)² matches an fp64 CPU reference within 1e-5 relative (fp32 per-thread sums), with
// the bf16-rounded difference as ModelOpt forms it, and is bit-identical over repeated runs.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/amax.cuh"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/gradient_score.cuh"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/granularity.hpp"
#include "cuda_test_util.cuh"

namespace test_reductions_cuda {

namespace {

using aq::bf16;
using aq::cuda::device_buffer;
using aq::cuda::device_matrix;
using namespace aq_test;

void amax_case(std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
  const std::string label = "amax [" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  std::vector<float> x = random_floats(static_cast<std::size_t>(rows * cols), seed, 2.0f);
  x[static_cast<std::size_t>(rows * cols / 2)] = -37.5f;  // the largest magnitude is negative
  const std::vector<float> per_tensor = aq::quant::compute_amax<aq::quant::per_tensor>(x, rows, cols);
  const std::vector<float> per_row = aq::quant::compute_amax<aq::quant::per_channel>(x, rows, cols);

  device_buffer<float> d_x(x), d_amax(1), d_rows(static_cast<std::size_t>(rows));
  device_buffer<std::byte> temp;
  const device_matrix<const float> X{d_x.data(), rows, cols, cols};
  aq::cuda::amax_per_tensor(X, d_amax.data(), temp);
  aq::cuda::amax_per_row(X, d_rows.data());
  expect(d_amax.to_host()[0] == per_tensor[0], label + " per tensor equals the host's");
  expect(d_rows.to_host() == per_row, label + " per row equals the host's");

  // bf16 input, strided view (a column block).
  const std::int64_t sub = cols / 2;
  device_buffer<bf16> d_xb(to_bf16(x));
  aq::cuda::amax_per_tensor(device_matrix<const bf16>{d_xb.data() + 1, rows, sub, cols}, d_amax.data(), temp);
  float want = 0.0f;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 1; c < 1 + sub; ++c)
      want = std::max(want, std::fabs(aq::round_to_bf16(x[static_cast<std::size_t>(r * cols + c)])));
  expect(d_amax.to_host()[0] == want, label + " per tensor on a bf16 column block");

  x[7] = std::numeric_limits<float>::quiet_NaN();
  device_buffer<float> d_nan(x);
  aq::cuda::amax_per_tensor(device_matrix<const float>{d_nan.data(), rows, cols, cols}, d_amax.data(), temp);
  aq::cuda::amax_per_row(device_matrix<const float>{d_nan.data(), rows, cols, cols}, d_rows.data());
  expect(std::isnan(d_amax.to_host()[0]) && std::isnan(d_rows.to_host()[0]), label + " a NaN input gives a NaN amax");
}

double score_reference(const std::vector<float>& yr, const std::vector<float>& y, const std::vector<float>& g,
                       bool bf16_diff) {
  double s = 0.0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    float d = yr[i] - y[i];
    if (bf16_diff) d = aq::round_to_bf16(d);
    const double gd = static_cast<double>(g[i]) * d;
    s += gd * gd;
  }
  return s;
}

void score_case(std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
  const std::string label = "gradient score [" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  const auto n = static_cast<std::size_t>(rows * cols);
  const std::vector<float> y = bf16_rounded(random_floats(n, seed, 4.0f));
  std::vector<float> yr(n);
  const std::vector<float> noise = random_floats(n, seed + 1, 0.05f);
  for (std::size_t i = 0; i < n; ++i) yr[i] = aq::round_to_bf16(y[i] + noise[i]);  // a "quantized" output
  const std::vector<float> g = bf16_rounded(random_floats(n, seed + 2, 1e-3f));

  device_buffer<bf16> d_y(to_bf16(y)), d_yr(to_bf16(yr)), d_g(to_bf16(g));
  device_buffer<float> d_yr32(yr);
  device_buffer<double> d_score(std::vector<double>{0.0});
  aq::cuda::gradient_score_workspace ws;
  const device_matrix<const bf16> Y{d_y.data(), rows, cols, cols}, YR{d_yr.data(), rows, cols, cols},
      G{d_g.data(), rows, cols, cols};

  for (const bool bf16_diff : {true, false}) {
    const auto mode = bf16_diff ? aq::cuda::score_difference::bf16 : aq::cuda::score_difference::fp32;
    const std::string what = label + (bf16_diff ? " (bf16 difference)" : " (fp32 difference)");
    const double ref = score_reference(yr, y, g, bf16_diff);
    std::vector<double> runs;
    for (int run = 0; run < 5; ++run) {
      d_score.fill_bytes(0);
      aq::cuda::accumulate_gradient_score(YR, Y, G, mode, d_score.data(), ws);
      runs.push_back(d_score.to_host()[0]);
    }
    expect_close(std::fabs(runs[0] - ref) / ref, 1e-5, what + " vs fp64 CPU");
    bool identical = true;
    for (const double r : runs) identical = identical && std::memcmp(&r, &runs[0], sizeof(double)) == 0;
    expect(identical, what + " bit-identical over 5 runs");
  }
  // Accumulates: two calls add up (fp32 Y_r input this time).
  d_score.fill_bytes(0);
  aq::cuda::accumulate_gradient_score(device_matrix<const float>{d_yr32.data(), rows, cols, cols}, Y, G,
                                      aq::cuda::score_difference::bf16, d_score.data(), ws);
  const double once = d_score.to_host()[0];
  aq::cuda::accumulate_gradient_score(device_matrix<const float>{d_yr32.data(), rows, cols, cols}, Y, G,
                                      aq::cuda::score_difference::bf16, d_score.data(), ws);
  expect(d_score.to_host()[0] == 2.0 * once, label + " accumulates across calls (exactly 2x)");
}

// Several recipes' Y_r in one pass (accumulate_gradient_scores): every score bit-identical to its
// own accumulate_gradient_score call, for 1 to 8 recipes; more than 8 is refused.
void multi_score_case(std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
  const auto n = static_cast<std::size_t>(rows * cols);
  const std::vector<float> y = random_floats(n, seed, 4.0f);
  const std::vector<float> g = bf16_rounded(random_floats(n, seed + 1, 1e-3f));
  device_buffer<float> d_y(y);
  device_buffer<bf16> d_g(to_bf16(g));
  const device_matrix<const float> Y{d_y.data(), rows, cols, cols};
  const device_matrix<const bf16> G{d_g.data(), rows, cols, cols};
  std::vector<device_buffer<float>> yr;
  std::vector<device_matrix<const float>> views;
  for (int k = 0; k < 9; ++k) {
    std::vector<float> v = y;
    const std::vector<float> noise = random_floats(n, seed + 10 + static_cast<std::uint32_t>(k), 0.01f * (k + 1));
    for (std::size_t i = 0; i < n; ++i) v[i] += noise[i];
    yr.emplace_back(v);
    views.push_back({yr.back().data(), rows, cols, cols});
  }
  aq::cuda::gradient_score_workspace ws;
  bool all_identical = true;
  for (int count = 1; count <= 8; ++count) {
    for (const auto mode : {aq::cuda::score_difference::fp32, aq::cuda::score_difference::bf16}) {
      device_buffer<double> fused(std::vector<double>(static_cast<std::size_t>(count), 0.5));
      device_buffer<double> single(std::vector<double>(static_cast<std::size_t>(count), 0.5));
      aq::cuda::accumulate_gradient_scores(std::vector<device_matrix<const float>>(views.begin(), views.begin() + count),
                                           Y, G, mode, fused.data(), ws);
      for (int k = 0; k < count; ++k) {
        aq::cuda::accumulate_gradient_score(views[static_cast<std::size_t>(k)], Y, G, mode, single.data() + k, ws);
      }
      const std::vector<double> a = fused.to_host(), b = single.to_host();
      all_identical = all_identical && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0 && a[0] != 0.5;
    }
  }
  expect(all_identical, "fused scores of 1..8 recipes [" + std::to_string(rows) + ", " + std::to_string(cols) +
                            "] bit-identical to one pass per recipe (and accumulated)");
  bool threw = false;
  try {
    device_buffer<double> nine(std::vector<double>(9, 0.0));
    aq::cuda::accumulate_gradient_scores(views, Y, G, aq::cuda::score_difference::fp32, nine.data(), ws);
  } catch (const aq::error&) {
    threw = true;
  }
  expect(threw, "9 recipes in one pass: error");
}

}  // namespace

AQ_GPU_TEST("cuda reductions") {
  amax_case(300, 2560, 1);
  amax_case(1, 17, 2);
  amax_case(4096, 129, 3);
  score_case(1000, 2560, 4);
  score_case(3, 77, 5);
  multi_score_case(700, 2560, 6);
  multi_score_case(5, 33, 7);
}

}  // namespace test_reductions_cuda
