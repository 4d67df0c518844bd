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

namespace {

using aq::bf16;
using aq::cuda::device_buffer;
using aq::cuda::device_matrix;

// Deterministic pseudo-random bf16 values in about [-1, 1) (never zeros: zeros run faster).
__global__ void fill_random(bf16* p, std::int64_t n, std::uint32_t seed) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const float v = static_cast<float>(h & 0xffffu) / 32768.0f - 1.0f + 1.0f / 65536.0f;
    p[i] = aq::float_to_bf16(v);
  }
}

device_buffer<bf16> random_buffer(std::int64_t n, std::uint32_t seed) {
  device_buffer<bf16> b(static_cast<std::size_t>(n));
  fill_random<<<4096, 256>>>(b.data(), n, seed);
  AQ_CUDA_CHECK_LAUNCH();
  return b;
}

// Median milliseconds per call over `batches` batches of `per_batch` calls, after warm-up.
template <class F>
double time_ms(F&& call, int batches = 15, int per_batch = 10) {
  cudaEvent_t start, stop;
  AQ_CUDA_CHECK(cudaEventCreate(&start));
  AQ_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 5; ++i) call(i);
  std::vector<double> ms;
  int k = 0;
  for (int b = 0; b < batches; ++b) {
    AQ_CUDA_CHECK(cudaEventRecord(start));
    for (int i = 0; i < per_batch; ++i) call(k++);
    AQ_CUDA_CHECK(cudaEventRecord(stop));
    AQ_CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0.0f;
    AQ_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(static_cast<double>(t) / per_batch);
  }
  AQ_CUDA_CHECK(cudaEventDestroy(start));
  AQ_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct shape {
  const char* name;
  std::int64_t k, n;
};

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no GPU, skipped\n");
    return 0;
  }
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
