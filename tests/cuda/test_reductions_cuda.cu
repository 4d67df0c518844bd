// amax reductions (CUB per tensor and per row, the folding pass) and the fused gradient-score accumulation on the GPU. amax per tensor and
// per row equal the host's exactly (max is exact); a NaN propagates. The score
// Σ G²·(Y_r − Y)² matches an fp64 CPU reference within 1e-5 relative (fp32 per-thread sums), with
// the bf16-rounded difference as ModelOpt forms it, and is bit-identical over repeated runs; read
// from a product of codes with its factors and bias still to apply, it equals the score of the
// product scaled in separate passes bit for bit.
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
#include "aq/backend/cuda/kernels/gemm_cublaslt.cuh"
#include "aq/backend/cuda/kernels/gradient_score.cuh"
#include "aq/backend/cuda/kernels/quantize_codes.cuh"
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

  // fold_amax: a running max over batches, from 0, packed (whole rows of 16 bytes) and strided.
  device_buffer<float> running(std::vector<float>{0.0f});
  aq::cuda::fold_amax(X, running.data());
  expect(running.to_host()[0] == per_tensor[0], label + " fold_amax from 0 equals the host's per-tensor amax");
  aq::cuda::fold_amax(device_matrix<const bf16>{d_xb.data() + 1, rows, sub, cols}, running.data());
  expect(running.to_host()[0] == per_tensor[0], label + " fold_amax keeps the larger running max");
  device_buffer<float> running_b(std::vector<float>{0.0f});
  aq::cuda::fold_amax(device_matrix<const bf16>{d_xb.data(), rows, cols, cols}, running_b.data());
  aq::cuda::fold_amax(device_matrix<const bf16>{d_xb.data() + 1, rows, sub, cols}, running_b.data());
  expect(running_b.to_host()[0] == std::fabs(aq::round_to_bf16(-37.5f)) && running_b.to_host()[0] >= want,
         label + " fold_amax over bf16 views");

  x[7] = std::numeric_limits<float>::quiet_NaN();
  device_buffer<float> d_nan(x);
  aq::cuda::amax_per_tensor(device_matrix<const float>{d_nan.data(), rows, cols, cols}, d_amax.data(), temp);
  aq::cuda::amax_per_row(device_matrix<const float>{d_nan.data(), rows, cols, cols}, d_rows.data());
  expect(std::isnan(d_amax.to_host()[0]) && std::isnan(d_rows.to_host()[0]), label + " a NaN input gives a NaN amax");
  aq::cuda::fold_amax(device_matrix<const float>{d_nan.data(), rows, cols, cols}, running.data());
  aq::cuda::fold_amax(X, running.data());
  expect(std::isnan(running.to_host()[0]), label + " a NaN folded in stays NaN");
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

