// Recipe products on codes (quantize_codes.cuh + cublaslt_gemm::linear_forward_codes), for the
// recipes that take that path (fp8_e4m3: e4m3 × e4m3, per-tensor scales in the GEMM; int8_w8a8:
// int8 × int8 into int32, per-row weight and per-tensor input factors after it):
//  - codes · factor equals the host fake quantization of X and W (fp8 bit for bit; int8 within
//    an ulp, since the factor is 1/s where the fake quantizer divides by s);
//  - the product against an fp64 product of the host's fake-quantized operands: int8 within 1e-5
//    relative (exact int32 accumulation), e4m3 within 1e-3 (Hopper's e4m3 MMA adds its products
//    at reduced precision inside an instruction: 1.5e-4 to 2.1e-4 measured on an H100), and both
//    closer than the bf16-operand GEMM (2.4e-3 to 2.6e-3 there);
//  - a zero amax (scale 0) gives a zero product, not NaN; bias is added after the factors.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/gemm_cublaslt.cuh"
#include "aq/backend/cuda/kernels/quantize_codes.cuh"
#include "aq/backend/cuda/scoring/gradient_scorer.cuh"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/recipe_registry.hpp"
#include "aq/quant/recipes.hpp"
#include "cuda_test_util.cuh"

namespace test_code_gemm_cuda {

namespace {

using aq::bf16;
using aq::cuda::device_buffer;
using aq::cuda::device_matrix;
using namespace aq_test;

std::vector<double> product_fp64(const std::vector<float>& x, const std::vector<float>& w, std::int64_t rows,
                                 std::int64_t in, std::int64_t out, const std::vector<float>& bias) {
  std::vector<double> y(static_cast<std::size_t>(rows * out));
  for (std::int64_t t = 0; t < rows; ++t) {
    for (std::int64_t o = 0; o < out; ++o) {
      double s = bias.empty() ? 0.0 : bias[static_cast<std::size_t>(o)];
      for (std::int64_t i = 0; i < in; ++i) {
        s += static_cast<double>(x[static_cast<std::size_t>(t * in + i)]) * w[static_cast<std::size_t>(o * in + i)];
      }
      y[static_cast<std::size_t>(t * out + o)] = s;
    }
  }
  return y;
}

// Dequantized codes (host): code value · factor of its slot.
template <class F>
std::vector<float> decoded(const std::vector<std::uint8_t>& codes, const std::vector<float>& factors, std::int64_t cols) {
  std::vector<float> v(codes.size());
  for (std::size_t i = 0; i < codes.size(); ++i) {
    const float factor = factors.size() == 1 ? factors[0] : factors[i / static_cast<std::size_t>(cols)];
    v[i] = F::decode(static_cast<typename F::code_type>(codes[i])) * factor;
  }
  return v;
}

template <class R>
void recipe_case(aq::cuda::cublaslt_gemm& gemm, std::int64_t rows, std::int64_t in, std::int64_t out, bool bias,
                 float x_amax_factor, std::uint32_t seed) {
  using W = typename R::weight;
  using I = typename R::input;
  using F = typename W::format_type;
  const std::string label = std::string(R::name) + " rows=" + std::to_string(rows) + " in=" + std::to_string(in) +
                            " out=" + std::to_string(out) + (bias ? ", bias" : "") +
                            (x_amax_factor == 0.0f ? ", zero input amax" : "");
  const aq::cuda::device_recipe k = aq::cuda::make_device_recipe<>(aq::quant::find_recipe<>(R::name));
  expect(k.code_type == aq::cuda::code_data_type<F>, label + ": the recipe runs on codes");

  const std::vector<float> x = bf16_rounded(random_floats(static_cast<std::size_t>(rows * in), seed, 1.5f));
  const std::vector<float> w = bf16_rounded(random_floats(static_cast<std::size_t>(out * in), seed + 1, 0.05f));
  std::vector<float> b;
  if (bias) b = random_floats(static_cast<std::size_t>(out), seed + 2, 0.1f);
  float max_x = 0.0f;
  for (const float v : x) max_x = std::max(max_x, std::fabs(v));
  const std::vector<float> x_amax{max_x * x_amax_factor};  // < 1: the largest inputs saturate
  std::vector<float> w_amax(static_cast<std::size_t>(W::granularity_type::amax_count(out, in)), 0.0f);
  for (std::int64_t o = 0; o < out; ++o) {
    for (std::int64_t i = 0; i < in; ++i) {
      float& a = w_amax[static_cast<std::size_t>(W::granularity_type::amax_index(o, i, in))];
      a = std::max(a, std::fabs(w[static_cast<std::size_t>(o * in + i)]));
    }
  }

  // Host fake quantization (fp32) and its fp64 product: the reference.
  std::vector<float> xq(x.size()), wq(w.size());
  aq::quant::fake_quantize_matrix<I>(x, xq, rows, in, x_amax);
  aq::quant::fake_quantize_matrix<W>(w, wq, out, in, w_amax);
  const std::vector<double> ref = product_fp64(xq, wq, rows, in, out, b);

  device_buffer<bf16> dx(to_bf16(x)), dw(to_bf16(w));
  device_buffer<float> dxa(x_amax), dwa(w_amax), dbias(b.empty() ? std::vector<float>{0.0f} : b);
  device_buffer<std::uint8_t> xc(static_cast<std::size_t>(rows * in)), wc(static_cast<std::size_t>(out * in));
  device_buffer<float> xf(1), wf(k.weight_factor_per_row ? static_cast<std::size_t>(out) : 1);
  AQ_CUDA_CHECK(k.input_codes(dx.data(), xc.data(), rows, in, dxa.data(), xf.data(), nullptr));
  AQ_CUDA_CHECK(k.weight_codes(dw.data(), wc.data(), out, in, dwa.data(), wf.data(), nullptr));
  const std::vector<float> x_dec = decoded<F>(xc.to_host(), xf.to_host(), in);
  const std::vector<float> w_dec = decoded<F>(wc.to_host(), wf.to_host(), in);
  const double code_tol = F::is_float ? 0.0 : 1.2e-7;
  expect_close(rel_err(x_dec, xq), code_tol, label + ": X codes · factor = host fake quantization");
  expect_close(rel_err(w_dec, wq), code_tol, label + ": W codes · factor = host fake quantization");

  device_buffer<float> y(static_cast<std::size_t>(rows * out));
  y.fill_bytes(0xff);  // NaN: every element must be written
  const device_matrix<const std::uint8_t> xv{xc.data(), rows, in, in}, wv{wc.data(), out, in, in};
  bool ran = false;
  if (k.code_type == CUDA_R_8I) {
    const device_matrix<std::int32_t> acc{reinterpret_cast<std::int32_t*>(y.data()), rows, out, out};
    ran = gemm.linear_forward_codes(k.code_type, xv, wv, acc, nullptr, nullptr, nullptr);
    aq::cuda::dequantize_product(acc, xf.data(), wf.data(), k.weight_factor_per_row, nullptr);
  } else {
    ran = gemm.linear_forward_codes(k.code_type, xv, wv, device_matrix<float>{y.data(), rows, out, out}, xf.data(),
                                    wf.data(), nullptr);
  }
  expect(ran, label + ": cuBLASLt ran the product on codes");
  if (bias) aq::cuda::add_bias(device_matrix<float>{y.data(), rows, out, out}, dbias.data(), nullptr);
  const std::vector<float> got = y.to_host();

  // The bf16-operand path on the same fake-quantized operands (rounded to bf16).
  device_buffer<bf16> dxq(to_bf16(xq)), dwq(to_bf16(wq));
  device_buffer<float> y16(static_cast<std::size_t>(rows * out));
  gemm.linear_forward(device_matrix<const bf16>{dxq.data(), rows, in, in}, device_matrix<const bf16>{dwq.data(), out, in, in},
                      device_matrix<float>{y16.data(), rows, out, out}, bias ? dbias.data() : nullptr, false, nullptr);
  const std::vector<float> got16 = y16.to_host();

  if (x_amax_factor == 0.0f && !bias) {
    bool zero = true;
    for (const float v : got) zero = zero && v == 0.0f;
    expect(zero, label + ": zero amax gives a zero product (no NaN)");
    return;
  }
  const double e_codes = rel_err(got, ref), e_bf16 = rel_err(got16, ref);
  expect_close(e_codes, F::is_float ? 1e-3 : 1e-5, label + ": codes product vs fp64 product of the fake-quantized operands");
  expect(x_amax_factor == 0.0f || e_codes < e_bf16,
         label + ": closer than the bf16-operand GEMM (" + std::to_string(e_codes) + " < " + std::to_string(e_bf16) + ")");
}

// Codes of a matrix whose rows do not split into 8-element packs (the single-element path):
// codes · factor still equal the host fake quantization, for the input and the weight side.
template <class R>
void unpacked_codes_case(std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
  using W = typename R::weight;
  using I = typename R::input;
  using F = typename W::format_type;
  const std::string label = std::string(R::name) + " codes of [" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  const aq::cuda::device_recipe k = aq::cuda::make_device_recipe<>(aq::quant::find_recipe<>(R::name));
  const std::vector<float> x = bf16_rounded(random_floats(static_cast<std::size_t>(rows * cols), seed, 1.5f));
  std::vector<float> row_amax(static_cast<std::size_t>(rows), 0.0f);
  float tensor_amax = 0.0f;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      const float a = std::fabs(x[static_cast<std::size_t>(r * cols + c)]);
      row_amax[static_cast<std::size_t>(r)] = std::max(row_amax[static_cast<std::size_t>(r)], a);
      tensor_amax = std::max(tensor_amax, a);
    }
  }
  const std::vector<float> x_amax{0.7f * tensor_amax};
  const std::vector<float> w_amax = W::granularity_type::amax_count(rows, cols) == 1 ? x_amax : row_amax;
  std::vector<float> xq(x.size()), wq(x.size());
  aq::quant::fake_quantize_matrix<I>(x, xq, rows, cols, x_amax);
  aq::quant::fake_quantize_matrix<W>(x, wq, rows, cols, w_amax);
  device_buffer<bf16> dx(to_bf16(x));
  device_buffer<float> dxa(x_amax), dwa(w_amax), xf(1), wf(w_amax.size());
  device_buffer<std::uint8_t> xc(x.size()), wc(x.size());
  AQ_CUDA_CHECK(k.input_codes(dx.data(), xc.data(), rows, cols, dxa.data(), xf.data(), nullptr));
  AQ_CUDA_CHECK(k.weight_codes(dx.data(), wc.data(), rows, cols, dwa.data(), wf.data(), nullptr));
  const double tol = F::is_float ? 0.0 : 1.2e-7;
  expect_close(rel_err(decoded<F>(xc.to_host(), xf.to_host(), cols), xq), tol, label + ": input side = host fake quantization");
  expect_close(rel_err(decoded<F>(wc.to_host(), wf.to_host(), cols), wq), tol, label + ": weight side = host fake quantization");
}

}  // namespace

