// CUDA fake quantization against the host implementation, bit for bit, for every quantizer
// kind (static, dynamic per-token, MX and NVFP4 block scales); the portable e4m3/e5m2 encoders
// against CUDA's own conversion (__NV_SATFINITE) and the portable round-half-even against rintf,
// exhaustively over all 2^32 floats.
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>
#include <random>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/fake_quant.cuh"
#include "aq/core/bf16.hpp"
#include "aq/formats/all_formats.hpp"
#include "aq/formats/minifloat.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/quantizer.hpp"
#include "aq/quant/recipes.hpp"
#include "cuda_test_util.cuh"

namespace test_fake_quant_cuda {

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

#define AQ_CUDA_OK(expr)                                                                                      \
  do {                                                                                                        \
    const cudaError_t status_ = (expr);                                                                       \
    if (status_ != cudaSuccess) {                                                                             \
      std::printf("FAIL: %s: %s (%s:%d)\n", #expr, cudaGetErrorString(status_), __FILE__, __LINE__);           \
      return 1;                                                                                               \
    }                                                                                                         \
  } while (0)

struct e5m2 : aq::formats::minifloat<5, 2, aq::formats::minifloat_specials::ieee> {
  static constexpr std::string_view name = "e5m2";
};

// ---- exhaustive comparisons over every 32-bit pattern --------------------------------------
template <class F>
__global__ void encode_vs_cuda(__nv_fp8_interpretation_t interpretation, unsigned long long* mismatches,
                               unsigned int* first) {
  const unsigned long long total = 1ull << 32;
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long i = static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const float x = __uint_as_float(static_cast<unsigned int>(i));
    const unsigned ours = F::encode(x);
    const unsigned theirs = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, interpretation);
    if (ours != theirs && atomicAdd(mismatches, 1ull) == 0) *first = static_cast<unsigned int>(i);
  }
}

__global__ void rint_vs_cuda(unsigned long long* mismatches, unsigned int* first) {
  const unsigned long long total = 1ull << 32;
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long i = static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const float x = __uint_as_float(static_cast<unsigned int>(i));
    const float ours = aq::formats::detail::round_half_even(x);
    const float theirs = rintf(x);
    const bool same = __float_as_uint(ours) == __float_as_uint(theirs) || (isnan(ours) && isnan(theirs));
    if (!same && atomicAdd(mismatches, 1ull) == 0) *first = static_cast<unsigned int>(i);
  }
}

template <class F>
__global__ void decode_vs_cuda(__nv_fp8_interpretation_t interpretation, unsigned int* mismatches) {
  const unsigned code = threadIdx.x;  // 256 threads
  const float ours = F::decode(static_cast<typename F::code_type>(code));
  const float theirs = __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(code), interpretation)));
  const bool same = __float_as_uint(ours) == __float_as_uint(theirs) || (isnan(ours) && isnan(theirs));
  if (!same) atomicAdd(mismatches, 1u);
}

