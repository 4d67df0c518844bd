// Throughput of aq's cuBLASLt GEMM wrapper (heuristic's first algorithm, cached plan) on the
// Qwen3-VL-4B linear shapes at 4096 tokens, against the fastest of the heuristic's top
// candidates timed in the same run: forward Y = X·Wᵀ and input gradient dX = dY·W, bf16 in,
// fp32 accumulate, bf16 out. Prints a TFLOP/s table with ratios (and writes it to argv[1]).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/gemm_cublaslt.cuh"
#include "aq/core/bf16.hpp"
#include "cuda_bench_util.cuh"

namespace {

using aq::bf16;
using aq::cuda::device_buffer;
using aq::cuda::device_matrix;

// bf16 inputs that are never zero (zeros run faster).
device_buffer<bf16> random_buffer(std::int64_t n, std::uint32_t seed) {
  return aq_bench::random_buffer<bf16>(n, seed, 1.0f / 65536.0f);
}

using aq_bench::time_ms;

struct shape {
  const char* name;
  std::int64_t k, n;
};

}  // namespace

int main(int argc, char** argv) {
  if (!aq_bench::gpu_present()) return 0;
  try {
    cudaDeviceProp prop{};
    AQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const std::int64_t m = 4096;  // tokens (8 × 512)
    const std::vector<shape> shapes = {{"q_proj 2560->4096", 2560, 4096},     {"k/v_proj 2560->1024", 2560, 1024},
                                       {"o_proj 4096->2560", 4096, 2560},     {"gate/up 2560->9728", 2560, 9728},
                                       {"down 9728->2560", 9728, 2560},       {"lm_head 2560->151936", 2560, 151936}};
    constexpr int candidates = 16;
    aq::cuda::cublaslt_gemm gemm;
    std::string table;
    char line[512];
    std::snprintf(line, sizeof(line), "GPU: %s, %d SMs; M = %lld tokens, bf16 in/out, fp32 accumulate; median of 15 x 10 calls\n\n",
                  prop.name, prop.multiProcessorCount, static_cast<long long>(m));
    table += line;
    table += "| shape (K->N) | fwd aq TFLOP/s | fwd best-of-16 TFLOP/s | fwd ratio | dX aq TFLOP/s | dX best-of-16 TFLOP/s | dX ratio |\n";
    table += "|---|---:|---:|---:|---:|---:|---:|\n";
    for (const shape& s : shapes) {
      const std::int64_t k = s.k, n = s.n;
      // Rotate inputs over enough copies that they do not all sit in L2.
      const double set_bytes = 2.0 * static_cast<double>(m * k + n * k + m * n);
      const int sets = std::clamp(static_cast<int>(256e6 / set_bytes) + 1, 1, 4);
      std::vector<device_buffer<bf16>> xs, dys;
      for (int i = 0; i < sets; ++i) {
        xs.push_back(random_buffer(m * k, 11u + static_cast<std::uint32_t>(i)));
        dys.push_back(random_buffer(m * n, 101u + static_cast<std::uint32_t>(i)));
      }
      const device_buffer<bf16> w = random_buffer(n * k, 7u);
      device_buffer<bf16> y(static_cast<std::size_t>(m * n)), dx(static_cast<std::size_t>(m * k));
      auto X = [&](int i) { return device_matrix<const bf16>{xs[static_cast<std::size_t>(i % sets)].data(), m, k, k}; };
      auto DY = [&](int i) { return device_matrix<const bf16>{dys[static_cast<std::size_t>(i % sets)].data(), m, n, n}; };
      const device_matrix<const bf16> W{w.data(), n, k, k};
      const device_matrix<bf16> Y{y.data(), m, n, n}, DX{dx.data(), m, k, k};
      const double flop = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);

      const double fwd_ours = time_ms([&](int i) { gemm.linear_forward(X(i), W, Y); });
      double fwd_best = fwd_ours;
      for (const auto& algo : gemm.forward_algos(X(0), W, Y, nullptr, candidates)) {
        fwd_best = std::min(fwd_best, time_ms([&](int i) { gemm.linear_forward_with(algo, X(i), W, Y); }, 7, 5));
      }
      const double bwd_ours = time_ms([&](int i) { gemm.linear_backward_input(DY(i), W, DX); });
      double bwd_best = bwd_ours;
      for (const auto& algo : gemm.backward_input_algos(DY(0), W, DX, candidates)) {
        bwd_best = std::min(bwd_best, time_ms([&](int i) { gemm.linear_backward_input_with(algo, DY(i), W, DX); }, 7, 5));
      }
      AQ_CUDA_CHECK(cudaDeviceSynchronize());
      auto tf = [&](double ms) { return flop / (ms * 1e-3) / 1e12; };
      std::snprintf(line, sizeof(line), "| %s | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f |\n", s.name, tf(fwd_ours),
                    tf(fwd_best), fwd_best / fwd_ours, tf(bwd_ours), tf(bwd_best), bwd_best / bwd_ours);
      table += line;
      std::fflush(stdout);
    }
    std::printf("%s", table.c_str());
    if (argc > 1) std::ofstream(argv[1]) << table;
  } catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
  }
  return 0;
}
