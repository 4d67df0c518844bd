// The pinned uploader: ranges of many sizes (empty, under, at and across the staging chunk) land
// byte for byte at their device destinations, with one thread or several; a bad destination
// fails with aq::error instead of hanging or half-copying silently.
// Without a GPU it prints "no GPU, skipped" and succeeds (CI builds it, a GPU machine runs it).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_util.cuh"
#include "aq/backend/cuda/device_buffer.cuh"
#include "aq/backend/cuda/pinned_upload.hpp"
#include "aq/core/error.hpp"

namespace {

using aq_test::expect;

void copies_every_range(unsigned threads) {
  constexpr std::size_t chunk = 4096;
  const std::vector<std::size_t> sizes = {0, 1, 17, chunk - 1, chunk, chunk + 1, 3 * chunk + 5, 40 * chunk + 123};
  std::mt19937 rng(threads);
  std::vector<std::vector<std::uint8_t>> host;
  std::vector<aq::cuda::device_buffer<std::uint8_t>> device;
  aq::cuda::pinned_uploader uploader(threads, chunk);
  for (const std::size_t n : sizes) {
    host.emplace_back(n);
    for (std::uint8_t& b : host.back()) b = static_cast<std::uint8_t>(rng());
    device.emplace_back(std::max<std::size_t>(n, 1));
    device.back().fill_bytes(0);
  }
  for (std::size_t i = 0; i < sizes.size(); ++i) uploader.add(device[i].data(), host[i].data(), sizes[i]);
  uploader.run();
  bool all = true;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const std::vector<std::uint8_t> back = device[i].to_host();
    all = all && std::memcmp(back.data(), host[i].data(), sizes[i]) == 0;
  }
  expect(all, std::to_string(threads) + " thread(s): every range arrives byte for byte");
  uploader.run();  // nothing queued any more: a no-op
}

void bad_destination_throws() {
  std::vector<std::uint8_t> host(1 << 16, 1);
  aq::cuda::pinned_uploader uploader(2, 4096);
  uploader.add(reinterpret_cast<void*>(std::uintptr_t{16}), host.data(), host.size());
  bool threw = false;
  try {
    uploader.run();
  } catch (const aq::error&) {
    threw = true;
  }
  (void)cudaGetLastError();
  expect(threw, "a copy to an invalid device address throws aq::error");
}

}  // namespace

int main() {
  return aq_test::run_gpu_test("pinned_upload", [] {
    copies_every_range(1);
    copies_every_range(3);
    copies_every_range(0);
    bad_destination_throws();
  });
}
