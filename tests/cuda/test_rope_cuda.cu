// RoPE on the GPU against the CPU backend: the interleaved M-RoPE tables (Qwen3-VL text,
// head_dim 128, mrope_section [24, 20, 20]), the in-place rotation (also by the vision tower's
// 2-D tables) and its input gradient on fp32 and bf16 q/k, and the fused q/k norm + RoPE
// forward and backward. Tolerance: tables and fp32 rotation ≤ 1e-5 relative
// to the reference's max |value| (cosf/sinf differ from the host's by ≤ 2 ulp); bf16 ≤ 1e-2.
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "aq/backend/cpu/rms_norm.hpp"
#include "aq/backend/cpu/rope.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/qk_norm_rope.cuh"
#include "aq/backend/cuda/kernels/rms_norm.cuh"
#include "aq/backend/cuda/kernels/rope.cuh"
#include "cuda_test_util.cuh"

namespace test_rope_cuda {

namespace {

using aq::bf16;
using aq::cuda::device_buffer;
using aq::cuda::device_matrix;
using namespace aq_test;

constexpr double fp32_tol = 1e-5;
constexpr double bf16_tol = 1e-2;

void apply_case(const std::string& what, const aq::tensor& cos, const aq::tensor& sin, std::int64_t heads,
                std::uint32_t seed) {
  const std::int64_t tokens = cos.dim(0), dim = cos.dim(1);
  const std::int64_t cols = heads * dim;
  const std::int64_t ld = cols + 2 * dim;  // a column block of a wider qkv buffer
  const std::int64_t off = dim;
  const auto n = static_cast<std::size_t>(tokens * ld);
  const std::vector<float> x = random_floats(n, seed, 2.0f);
  std::vector<float> fwd = x, bwd = x;
  aq::cpu::rope_forward({fwd.data() + off, tokens, cols, ld}, heads, cos, sin);
  aq::cpu::rope_backward({bwd.data() + off, tokens, cols, ld}, heads, cos, sin);

  device_buffer<float> d_cos(cos.storage()), d_sin(sin.storage());
  const device_matrix<const float> C{d_cos.data(), tokens, dim, dim}, S{d_sin.data(), tokens, dim, dim};
  device_buffer<float> d_f(x), d_b(x);
  aq::cuda::rope_forward(device_matrix<float>{d_f.data() + off, tokens, cols, ld}, heads, C, S);
  aq::cuda::rope_backward(device_matrix<float>{d_b.data() + off, tokens, cols, ld}, heads, C, S);
  const std::vector<float> got_f = d_f.to_host(), got_b = d_b.to_host();
  expect_close(rel_err(got_f, fwd), fp32_tol, what + " rotation forward");
  expect_close(rel_err(got_b, bwd), fp32_tol, what + " rotation backward");
  bool outside = true;
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t c = 0; c < ld; ++c) {
      if (c >= off && c < off + cols) continue;
      const auto i = static_cast<std::size_t>(t * ld + c);
      outside = outside && got_f[i] == x[i] && got_b[i] == x[i];
    }
  }
  expect(outside, what + " columns outside the view untouched");

  // bf16 storage (q/k of a bf16 model).
  const std::vector<float> xr = bf16_rounded(x);
  std::vector<float> ref = xr;
  aq::cpu::rope_forward({ref.data() + off, tokens, cols, ld}, heads, cos, sin);
  device_buffer<bf16> d_h(to_bf16(xr));
  aq::cuda::rope_forward(device_matrix<bf16>{d_h.data() + off, tokens, cols, ld}, heads, C, S);
  expect_close(rel_err(to_float(d_h.to_host()), ref), bf16_tol, what + " rotation forward, bf16");
}