int exhaustive_checks() {
  unsigned long long* mismatches = nullptr;
  unsigned int* first = nullptr;
  unsigned int* decode_mismatches = nullptr;
  AQ_CUDA_OK(cudaMalloc(&mismatches, sizeof(unsigned long long)));
  AQ_CUDA_OK(cudaMalloc(&first, sizeof(unsigned int)));
  AQ_CUDA_OK(cudaMalloc(&decode_mismatches, sizeof(unsigned int)));
  auto run = [&](const char* what, auto launch) -> int {
    AQ_CUDA_OK(cudaMemset(mismatches, 0, sizeof(unsigned long long)));
    AQ_CUDA_OK(cudaMemset(first, 0, sizeof(unsigned int)));
    launch();
    AQ_CUDA_OK(cudaGetLastError());
    AQ_CUDA_OK(cudaDeviceSynchronize());
    unsigned long long count = 0;
    unsigned int first_bits = 0;
    AQ_CUDA_OK(cudaMemcpy(&count, mismatches, sizeof(count), cudaMemcpyDeviceToHost));
    AQ_CUDA_OK(cudaMemcpy(&first_bits, first, sizeof(first_bits), cudaMemcpyDeviceToHost));
    std::printf("%s: %llu mismatches over 2^32 floats\n", what, count);
    expect(count == 0, std::string(what) + ": first mismatch at float bits 0x" + [&] {
      char hex[16];
      std::snprintf(hex, sizeof(hex), "%08x", first_bits);
      return std::string(hex);
    }());
    return 0;
  };
  // e4m3::encode is the intrinsic itself on sm_89+: its portable encoder is what the host runs.
  if (run("e4m3 portable encode vs __nv_cvt_float_to_fp8(E4M3, SATFINITE)",
          [&] { encode_vs_cuda<aq::formats::e4m3::portable><<<4096, 256>>>(__NV_E4M3, mismatches, first); }) != 0)
    return 1;
  if (run("e4m3 device encode vs __nv_cvt_float_to_fp8(E4M3, SATFINITE)",
          [&] { encode_vs_cuda<aq::formats::e4m3><<<4096, 256>>>(__NV_E4M3, mismatches, first); }) != 0)
    return 1;
  if (run("e5m2 encode vs __nv_cvt_float_to_fp8(E5M2, SATFINITE)",
          [&] { encode_vs_cuda<e5m2><<<4096, 256>>>(__NV_E5M2, mismatches, first); }) != 0)
    return 1;
  if (run("round_half_even vs rintf", [&] { rint_vs_cuda<<<4096, 256>>>(mismatches, first); }) != 0) return 1;

  unsigned int count = 0;
  AQ_CUDA_OK(cudaMemset(decode_mismatches, 0, sizeof(unsigned int)));
  decode_vs_cuda<aq::formats::e4m3><<<1, 256>>>(__NV_E4M3, decode_mismatches);
  AQ_CUDA_OK(cudaMemcpy(&count, decode_mismatches, sizeof(count), cudaMemcpyDeviceToHost));
  expect(count == 0, "e4m3 decode of 256 codes vs __nv_cvt_fp8_to_halfraw: " + std::to_string(count) + " mismatches");
  AQ_CUDA_OK(cudaMemset(decode_mismatches, 0, sizeof(unsigned int)));
  decode_vs_cuda<e5m2><<<1, 256>>>(__NV_E5M2, decode_mismatches);
  AQ_CUDA_OK(cudaMemcpy(&count, decode_mismatches, sizeof(count), cudaMemcpyDeviceToHost));
  expect(count == 0, "e5m2 decode of 256 codes vs __nv_cvt_fp8_to_halfraw: " + std::to_string(count) + " mismatches");

  cudaFree(mismatches);
  cudaFree(first);
  cudaFree(decode_mismatches);
  return 0;
}

// ---- fake quantization kernel vs host ---------------------------------------------------------
// Bit-identical, except that any NaN equals any NaN (the payload is not part of the contract).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(std::isnan(a[i]) && std::isnan(b[i]))) return false;
  }
  return true;
}

std::vector<float> make_matrix(std::int64_t rows, std::int64_t cols) {
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::uniform_real_distribution<float> row_scale(1e-3f, 8.0f);
  std::vector<float> m(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float s = row_scale(rng);
    for (std::int64_t c = 0; c < cols; ++c) {
      float v = dist(rng) * s;
      if (r == 3) v = 0.0f;                               // an all-zero row: zero amax per channel
      if (r == 5 && c % 17 == 0) v = std::ldexp(v, -20);  // tiny values (e4m3 subnormals, flushes)
      m[static_cast<std::size_t>(r * cols + c)] = aq::round_to_bf16(v);
    }
  }
  return m;
}

// The matrix with NaN, infinities and fp32 subnormals planted: data-scaled quantizers see them in
// their block reductions (static ones are calibrated, and calibration refuses non-finite values).
std::vector<float> with_specials(std::vector<float> m, std::int64_t cols) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  m[static_cast<std::size_t>(1 * cols + 3)] = nan;
  m[static_cast<std::size_t>(2 * cols + 40)] = inf;
  m[static_cast<std::size_t>(6 * cols + 70)] = -inf;
  for (std::int64_t c = 0; c < 32; ++c) m[static_cast<std::size_t>(8 * cols + c)] = nan;  // a NaN-only block
  for (std::int64_t c = 64; c < 96; ++c) m[static_cast<std::size_t>(9 * cols + c)] = std::ldexp(1.5f, -130 - c % 5);
  m[static_cast<std::size_t>(10 * cols + 5)] = -0.0f;
  return m;
}