AQ_GPU_TEST("test_code_gemm_cuda") {
  aq::cuda::cublaslt_gemm gemm;
  using aq::recipes::fp8_e4m3;
  using aq::recipes::int8_w8a8;
  recipe_case<fp8_e4m3>(gemm, 77, 256, 96, false, 0.8f, 11);
  recipe_case<fp8_e4m3>(gemm, 512, 2560, 384, true, 1.0f, 12);
  recipe_case<fp8_e4m3>(gemm, 33, 128, 64, false, 0.0f, 13);
  recipe_case<fp8_e4m3>(gemm, 240, 256, 128, false, 1.0f, 14);  // a packed pass's height (a kernel refused it once)
  recipe_case<int8_w8a8>(gemm, 77, 256, 96, false, 0.8f, 21);
  recipe_case<int8_w8a8>(gemm, 512, 2560, 384, true, 1.0f, 22);
  recipe_case<int8_w8a8>(gemm, 33, 128, 64, false, 0.0f, 23);
  unpacked_codes_case<fp8_e4m3>(5, 37, 31);
  unpacked_codes_case<int8_w8a8>(5, 37, 32);
  // Recipes without a code path keep the bf16 operands.
  const aq::cuda::device_recipe w4a8 = aq::cuda::make_device_recipe<>(aq::quant::find_recipe<>("w4a8"));
  expect(w4a8.code_type == CUDA_R_16BF && w4a8.weight_codes == nullptr, "w4a8: no code path");
}

}  // namespace test_code_gemm_cuda