void mrope_case() {
  const std::int64_t tokens = 300, dim = 128;
  const std::array<std::int64_t, 3> section{24, 20, 20};
  std::vector<std::int64_t> pos(static_cast<std::size_t>(3 * tokens));
  for (std::int64_t n = 0; n < tokens; ++n) {  // text positions, then an image-like block with distinct h/w
    pos[static_cast<std::size_t>(n)] = n < 200 ? n : 200 + (n - 200) / 50;
    pos[static_cast<std::size_t>(tokens + n)] = n < 200 ? n : 200 + ((n - 200) / 10) % 5;
    pos[static_cast<std::size_t>(2 * tokens + n)] = n < 200 ? n : 200 + (n - 200) % 10 + 4000;
  }
  const std::vector<float> inv = aq::cpu::rope_inv_freq(dim, 5000000.0);
  aq::tensor cos, sin;
  aq::cpu::mrope_tables(pos.data(), pos.data() + tokens, pos.data() + 2 * tokens, tokens, inv, section, cos, sin);

  device_buffer<std::int64_t> d_pos(pos);
  device_buffer<float> d_inv(inv), d_cos(static_cast<std::size_t>(tokens * dim)), d_sin(static_cast<std::size_t>(tokens * dim));
  d_cos.fill_bytes(0xff);
  d_sin.fill_bytes(0xff);
  aq::cuda::mrope_tables(d_pos.data(), tokens, d_inv.data(), dim / 2, section,
                         device_matrix<float>{d_cos.data(), tokens, dim, dim},
                         device_matrix<float>{d_sin.data(), tokens, dim, dim});
  expect_close(rel_err(d_cos.to_host(), cos.storage()), fp32_tol, "M-RoPE cos table [300, 128]");
  expect_close(rel_err(d_sin.to_host(), sin.storage()), fp32_tol, "M-RoPE sin table [300, 128]");
  apply_case("M-RoPE 32 q heads", cos, sin, 32, 5);
  apply_case("M-RoPE 8 k heads", cos, sin, 8, 6);
}

void vision_case() {
  // One 1×8×12 grid with 2×2 merging, in the merge-block order of the vision tower.
  const std::int64_t gh = 8, gw = 12, m = 2, hd = 64, tokens = gh * gw;
  std::vector<std::int64_t> prow, pcol;
  for (std::int64_t bh = 0; bh < gh / m; ++bh)
    for (std::int64_t bw = 0; bw < gw / m; ++bw)
      for (std::int64_t mh = 0; mh < m; ++mh)
        for (std::int64_t mw = 0; mw < m; ++mw) {
          prow.push_back(bh * m + mh);
          pcol.push_back(bw * m + mw);
        }
  const std::vector<float> inv = aq::cpu::rope_inv_freq(hd / 2, 10000.0);
  const auto quarter = static_cast<std::int64_t>(inv.size());
  aq::tensor cos({tokens, hd}), sin({tokens, hd});
  for (std::int64_t n = 0; n < tokens; ++n) {  // the CPU vision tower's table formula
    for (std::int64_t j = 0; j < 2 * quarter; ++j) {
      const float p = static_cast<float>(j < quarter ? prow[static_cast<std::size_t>(n)] : pcol[static_cast<std::size_t>(n)]);
      const float angle = p * inv[static_cast<std::size_t>(j % quarter)];
      for (const std::int64_t col : {j, j + 2 * quarter}) {
        cos.data()[n * hd + col] = std::cos(angle);
        sin.data()[n * hd + col] = std::sin(angle);
      }
    }
  }
  apply_case("vision RoPE 16 heads", cos, sin, 16, 7);
}

