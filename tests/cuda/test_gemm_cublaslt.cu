// cuBLASLt bf16 GEMMs against the CPU fp32 GEMM of the same bf16-rounded inputs: forward with
// and without bias, accumulation, strided (column-block) views, and the input gradient.
// Tolerances (relative to the reference's max |value|): fp32 output 1e-5 (only the fp32
// summation order differs), bf16 output 1e-2 (one bf16 rounding of the result, ≤ 2^-9 each).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "aq/backend/cpu/gemm.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/gemm_cublaslt.cuh"
#include "cuda_test_util.cuh"

namespace test_gemm_cublaslt {

namespace {

using aq::bf16;
using aq::cuda::device_buffer;
using aq::cuda::device_matrix;
using namespace aq_test;

constexpr double fp32_tol = 1e-5;
constexpr double bf16_tol = 1e-2;

// A [rows, cols] matrix stored inside a wider [rows, ld] buffer at column offset `off`.
struct host_block {
  std::int64_t rows, cols, ld, off;
  std::vector<float> storage;  // bf16-rounded values
  host_block(std::int64_t r, std::int64_t c, std::int64_t l, std::int64_t o, std::uint32_t seed)
      : rows(r), cols(c), ld(l), off(o), storage(bf16_rounded(random_floats(static_cast<std::size_t>(r * l), seed))) {}
  aq::const_matrix_view view() const { return {storage.data() + off, rows, cols, ld}; }
};

template <class Out>
struct out_traits;
template <>
struct out_traits<float> {
  static constexpr const char* name = "fp32";
  static constexpr double tol = fp32_tol;
};
template <>
struct out_traits<bf16> {
  static constexpr const char* name = "bf16";
  static constexpr double tol = bf16_tol;
};

template <class Out>
std::vector<Out> convert_out(const std::vector<float>& v) {
  if constexpr (std::is_same_v<Out, float>) {
    return v;
  } else {
    return to_bf16(v);
  }
}
template <class Out>
std::vector<float> back_to_float(const std::vector<Out>& v) {
  if constexpr (std::is_same_v<Out, float>) {
    return v;
  } else {
    return to_float(v);
  }
}

// Gathers the [rows, cols] block at column `off` of a [rows, ld] buffer.
std::vector<float> block_of(const std::vector<float>& buf, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                            std::int64_t off) {
  std::vector<float> out(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) out[static_cast<std::size_t>(r * cols + c)] = buf[static_cast<std::size_t>(r * ld + off + c)];
  }
  return out;
}

template <class Out>
void forward_case(aq::cuda::cublaslt_gemm& gemm, std::int64_t m, std::int64_t k, std::int64_t n, bool bias,
                  bool accumulate, std::int64_t pad, std::uint32_t seed) {
  const std::string label = std::string("forward ") + out_traits<Out>::name + " out, M=" + std::to_string(m) +
                            " K=" + std::to_string(k) + " N=" + std::to_string(n) + (bias ? ", bias" : "") +
                            (accumulate ? ", accumulate" : "") + (pad > 0 ? ", strided views" : "");
  const host_block x(m, k, k + pad, pad > 0 ? 8 : 0, seed);
  const host_block w(n, k, k + pad, pad > 0 ? 8 : 0, seed + 1);
  const std::int64_t ldy = n + pad;
  const std::int64_t offy = pad > 0 ? 8 : 0;
  std::vector<float> b = random_floats(static_cast<std::size_t>(n), seed + 2);
  // Initial y: random (bf16-representable when Out is bf16) when accumulating, else NaN poison.
  std::vector<float> y0 = bf16_rounded(random_floats(static_cast<std::size_t>(m * ldy), seed + 3));

  std::vector<float> ref = y0;
  aq::matrix_view ref_view{ref.data() + offy, m, n, ldy};
  aq::cpu::linear_forward(x.view(), w.view(), ref_view, bias ? b.data() : nullptr, accumulate);

  device_buffer<bf16> dx(to_bf16(x.storage));
  device_buffer<bf16> dw(to_bf16(w.storage));
  device_buffer<float> db(b);
  device_buffer<Out> dy(convert_out<Out>(y0));
  if (!accumulate) dy.fill_bytes(0xff);  // NaN poison: every output element must be written
  gemm.linear_forward(device_matrix<const bf16>{dx.data() + x.off, m, k, x.ld},
                      device_matrix<const bf16>{dw.data() + w.off, n, k, w.ld},
                      device_matrix<Out>{dy.data() + offy, m, n, ldy}, bias ? db.data() : nullptr, accumulate);
  const std::vector<float> got = back_to_float<Out>(dy.to_host());
  const double err = rel_err(block_of(got, m, n, ldy, offy), block_of(ref, m, n, ldy, offy));
  expect_close(err, out_traits<Out>::tol, label);
  if (pad > 0) {  // columns outside the block are untouched
    bool untouched = true;
    const std::vector<float> before = back_to_float<Out>(convert_out<Out>(y0));
    for (std::int64_t r = 0; r < m; ++r) {
      for (std::int64_t c = 0; c < ldy; ++c) {
        if (c >= offy && c < offy + n) continue;
        const auto i = static_cast<std::size_t>(r * ldy + c);
        untouched = untouched && (accumulate ? got[i] == before[i] : std::isnan(got[i]));
      }
    }
    expect(untouched, label + ": elements outside the view untouched");
  }
}

template <class Out>
void backward_case(aq::cuda::cublaslt_gemm& gemm, std::int64_t m, std::int64_t k, std::int64_t n, bool accumulate,
                   std::uint32_t seed) {
  const std::string label = std::string("backward_input ") + out_traits<Out>::name + " out, M=" + std::to_string(m) +
                            " N=" + std::to_string(n) + " K=" + std::to_string(k) + (accumulate ? ", accumulate" : "");
  const host_block dy(m, n, n, 0, seed);
  const host_block w(n, k, k, 0, seed + 1);
  std::vector<float> dx0 = bf16_rounded(random_floats(static_cast<std::size_t>(m * k), seed + 2));
  std::vector<float> ref = dx0;
  aq::cpu::linear_backward_input(dy.view(), w.view(), aq::matrix_view{ref.data(), m, k, k}, accumulate);

  device_buffer<bf16> ddy(to_bf16(dy.storage));
  device_buffer<bf16> dw(to_bf16(w.storage));
  device_buffer<Out> ddx(convert_out<Out>(dx0));
  if (!accumulate) ddx.fill_bytes(0xff);
  gemm.linear_backward_input(device_matrix<const bf16>{ddy.data(), m, n, n}, device_matrix<const bf16>{dw.data(), n, k, k},
                             device_matrix<Out>{ddx.data(), m, k, k}, accumulate);
  expect_close(rel_err(back_to_float<Out>(ddx.to_host()), ref), out_traits<Out>::tol, label);
}

}  // namespace