// Y_r read as a product still to scale (product_scaling): int32 or fp32 accumulators, per-column
// or one weight factor, with and without bias, beside a recipe stored scaled. Every score equals
// bit for bit the score of the same product scaled first by dequantize_product and add_bias, and
// the fp64 CPU score of the scaled product within 1e-5.
void scaled_product_case(std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
  const auto n = static_cast<std::size_t>(rows * cols);
  const std::vector<float> y = random_floats(n, seed, 4.0f);
  const std::vector<float> g = bf16_rounded(random_floats(n, seed + 1, 1e-3f));
  const std::vector<float> col_factors = random_floats(static_cast<std::size_t>(cols), seed + 2, 1e-4f);
  const std::vector<float> bias = random_floats(static_cast<std::size_t>(cols), seed + 3, 0.5f);
  std::vector<float> w_factors(col_factors.size());
  for (std::size_t c = 0; c < w_factors.size(); ++c) w_factors[c] = 1e-4f + std::fabs(col_factors[c]);
  const float x_factor = 0.37f;
  device_buffer<float> d_y(y), d_wf(w_factors), d_bias(bias), d_xf(std::vector<float>{x_factor});
  device_buffer<bf16> d_g(to_bf16(g));
  const device_matrix<const float> Y{d_y.data(), rows, cols, cols};
  const device_matrix<const bf16> G{d_g.data(), rows, cols, cols};
  aq::cuda::gradient_score_workspace ws;

  struct variant {
    bool integer, per_column, with_bias;
  };
  const std::vector<variant> variants = {{true, true, false}, {true, false, true}, {false, true, true}, {false, false, false}};
  std::vector<device_buffer<float>> raw, scaled;  // raw: the GEMM's output; scaled: after the passes
  std::vector<aq::cuda::product_scaling> scalings;
  std::vector<double> want;
  for (std::size_t v = 0; v < variants.size(); ++v) {
    const variant& k = variants[v];
    const std::vector<float> noise = random_floats(n, seed + 10 + static_cast<std::uint32_t>(v), 0.02f);
    std::vector<float> stored(n), ref(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t c = i % static_cast<std::size_t>(cols);
      const float factor = x_factor * w_factors[k.per_column ? c : 0];
      const float target = (y[i] - (k.with_bias ? bias[c] : 0.0f) + noise[i]) / factor;  // acc near Y's
      if (k.integer) {
        const auto code_sum = static_cast<std::int32_t>(std::lround(target));
        std::memcpy(&stored[i], &code_sum, sizeof(float));
        ref[i] = static_cast<float>(code_sum) * factor + (k.with_bias ? bias[c] : 0.0f);
      } else {
        stored[i] = target;
        ref[i] = target * factor + (k.with_bias ? bias[c] : 0.0f);
      }
    }
    raw.emplace_back(stored);
    scaled.emplace_back(stored);
    const float* bias_ptr = k.with_bias ? d_bias.data() : nullptr;
    if (k.integer) {
      aq::cuda::dequantize_product(device_matrix<std::int32_t>{reinterpret_cast<std::int32_t*>(scaled.back().data()), rows,
                                                               cols, cols},
                                   d_xf.data(), d_wf.data(), k.per_column, nullptr);
    } else {
      aq::cuda::dequantize_product(device_matrix<float>{scaled.back().data(), rows, cols, cols}, d_xf.data(), d_wf.data(),
                                   k.per_column, nullptr);
    }
    if (bias_ptr != nullptr) aq::cuda::add_bias(device_matrix<float>{scaled.back().data(), rows, cols, cols}, bias_ptr, nullptr);
    scalings.push_back({d_xf.data(), d_wf.data(), k.per_column, k.integer, bias_ptr});
    want.push_back(score_reference(ref, y, g, false));
  }
  // A recipe stored scaled, beside them in the same pass.
  raw.emplace_back(y);
  scaled.emplace_back(y);
  scalings.push_back({});
  want.push_back(0.0);

  std::vector<device_matrix<const float>> raw_views, scaled_views;
  for (std::size_t k = 0; k < raw.size(); ++k) {
    raw_views.push_back({raw[k].data(), rows, cols, cols});
    scaled_views.push_back({scaled[k].data(), rows, cols, cols});
  }
  device_buffer<double> fused(std::vector<double>(raw.size(), 0.0)), separate(std::vector<double>(raw.size(), 0.0));
  const auto mode = aq::cuda::score_difference::fp32;
  aq::cuda::accumulate_gradient_scores(raw_views, Y, G, mode, fused.data(), ws, nullptr, scalings);
  aq::cuda::accumulate_gradient_scores(scaled_views, Y, G, mode, separate.data(), ws);
  const std::vector<double> a = fused.to_host(), b = separate.to_host();
  const std::string label = "scaled products [" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  expect(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0,
         label + ": scores bit-identical to scaling in separate passes");
  for (std::size_t k = 0; k + 1 < a.size(); ++k) {
    expect_close(std::fabs(a[k] - want[k]) / want[k], 1e-5, label + " variant " + std::to_string(k) + " vs fp64 CPU");
  }
  expect(a.back() == 0.0, label + ": an unscaled Y_r equal to Y scores 0");
  bool threw = false;
  try {
    aq::cuda::accumulate_gradient_scores(raw_views, Y, G, mode, fused.data(), ws, nullptr,
                                         std::vector<aq::cuda::product_scaling>(2));
  } catch (const aq::error&) {
    threw = true;
  }
  expect(threw, label + ": a scaling count unlike the recipes': error");
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
  scaled_product_case(600, 2560, 8);
  scaled_product_case(7, 33, 9);
}

}  // namespace test_reductions_cuda