// The fused q/k RMSNorm + RoPE (qk_norm_rope.cuh) against the CPU norm then rotation in fp64
// terms (fp32 output ≤ 1e-6 of max |y|), against the unfused GPU kernels (fp32 output equal to
// within 1 ulp-level 1e-6; bf16 output = the unfused fp32 result rounded, ≤ 1e-2), and its
// inverse rms equal to the unfused one.
void qk_norm_rope_case() {
  const std::int64_t tokens = 37, heads = 6, dim = 128;
  const std::int64_t rows = tokens * heads;
  std::vector<std::int64_t> pos(static_cast<std::size_t>(3 * tokens));
  for (std::int64_t n = 0; n < tokens; ++n) {
    for (int a = 0; a < 3; ++a) pos[static_cast<std::size_t>(a * tokens + n)] = n * (a + 1) % 29;
  }
  const std::vector<float> inv = aq::cpu::rope_inv_freq(dim, 1000000.0);
  aq::tensor cos, sin;
  aq::cpu::mrope_tables(pos.data(), pos.data() + tokens, pos.data() + 2 * tokens, tokens, inv, {24, 20, 20}, cos, sin);
  const std::vector<float> x = random_floats(static_cast<std::size_t>(rows * dim), 21, 3.0f, 0.5f);
  const std::vector<float> w = random_floats(static_cast<std::size_t>(dim), 22, 0.2f, 1.0f);
  const float eps = 1e-6f;
  // fp64 reference: y = rope(w · x / rms(x)) per (token, head) row.
  std::vector<double> ref(x.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t t = r / heads;
    double ss = 0.0;
    for (std::int64_t c = 0; c < dim; ++c) ss += static_cast<double>(x[static_cast<std::size_t>(r * dim + c)]) * x[static_cast<std::size_t>(r * dim + c)];
    const double rr = 1.0 / std::sqrt(ss / dim + eps);
    const auto yv = [&](std::int64_t c) { return w[static_cast<std::size_t>(c)] * x[static_cast<std::size_t>(r * dim + c)] * rr; };
    for (std::int64_t i = 0; i < dim / 2; ++i) {
      const double a = yv(i), b = yv(i + dim / 2);
      ref[static_cast<std::size_t>(r * dim + i)] = a * cos.data()[t * dim + i] - b * sin.data()[t * dim + i];
      ref[static_cast<std::size_t>(r * dim + i + dim / 2)] = b * cos.data()[t * dim + i + dim / 2] + a * sin.data()[t * dim + i + dim / 2];
    }
  }
  device_buffer<float> d_cos(cos.storage()), d_sin(sin.storage()), d_x(x), d_w(w);
  const device_matrix<const float> C{d_cos.data(), tokens, dim, dim}, S{d_sin.data(), tokens, dim, dim};
  const device_matrix<const float> X{d_x.data(), rows, dim, dim};
  device_buffer<float> fused(x.size()), unfused(x.size()), r_fused(static_cast<std::size_t>(rows)),
      r_unfused(static_cast<std::size_t>(rows));
  device_buffer<bf16> fused_bf(x.size());
  aq::cuda::qk_norm_rope_forward(X, heads, d_w.data(), eps, C, S, device_matrix<float>{fused.data(), rows, dim, dim},
                                 r_fused.data());
  aq::cuda::qk_norm_rope_forward(X, heads, d_w.data(), eps, C, S, device_matrix<bf16>{fused_bf.data(), rows, dim, dim},
                                 nullptr);
  aq::cuda::rms_norm_forward(X, d_w.data(), eps, device_matrix<float>{unfused.data(), rows, dim, dim}, r_unfused.data());
  aq::cuda::rope_forward(device_matrix<float>{unfused.data(), tokens, heads * dim, heads * dim}, heads, C, S);
  const std::vector<float> f = fused.to_host(), u = unfused.to_host();
  expect_close(rel_err(f, ref), 1e-6, "fused q/k norm + RoPE vs fp64 [222 rows x 128]");
  expect_close(rel_err(f, u), 1e-6, "fused vs unfused GPU kernels (fp32 output)");
  expect(r_fused.to_host() == r_unfused.to_host(), "fused inverse rms equals the norm kernel's");
  // Rows of 128 run the register-cached kernel: the same bits as the generic one.
  device_buffer<float> generic(x.size());
  aq::cuda::detail::qk_norm_rope_kernel<float, float><<<aq::cuda::detail::qk_row_blocks(rows), 32 * aq::cuda::detail::qk_warps_per_block>>>(
      X, heads, d_w.data(), eps, C, S, device_matrix<float>{generic.data(), rows, dim, dim}, nullptr);
  expect(generic.to_host() == f, "cached forward kernel equals the generic one bit for bit");
  expect_close(rel_err(to_float(fused_bf.to_host()), u), bf16_tol, "fused, bf16 output");
  bool rounded = true;
  const std::vector<float> fb = to_float(fused_bf.to_host());
  for (std::size_t i = 0; i < f.size(); ++i) rounded = rounded && fb[i] == aq::round_to_bf16(f[i]);
  expect(rounded, "bf16 output is the fp32 output rounded (round to nearest even)");
  bool threw = false;
  try {
    aq::cuda::qk_norm_rope_forward(X, 5, d_w.data(), eps, C, S, device_matrix<float>{fused.data(), rows, dim, dim},
                                   nullptr);
  } catch (const aq::error&) {
    threw = true;
  }
  expect(threw, "rows not a multiple of heads: error");
}