template <aq::quant::quantizer_spec Q>
int compare_with_host(const std::vector<float>& host_in, std::int64_t rows, std::int64_t cols,
                      std::vector<float> amax = {}) {
  using S = typename Q::scaling_type;
  using C = std::conditional_t<S::uses_global_amax, aq::quant::per_tensor, typename Q::granularity_type>;
  const std::string name = Q::label();
  const auto n = host_in.size();
  const bool calibrated_here = amax.empty();
  if (calibrated_here) amax = aq::quant::calibrate_amax<Q>(host_in, rows, cols);

  std::vector<aq::bf16> host_in_bf16(n);
  for (std::size_t i = 0; i < n; ++i) host_in_bf16[i] = aq::float_to_bf16(host_in[i]);

  float* d_in = nullptr;
  aq::bf16* d_in_bf16 = nullptr;
  float* d_out = nullptr;
  aq::bf16* d_out_bf16 = nullptr;
  float* d_amax = nullptr;
  AQ_CUDA_OK(cudaMalloc(&d_in, n * sizeof(float)));
  AQ_CUDA_OK(cudaMalloc(&d_in_bf16, n * sizeof(aq::bf16)));
  AQ_CUDA_OK(cudaMalloc(&d_out, n * sizeof(float)));
  AQ_CUDA_OK(cudaMalloc(&d_out_bf16, n * sizeof(aq::bf16)));
  AQ_CUDA_OK(cudaMalloc(&d_amax, (amax.size() + 1) * sizeof(float)));
  AQ_CUDA_OK(cudaMemcpy(d_in, host_in.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  AQ_CUDA_OK(cudaMemcpy(d_in_bf16, host_in_bf16.data(), n * sizeof(aq::bf16), cudaMemcpyHostToDevice));

  // Device amax equals the host amax exactly.
  if (calibrated_here && !amax.empty()) {
    AQ_CUDA_OK((aq::cuda::compute_amax<C, float>(d_in, rows, cols, d_amax)));
    std::vector<float> device_amax(amax.size());
    AQ_CUDA_OK(cudaMemcpy(device_amax.data(), d_amax, amax.size() * sizeof(float), cudaMemcpyDeviceToHost));
    expect(std::memcmp(device_amax.data(), amax.data(), amax.size() * sizeof(float)) == 0, name + ": device amax");
  }

  // Shrink amax (saturation) and round it to bf16 as ModelOpt stores it; zero stays zero.
  for (float& a : amax) a = aq::round_to_bf16(a * 0.75f);
  AQ_CUDA_OK(cudaMemcpy(d_amax, amax.data(), amax.size() * sizeof(float), cudaMemcpyHostToDevice));

  for (auto rounding : {aq::quant::output_rounding::fp32, aq::quant::output_rounding::bf16}) {
    const std::string label = name + (rounding == aq::quant::output_rounding::bf16 ? " (bf16 out)" : " (fp32 out)");
    std::vector<float> expected(n);
    aq::quant::fake_quantize_matrix<Q>(host_in, expected, rows, cols, amax, rounding);
    std::vector<float> got(n);

    AQ_CUDA_OK((aq::cuda::fake_quantize<Q, float, float>(d_in, d_out, rows, cols, d_amax, rounding)));
    AQ_CUDA_OK(cudaMemcpy(got.data(), d_out, n * sizeof(float), cudaMemcpyDeviceToHost));
    expect(same_bits(got, expected), label + " float in");

    AQ_CUDA_OK((aq::cuda::fake_quantize<Q, aq::bf16, float>(d_in_bf16, d_out, rows, cols, d_amax, rounding)));
    AQ_CUDA_OK(cudaMemcpy(got.data(), d_out, n * sizeof(float), cudaMemcpyDeviceToHost));
    std::vector<float> expected_from_bf16(n);
    std::vector<float> in_rounded(n);
    for (std::size_t i = 0; i < n; ++i) in_rounded[i] = aq::bf16_to_float(host_in_bf16[i]);
    aq::quant::fake_quantize_matrix<Q>(in_rounded, expected_from_bf16, rows, cols, amax, rounding);
    expect(same_bits(got, expected_from_bf16), label + " bf16 in");

    if (rounding == aq::quant::output_rounding::bf16) {
      std::vector<aq::bf16> got_bf16(n);
      AQ_CUDA_OK((aq::cuda::fake_quantize<Q, aq::bf16, aq::bf16>(d_in_bf16, d_out_bf16, rows, cols, d_amax, rounding)));
      AQ_CUDA_OK(cudaMemcpy(got_bf16.data(), d_out_bf16, n * sizeof(aq::bf16), cudaMemcpyDeviceToHost));
      bool same = true;
      for (std::size_t i = 0; i < n; ++i) {
        same = same && (got_bf16[i].bits == aq::float_to_bf16(expected_from_bf16[i]).bits ||
                        (std::isnan(expected_from_bf16[i]) && std::isnan(aq::bf16_to_float(got_bf16[i]))));
      }
      expect(same, label + " bf16 in, bf16 out");
    }
  }
  AQ_CUDA_OK(cudaDeviceSynchronize());
  std::printf("%s: compared %zu elements x 5 variants\n", name.c_str(), n);
  cudaFree(d_in);
  cudaFree(d_in_bf16);
  cudaFree(d_out);
  cudaFree(d_out_bf16);
  cudaFree(d_amax);
  return 0;
}

// 0 when every comparison matches; each mismatch is printed as it is found.
int run_checks() {
  using aq::formats::e4m3;
  using aq::formats::int4;
  using aq::formats::int8;
  using aq::quant::per_block;
  using aq::quant::per_channel;
  using aq::quant::per_tensor;
  using aq::quant::per_tile;
  using aq::quant::quantizer;

  if (exhaustive_checks() != 0) return 1;

  const std::int64_t rows = 37, cols = 300;  // 300 = two full 128-blocks + a padded one per row
  const auto m = make_matrix(rows, cols);
  int status = 0;
  status |= compare_with_host<quantizer<int8, per_channel>>(m, rows, cols);
  status |= compare_with_host<quantizer<int8, per_tensor>>(m, rows, cols);
  status |= compare_with_host<quantizer<int8, per_tensor, aq::quant::static_amax, true>>(m, rows, cols);
  status |= compare_with_host<quantizer<int4, per_block<128>>>(m, rows, cols);
  status |= compare_with_host<quantizer<int4, per_tensor>>(m, rows, cols);
  status |= compare_with_host<quantizer<e4m3, per_tensor>>(m, rows, cols);
  status |= compare_with_host<quantizer<e4m3, per_channel>>(m, rows, cols);
  status |= compare_with_host<quantizer<e5m2, per_block<128>>>(m, rows, cols);
  status |= compare_with_host<aq::quant::disabled>(m, rows, cols);
  status |= compare_with_host<quantizer<e4m3, per_tile<128, 128>>>(m, rows, cols);
  status |= compare_with_host<quantizer<e4m3, per_tile<16, 128>>>(m, rows, cols);  // a 2-D grid: torch's scale
  // Every recipe's two quantizers (respelled as plain quantizer types: nvcc's host stubs cannot
  // name a kernel argument through the recipe's string template parameter).
  aq::recipes::all_recipes::for_each([&]<class R>() {
    using W = typename R::weight;
    using I = typename R::input;
    status |= compare_with_host<quantizer<typename W::format_type, typename W::granularity_type,
                                          typename W::scaling_type, W::narrow_range>>(m, rows, cols);
    status |= compare_with_host<quantizer<typename I::format_type, typename I::granularity_type,
                                          typename I::scaling_type, I::narrow_range>>(m, rows, cols);
  });
  // Data-scaled quantizers, on the plain matrix and with NaN/infinities/subnormals planted.
  const auto specials = with_specials(m, cols);
  const float finite_amax = aq::quant::compute_amax<per_tensor>(m, rows, cols).front();
  status |= compare_with_host<aq::recipes::nvfp4_quantizer>(m, rows, cols);
  status |= compare_with_host<aq::recipes::nvfp4_quantizer>(specials, rows, cols, {finite_amax});
  aq::formats::all_formats::for_each([&]<class F>() {
    if constexpr (!F::is_passthrough) {
      status |= compare_with_host<aq::recipes::mx_quantizer<F>>(m, rows, cols);
      status |= compare_with_host<aq::recipes::mx_quantizer<F>>(specials, rows, cols);
    }
  });
  status |= compare_with_host<quantizer<e4m3, aq::quant::per_token, aq::quant::dynamic_amax>>(m, rows, cols);
  status |= compare_with_host<quantizer<e4m3, aq::quant::per_token, aq::quant::dynamic_amax>>(specials, rows, cols);
  if (status != 0 || failures != 0) {
    std::printf("%d failure(s)\n", failures + status);
    return 1;
  }
  std::printf("all CUDA fake-quant checks passed\n");
  return 0;
}

}  // namespace

AQ_GPU_TEST("cuda fake quantization") { aq_test::expect(run_checks() == 0, "GPU fake quantization equals the host's"); }

}  // namespace test_fake_quant_cuda
