// Throughput of aq's cuBLASLt GEMM wrapper (heuristic's first algorithm, cached plan) on the
// Qwen3-VL-4B linear shapes at 4096 tokens, against the fastest of the heuristic's top
// candidates timed in the same run: forward Y = X·Wᵀ and input gradient dX = dY·W, bf16 in,
// fp32 accumulate, bf16 out; then the recipe products on bf16 operands against e4m3 and int8
// codes. Prints TFLOP/s tables with ratios (and writes them to argv[1]).
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

// Random 1-byte codes under `mask`: 0xf7 keeps e4m3's exponent below all-ones (no NaN).
__global__ void fill_codes(std::uint8_t* p, std::int64_t n, std::uint32_t seed, unsigned mask) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    p[i] = static_cast<std::uint8_t>(aq_bench::element_hash(i, seed) & mask);
  }
}

device_buffer<std::uint8_t> random_codes(std::int64_t n, std::uint32_t seed, unsigned mask) {
  device_buffer<std::uint8_t> b(static_cast<std::size_t>(n));
  fill_codes<<<4096, 256>>>(b.data(), n, seed, mask);
  AQ_CUDA_CHECK_LAUNCH();
  return b;
}

// The recipe product Y_r = Q(X)·Q(W)ᵀ into fp32 three ways: bf16 operands (fp32 accumulation),
// e4m3 codes with both per-tensor factors in the GEMM, int8 codes into int32 (factors applied by
// the score pass). Rates against the bf16 operands'.
std::string recipe_product_table(aq::cuda::cublaslt_gemm& gemm, std::int64_t m, const std::vector<shape>& shapes) {
  std::string table =
      "\nRecipe products Y_r (fp32 or int32 out), heuristic's first algorithm:\n\n"
      "| shape (K->N) | bf16 operands TFLOP/s | e4m3 codes TFLOP/s | ratio | int8 codes TOP/s | ratio |\n"
      "|---|---:|---:|---:|---:|---:|\n";
  // Scale pointers 16 bytes apart: cuBLASLt refuses a scale pointer that is only 4-byte aligned.
  const device_buffer<float> factors = aq_bench::random_buffer<float>(8, 5, 2.0f);
  for (const shape& s : shapes) {
    const std::int64_t k = s.k, n = s.n;
    const device_buffer<bf16> x = random_buffer(m * k, 31u), w = random_buffer(n * k, 32u);
    const device_buffer<std::uint8_t> xe = random_codes(m * k, 33u, 0xf7u), we = random_codes(n * k, 34u, 0xf7u);
    const device_buffer<std::uint8_t> xi = random_codes(m * k, 35u, 0xffu), wi = random_codes(n * k, 36u, 0xffu);
    device_buffer<float> y(static_cast<std::size_t>(m * n));
    const device_matrix<float> Y{y.data(), m, n, n};
    const device_matrix<std::int32_t> acc{reinterpret_cast<std::int32_t*>(y.data()), m, n, n};
    const double flop = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    auto rate = [&](double ms) { return flop / (ms * 1e-3) / 1e12; };
    const double bf16_ms = time_ms([&] {
      gemm.linear_forward(device_matrix<const bf16>{x.data(), m, k, k}, device_matrix<const bf16>{w.data(), n, k, k}, Y);
    });
    bool e4m3_ran = true, int8_ran = true;
    const double e4m3_ms = time_ms([&] {
      e4m3_ran = e4m3_ran && gemm.linear_forward_codes(CUDA_R_8F_E4M3, device_matrix<const std::uint8_t>{xe.data(), m, k, k},
                                                       device_matrix<const std::uint8_t>{we.data(), n, k, k}, Y,
                                                       factors.data(), factors.data() + 4, nullptr);
    });
    const double int8_ms = time_ms([&] {
      int8_ran = int8_ran && gemm.linear_forward_codes(CUDA_R_8I, device_matrix<const std::uint8_t>{xi.data(), m, k, k},
                                                       device_matrix<const std::uint8_t>{wi.data(), n, k, k}, acc,
                                                       nullptr, nullptr, nullptr);
    });
    AQ_CUDA_CHECK(cudaDeviceSynchronize());
    // A product cuBLASLt refused has neither a rate nor a ratio.
    const auto cells = [&](bool ran, double ms) {
      char c[64];
      std::snprintf(c, sizeof(c), "%.0f | %.2f", rate(ms), bf16_ms / ms);
      return ran ? std::string(c) : std::string("refused | –");
    };
    char bf16_rate[32];
    std::snprintf(bf16_rate, sizeof(bf16_rate), "%.0f", rate(bf16_ms));
    table += "| " + std::string(s.name) + " | " + bf16_rate + " | " + cells(e4m3_ran, e4m3_ms) + " | " +
             cells(int8_ran, int8_ms) + " |\n";
  }
  return table;
}

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
    table += recipe_product_table(gemm, m, shapes);
    std::printf("%s", table.c_str());
    if (argc > 1) std::ofstream(argv[1]) << table;
  } catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
  }
  return 0;
}
