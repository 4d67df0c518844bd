// Shared helpers of the CUDA tests: a registry of test bodies, GPU presence, random data, error
// measures and a tiny expectation counter. The tests are one plain program (cuda_tests_main.cu)
// so that CI can build them without a GPU and a GPU machine can run them; without a GPU every test
// prints "no GPU, skipped" and succeeds.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/core/bf16.hpp"

namespace aq_test {

inline int failures = 0;

inline void expect(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// max |got − ref| / max |ref| (NaN anywhere in got counts as failure through the NaN result).
inline double rel_err(const std::vector<float>& got, const std::vector<double>& ref) {
  double err = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (std::isnan(d)) return std::nan("");
    err = std::max(err, d);
    scale = std::max(scale, std::fabs(ref[i]));
  }
  return scale > 0.0 ? err / scale : err;
}
inline double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  return rel_err(got, std::vector<double>(ref.begin(), ref.end()));
}

// Checks err ≤ tol (NaN fails) and prints the measured error.
inline void expect_close(double err, double tol, const std::string& what) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), " (rel err %.3e, tolerance %.1e)", err, tol);
  expect(err <= tol, what + buf);
}

inline std::vector<float> random_floats(std::size_t n, std::uint32_t seed, float scale = 1.0f, float offset = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = offset + scale * dist(rng);
  return v;
}

inline std::vector<float> bf16_rounded(std::vector<float> v) {
  for (float& x : v) x = aq::round_to_bf16(x);
  return v;
}

inline std::vector<aq::bf16> to_bf16(const std::vector<float>& v) {
  std::vector<aq::bf16> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = aq::float_to_bf16(v[i]);
  return out;
}

inline std::vector<float> to_float(const std::vector<aq::bf16>& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = aq::bf16_to_float(v[i]);
  return out;
}

// Runs body() when a GPU is present; turns aq::error / std exceptions into a failure.
template <class Body>
int run_gpu_test(const char* name, Body body) {
  failures = 0;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no GPU, skipped\n");
    return 0;
  }
  try {
    body();
    AQ_CUDA_CHECK(cudaDeviceSynchronize());
  } catch (const std::exception& e) {
    std::printf("FAIL: %s: exception: %s\n", name, e.what());
    return 1;
  }
  if (failures != 0) {
    std::printf("%s: %d failure(s)\n", name, failures);
    return 1;
  }
  std::printf("%s: all checks passed\n", name);
  return 0;
}


// Spearman rank correlation with average ranks for ties.
inline std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<std::size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < idx.size();) {
    std::size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    for (std::size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * static_cast<double>(i + j);
    i = j + 1;
  }
  return r;
}

inline double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  const double n = static_cast<double>(a.size());
  const double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n, mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
  double sab = 0.0, saa = 0.0, sbb = 0.0;
  for (std::size_t i = 0; i < ra.size(); ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

// One test file's body, registered under the file's stem (test_norms_cuda) by AQ_GPU_TEST.
struct gpu_test {
  std::string name;
  const char* label;
  void (*body)();
};

inline std::vector<gpu_test>& gpu_tests() {
  static std::vector<gpu_test> all;
  return all;
}

inline bool register_gpu_test(const char* file, const char* label, void (*body)()) {
  gpu_tests().push_back({std::filesystem::path(file).stem().string(), label, body});
  return true;
}

}  // namespace aq_test

// Defines the body of the enclosing test file, run by `aq_cuda_tests <file stem>`. Each test file
// keeps its code in a namespace named after the file, so these names never collide when every
// file is compiled as one translation unit.
#define AQ_GPU_TEST(label)                                                                    \
  void gpu_test_body();                                                                     \
  [[maybe_unused]] const bool gpu_test_registered =                                         \
      aq_test::register_gpu_test(__FILE__, label, &gpu_test_body);                          \
  void gpu_test_body()
