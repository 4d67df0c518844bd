// The pinned uploader: ranges of many sizes (empty, under, at and across the staging chunk) land
// byte for byte at their device destinations, with one thread or several; a bad destination
// fails with aq::error instead of hanging or half-copying silently; a chunk check sees each staged
// byte once and can stop the upload.
// Without a GPU it prints "no GPU, skipped" and succeeds (CI builds it, a GPU machine runs it).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <span>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_util.cuh"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/pinned_upload.hpp"
#include "aq/core/error.hpp"

namespace test_pinned_upload_cuda {

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

// A check sees every staged byte once, at its offset within its range, and its throw stops the upload.
void checks_staged_chunks() {
  constexpr std::size_t chunk = 4096;
  std::vector<std::uint8_t> host(5 * chunk + 100);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<std::uint8_t>(i * 7 + 3);
  aq::cuda::device_buffer<std::uint8_t> device(host.size());
  std::vector<std::uint8_t> seen(host.size(), 0);
  std::vector<int> visits(host.size(), 0);
  std::mutex m;
  aq::cuda::pinned_uploader uploader(3, chunk);
  uploader.add(device.data(), host.data(), host.size(), [&](std::size_t offset, std::span<const std::byte> staged) {
    const std::lock_guard<std::mutex> lock(m);
    for (std::size_t i = 0; i < staged.size(); ++i) {
      seen[offset + i] = static_cast<std::uint8_t>(staged[i]);
      ++visits[offset + i];
    }
  });
  uploader.run();
  bool once = true;
  for (const int v : visits) once = once && v == 1;
  expect(once && seen == host, "a check sees every staged byte once, at its offset");

  aq::cuda::pinned_uploader failing(2, chunk);
  failing.add(device.data(), host.data(), host.size(), [&](std::size_t offset, std::span<const std::byte>) {
    if (offset == 2 * chunk) throw aq::error("chunk at " + std::to_string(offset) + " refused");
  });
  std::string message;
  try {
    failing.run();
  } catch (const aq::error& e) {
    message = e.what();
  }
  expect(message == "chunk at 8192 refused", "a throwing check stops the upload with its error");
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

AQ_GPU_TEST("pinned_upload") {
  copies_every_range(1);
  copies_every_range(3);
  copies_every_range(0);
  checks_staged_chunks();
  bad_destination_throws();
}

}  // namespace test_pinned_upload_cuda
