// SwiGLU (fp32 and bf16 outputs; rows of whole 4-element packs and rows without), GELU (tanh
// and erf) and the embedding gather on the GPU against the CPU backend.
// Tolerance: fp32 in/out ≤ 1e-5 relative to the reference's max |value| (expf/tanhf/erff differ
// from the host's by a few ulp at most); the gather is exact.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "aq/backend/cpu/gelu.hpp"
#include "aq/backend/cpu/swiglu.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/embedding.cuh"
#include "aq/backend/cuda/kernels/gelu.cuh"
#include "aq/backend/cuda/kernels/swiglu.cuh"
#include "cuda_test_util.cuh"

namespace test_elementwise_cuda {

namespace {

using aq::bf16;
using aq::cuda::device_buffer;
using aq::cuda::device_matrix;
using namespace aq_test;

constexpr double fp32_tol = 1e-5;

void swiglu_case(std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
  const std::string label = "swiglu [" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  const auto n = static_cast<std::size_t>(rows * cols);
  const std::vector<float> a = random_floats(n, seed, 3.0f), b = random_floats(n, seed + 1), g = random_floats(n, seed + 2);
  std::vector<float> y(n), da(n), db(n);
  const aq::const_matrix_view av{a.data(), rows, cols, cols}, bv{b.data(), rows, cols, cols}, gv{g.data(), rows, cols, cols};
  aq::cpu::swiglu_forward(av, bv, {y.data(), rows, cols, cols});
  aq::cpu::swiglu_backward(av, bv, gv, {da.data(), rows, cols, cols}, {db.data(), rows, cols, cols});
  device_buffer<float> d_a(a), d_b(b), d_g(g), d_y(n), d_da(n), d_db(n);
  d_y.fill_bytes(0xff);
  d_da.fill_bytes(0xff);
  d_db.fill_bytes(0xff);
  const device_matrix<const float> A{d_a.data(), rows, cols, cols}, B{d_b.data(), rows, cols, cols},
      G{d_g.data(), rows, cols, cols};
  aq::cuda::swiglu_forward(A, B, device_matrix<float>{d_y.data(), rows, cols, cols});
  aq::cuda::swiglu_backward(A, B, G, device_matrix<float>{d_da.data(), rows, cols, cols},
                            device_matrix<float>{d_db.data(), rows, cols, cols});
  expect_close(rel_err(d_y.to_host(), y), fp32_tol, label + " forward");
  expect_close(rel_err(d_da.to_host(), da), fp32_tol, label + " d gate");
  expect_close(rel_err(d_db.to_host(), db), fp32_tol, label + " d up");

  // bf16 outputs (the text model's operands and gradients) and a bf16 gradient: each element
  // is the fp32 result rounded, packed rows or not.
  device_buffer<bf16> d_gb(to_bf16(g)), d_yb(n), d_dab(n), d_dbb(n);
  device_buffer<float> d_da2(n), d_db2(n);
  const device_matrix<const bf16> GB{d_gb.data(), rows, cols, cols};
  aq::cuda::swiglu_forward(A, B, device_matrix<bf16>{d_yb.data(), rows, cols, cols});
  aq::cuda::swiglu_backward(A, B, GB, device_matrix<bf16>{d_dab.data(), rows, cols, cols},
                            device_matrix<bf16>{d_dbb.data(), rows, cols, cols});
  aq::cuda::swiglu_backward(A, B, GB, device_matrix<float>{d_da2.data(), rows, cols, cols},
                            device_matrix<float>{d_db2.data(), rows, cols, cols});
  const auto rounded = [](const std::vector<bf16>& got, const std::vector<float>& fp32) {
    bool same = got.size() == fp32.size();
    for (std::size_t i = 0; same && i < got.size(); ++i) same = aq::bf16_to_float(got[i]) == aq::round_to_bf16(fp32[i]);
    return same;
  };
  expect(rounded(d_yb.to_host(), d_y.to_host()), label + " forward, bf16 output = fp32 output rounded");
  expect(rounded(d_dab.to_host(), d_da2.to_host()), label + " d gate, bf16 output = fp32 output rounded");
  expect(rounded(d_dbb.to_host(), d_db2.to_host()), label + " d up, bf16 output = fp32 output rounded");
}

template <class CpuAct, class CudaAct>
void gelu_case(const char* name, std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
  const std::string label = std::string(name) + " [" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  const auto n = static_cast<std::size_t>(rows * cols);
  const std::vector<float> x = random_floats(n, seed, 3.0f), g = random_floats(n, seed + 1);
  std::vector<float> y(n), dx(n);
  const aq::const_matrix_view xv{x.data(), rows, cols, cols};
  aq::cpu::activation_forward<CpuAct>(xv, {y.data(), rows, cols, cols});
  aq::cpu::activation_backward<CpuAct>(xv, {g.data(), rows, cols, cols}, {dx.data(), rows, cols, cols});
  device_buffer<float> d_x(x), d_g(g), d_y(n);
  d_y.fill_bytes(0xff);
  const device_matrix<const float> X{d_x.data(), rows, cols, cols};
  aq::cuda::activation_forward<CudaAct>(X, device_matrix<float>{d_y.data(), rows, cols, cols});
  expect_close(rel_err(d_y.to_host(), y), fp32_tol, label + " forward");
  // dx aliases g (in place, as the model does).
  aq::cuda::activation_backward<CudaAct>(X, device_matrix<const float>{d_g.data(), rows, cols, cols},
                                         device_matrix<float>{d_g.data(), rows, cols, cols});
  expect_close(rel_err(d_g.to_host(), dx), fp32_tol, label + " backward (in place)");
}

void embedding_case() {
  const std::int64_t vocab = 1000, hidden = 96, tokens = 53;
  const std::vector<float> table = bf16_rounded(random_floats(static_cast<std::size_t>(vocab * hidden), 7));
  std::vector<std::int64_t> ids(static_cast<std::size_t>(tokens));
  for (std::int64_t i = 0; i < tokens; ++i) ids[static_cast<std::size_t>(i)] = (i * 389 + 17) % vocab;
  ids[0] = 0;
  ids[1] = vocab - 1;
  device_buffer<bf16> d_table(to_bf16(table));
  device_buffer<std::int64_t> d_ids;
  device_buffer<float> d_out(static_cast<std::size_t>(tokens * hidden));
  d_out.fill_bytes(0xff);
  aq::cuda::embedding_forward(ids, d_ids, device_matrix<const bf16>{d_table.data(), vocab, hidden, hidden},
                              device_matrix<float>{d_out.data(), tokens, hidden, hidden});
  const std::vector<float> got = d_out.to_host();
  bool exact = true;
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t c = 0; c < hidden; ++c) {
      exact = exact && got[static_cast<std::size_t>(t * hidden + c)] ==
                           table[static_cast<std::size_t>(ids[static_cast<std::size_t>(t)] * hidden + c)];
    }
  }
  expect(exact, "embedding gather of 53 tokens from a bf16 [1000, 96] table is exact");
  bool threw = false;
  try {
    std::vector<std::int64_t> bad = ids;
    bad[5] = vocab;
    aq::cuda::embedding_forward(bad, d_ids, device_matrix<const bf16>{d_table.data(), vocab, hidden, hidden},
                                device_matrix<float>{d_out.data(), tokens, hidden, hidden});
  } catch (const aq::error& e) {
    threw = std::string(e.what()).find("position 5") != std::string::npos;
  }
  expect(threw, "an out-of-vocabulary id throws, naming its position");
}

}  // namespace

AQ_GPU_TEST("cuda elementwise") {
  swiglu_case(64, 9728, 1);
  swiglu_case(5, 333, 2);
  gelu_case<aq::cpu::gelu_tanh, aq::cuda::gelu_tanh>("gelu_tanh", 48, 4096, 3);
  gelu_case<aq::cpu::gelu_erf, aq::cuda::gelu_erf>("gelu_erf", 7, 5120, 4);
  embedding_case();
}

}  // namespace test_elementwise_cuda
