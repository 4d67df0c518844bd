// Shared pieces of the CUDA benchmarks: the "no GPU" exit, deterministic device data and the
// event-timed median of repeated calls.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <type_traits>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"

namespace aq_bench {

// False (after saying so) on a machine without a GPU, where a benchmark has nothing to measure.
inline bool gpu_present() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no GPU, skipped\n");
    return false;
  }
  return true;
}

// A deterministic 32-bit hash of element i under seed.
__device__ inline std::uint32_t element_hash(std::int64_t i, std::uint32_t seed) {
  std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
  h ^= h >> 15;
  h *= 2246822519u;
  h ^= h >> 13;
  return h;
}

// Deterministic pseudo-random values in about [offset - 1, offset + 1).
template <class T>
__global__ void fill_random(T* p, std::int64_t n, std::uint32_t seed, float offset) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    p[i] = aq::cuda::from_float<T>(static_cast<float>(element_hash(i, seed) & 0xffffu) / 32768.0f - 1.0f + offset);
  }
}

template <class T>
aq::cuda::device_buffer<T> random_buffer(std::int64_t n, std::uint32_t seed, float offset = 0.0f) {
  aq::cuda::device_buffer<T> b(static_cast<std::size_t>(n));
  fill_random<<<4096, 256>>>(b.data(), n, seed, offset);
  AQ_CUDA_CHECK_LAUNCH();
  return b;
}

// Median milliseconds per call over `batches` batches of `per_batch` calls, after 5 warm-up
// calls. `call` may take the call's index (to rotate over input copies) or nothing.
template <class F>
double time_ms(F&& call, int batches = 15, int per_batch = 10) {
  int k = 0;
  auto next = [&] {
    if constexpr (std::is_invocable_v<F&, int>) {
      call(k++);
    } else {
      call();
    }
  };
  cudaEvent_t start, stop;
  AQ_CUDA_CHECK(cudaEventCreate(&start));
  AQ_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 5; ++i) next();
  std::vector<double> ms;
  for (int b = 0; b < batches; ++b) {
    AQ_CUDA_CHECK(cudaEventRecord(start));
    for (int i = 0; i < per_batch; ++i) next();
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

}  // namespace aq_bench