// The fused backward (qk_rope_norm_backward) on bf16 gradients against the CPU's rope_backward
// then rms_norm_backward (fp32 output ≤ 1e-6 of max |dx|) and against the unfused GPU kernels
// (≤ 1e-6: only the order of the fp64 dot product differs); bf16 output = the fp32 one rounded
// (≤ 1e-2).
void qk_rope_norm_backward_case() {
  const std::int64_t tokens = 41, heads = 4, dim = 128;
  const std::int64_t rows = tokens * heads;
  std::vector<std::int64_t> pos(static_cast<std::size_t>(3 * tokens));
  for (std::int64_t n = 0; n < tokens; ++n) {
    for (int a = 0; a < 3; ++a) pos[static_cast<std::size_t>(a * tokens + n)] = (n * (a + 2)) % 31;
  }
  const std::vector<float> inv = aq::cpu::rope_inv_freq(dim, 1000000.0);
  aq::tensor cos, sin;
  aq::cpu::mrope_tables(pos.data(), pos.data() + tokens, pos.data() + 2 * tokens, tokens, inv, {24, 20, 20}, cos, sin);
  const auto n = static_cast<std::size_t>(rows * dim);
  const std::vector<float> x = random_floats(n, 31, 3.0f, 0.5f);
  const std::vector<float> w = random_floats(static_cast<std::size_t>(dim), 32, 0.2f, 1.0f);
  const std::vector<float> dy = bf16_rounded(random_floats(n, 33, 2.0f));
  const float eps = 1e-6f;
  std::vector<float> y(n), inv_rms(static_cast<std::size_t>(rows)), g = dy, ref(n);
  aq::cpu::rms_norm_forward({x.data(), rows, dim, dim}, w.data(), eps, {y.data(), rows, dim, dim}, inv_rms.data());
  aq::cpu::rope_backward({g.data(), tokens, heads * dim, heads * dim}, heads, cos, sin);
  aq::cpu::rms_norm_backward({x.data(), rows, dim, dim}, w.data(), inv_rms.data(), {g.data(), rows, dim, dim},
                             {ref.data(), rows, dim, dim});

  device_buffer<float> d_cos(cos.storage()), d_sin(sin.storage()), d_x(x), d_w(w), d_r(inv_rms), d_g(dy);
  device_buffer<bf16> d_dy(to_bf16(dy)), fused_bf(n);
  device_buffer<float> fused(n), unfused(n);
  const device_matrix<const float> C{d_cos.data(), tokens, dim, dim}, S{d_sin.data(), tokens, dim, dim};
  const device_matrix<const float> X{d_x.data(), rows, dim, dim};
  const device_matrix<const bf16> DY{d_dy.data(), rows, dim, dim};
  aq::cuda::qk_rope_norm_backward(DY, heads, X, d_w.data(), d_r.data(), C, S,
                                  device_matrix<float>{fused.data(), rows, dim, dim});
  aq::cuda::qk_rope_norm_backward(DY, heads, X, d_w.data(), d_r.data(), C, S,
                                  device_matrix<bf16>{fused_bf.data(), rows, dim, dim});
  aq::cuda::rope_backward(device_matrix<float>{d_g.data(), tokens, heads * dim, heads * dim}, heads, C, S);
  aq::cuda::rms_norm_backward(X, d_w.data(), d_r.data(), device_matrix<const float>{d_g.data(), rows, dim, dim},
                              device_matrix<float>{unfused.data(), rows, dim, dim});
  const std::vector<float> f = fused.to_host();
  expect_close(rel_err(f, ref), 1e-6, "fused q/k RoPE + norm backward vs CPU [164 rows x 128]");
  expect_close(rel_err(f, unfused.to_host()), 1e-6, "fused vs unfused GPU backward kernels");
  device_buffer<float> generic(n);
  aq::cuda::detail::qk_rope_norm_backward_kernel<bf16, float, float><<<aq::cuda::detail::qk_row_blocks(rows), 32 * aq::cuda::detail::qk_warps_per_block>>>(
      DY, heads, X, d_w.data(), d_r.data(), C, S, device_matrix<float>{generic.data(), rows, dim, dim});
  expect(generic.to_host() == f, "cached backward kernel equals the generic one bit for bit");
  const std::vector<float> fb = to_float(fused_bf.to_host());
  bool rounded = true;
  for (std::size_t i = 0; i < f.size(); ++i) rounded = rounded && fb[i] == aq::round_to_bf16(f[i]);
  expect(rounded, "fused backward, bf16 output is the fp32 output rounded");
  bool threw = false;
  try {
    aq::cuda::qk_rope_norm_backward(DY, 3, X, d_w.data(), d_r.data(), C, S,
                                    device_matrix<float>{fused.data(), rows, dim, dim});
  } catch (const aq::error&) {
    threw = true;
  }
  expect(threw, "backward: tables of another token count: error");
}

}  // namespace

AQ_GPU_TEST("cuda rope") {
  mrope_case();
  vision_case();
  qk_norm_rope_case();
  qk_rope_norm_backward_case();
}

}  // namespace test_rope_cuda