AQ_GPU_TEST("cuda gemm (cuBLASLt)") {
  aq::cuda::cublaslt_gemm gemm;
  forward_case<float>(gemm, 256, 512, 384, false, false, 0, 1);
  forward_case<bf16>(gemm, 256, 512, 384, false, false, 0, 2);
  forward_case<float>(gemm, 77, 200, 130, true, false, 0, 3);
  forward_case<bf16>(gemm, 77, 200, 130, true, false, 0, 4);
  forward_case<float>(gemm, 128, 2560, 96, true, true, 0, 5);
  forward_case<bf16>(gemm, 64, 256, 200, false, true, 0, 6);
  forward_case<float>(gemm, 100, 136, 72, true, false, 24, 7);
  forward_case<bf16>(gemm, 33, 264, 40, false, true, 40, 8);
  backward_case<float>(gemm, 256, 384, 512, false, 9);
  backward_case<bf16>(gemm, 77, 130, 200, false, 10);
  backward_case<float>(gemm, 64, 96, 2560, true, 11);
  {
    aq::cuda::device_buffer<bf16> x(64 * 128), w(32 * 128);
    aq::cuda::device_buffer<float> b(32), y(64 * 32);
    const bool fused = gemm.bias_fused(device_matrix<const bf16>{x.data(), 64, 128, 128},
                                       device_matrix<const bf16>{w.data(), 32, 128, 128},
                                       device_matrix<bf16>{reinterpret_cast<bf16*>(y.data()), 64, 32, 32}, b.data());
    std::printf("info: fp32 bias fused into the bf16-output epilogue: %s\n", fused ? "yes" : "no (separate kernel)");
  }
  // Shape errors are reported, not run.
  bool threw = false;
  try {
    aq::cuda::device_buffer<bf16> x(4 * 8), w(4 * 9);
    aq::cuda::device_buffer<float> y(16);
    gemm.linear_forward(device_matrix<const bf16>{x.data(), 4, 8, 8}, device_matrix<const bf16>{w.data(), 4, 9, 9},
                        device_matrix<float>{y.data(), 4, 4, 4});
  } catch (const aq::error&) {
    threw = true;
  }
  expect(threw, "mismatched inner dimensions throw aq::error");
  expect(gemm.cached_plans() >= 11, "plans are cached per shape (" + std::to_string(gemm.cached_plans()) + ")");
}

}  // namespace test_gemm_cublaslt
