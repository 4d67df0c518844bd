// Host-to-device copies of many host ranges (the tensors of a memory-mapped checkpoint) through
// pinned staging buffers: worker threads read their chunks (page faults included) in parallel
// while earlier chunks cross PCIe, each thread double-buffered on its own stream. A pageable
// cudaMemcpy per tensor does both on one thread, one tensor at a time (~6.7 GB/s for the 4B
// checkpoint from the page cache). Host-side only, like the checkpoint loaders that use it.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"

namespace aq::cuda {

class pinned_uploader {
 public:
  // threads 0: up to 8, bounded by the hardware; chunk: bytes per staging buffer (rounded up to a
  // multiple of 8).
  explicit pinned_uploader(unsigned threads = 0, std::size_t chunk = std::size_t{8} << 20)
      : threads_(threads > 0 ? threads : std::clamp(std::thread::hardware_concurrency(), 1u, 8u)),
        chunk_((std::max<std::size_t>(chunk, 1) + 7) / 8 * 8) {}

  // Inspects the staged copy of src[offset, offset + staged.size()) before it is sent (and throws to
  // stop the upload): a scan of bytes already in cache costs next to nothing beside the copy.
  using chunk_check = std::function<void(std::size_t offset, std::span<const std::byte> staged)>;

  // Queues dst[0, bytes) = src[0, bytes); src must stay valid until run() returns. Chunks hold
  // whole elements of up to 8 bytes, so a check sees no element split.
  void add(void* dst, const void* src, std::size_t bytes, chunk_check check = {}) {
    const chunk_check* hook = nullptr;
    if (check) hook = &checks_.emplace_back(std::move(check));
    for (std::size_t off = 0; off < bytes; off += chunk_) {
      chunks_.push_back({static_cast<char*>(dst) + off, static_cast<const char*>(src) + off,
                         std::min(chunk_, bytes - off), off, hook});
    }
  }

  // Copies everything queued and waits for it; rethrows the first failure of any thread.
  void run() {
    if (chunks_.empty()) return;
    int device = 0;
    AQ_CUDA_CHECK(cudaGetDevice(&device));
    const unsigned n = std::min<unsigned>(threads_, static_cast<unsigned>(chunks_.size()));
    std::atomic<std::size_t> next{0};
    std::exception_ptr failure;
    std::mutex failure_mutex;
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < n; ++t) {
      workers.emplace_back([&] {
        try {
          worker(device, next);
        } catch (...) {
          const std::lock_guard<std::mutex> lock(failure_mutex);
          if (!failure) failure = std::current_exception();
          next = chunks_.size();  // the others stop taking chunks
        }
      });
    }
    for (std::thread& w : workers) w.join();
    chunks_.clear();
    checks_.clear();
    if (failure) std::rethrow_exception(failure);
  }

 private:
  struct chunk {
    char* dst;
    const char* src;
    std::size_t bytes;
    std::size_t offset;  // of src within its add() range
    const chunk_check* check;
  };

  // Two pinned buffers, one stream: fill buffer s while the copy from the other is in flight.
  void worker(int device, std::atomic<std::size_t>& next) {
    AQ_CUDA_CHECK(cudaSetDevice(device));
    struct resources {
      cudaStream_t stream = nullptr;
      void* pinned[2] = {nullptr, nullptr};
      cudaEvent_t done[2] = {nullptr, nullptr};
      ~resources() {
        if (stream != nullptr) (void)cudaStreamSynchronize(stream);
        for (int s = 0; s < 2; ++s) {
          if (done[s] != nullptr) (void)cudaEventDestroy(done[s]);
          if (pinned[s] != nullptr) (void)cudaFreeHost(pinned[s]);
        }
        if (stream != nullptr) (void)cudaStreamDestroy(stream);
      }
    } r;
    AQ_CUDA_CHECK(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking));
    for (int s = 0; s < 2; ++s) {
      AQ_CUDA_CHECK(cudaMallocHost(&r.pinned[s], chunk_));
      AQ_CUDA_CHECK(cudaEventCreateWithFlags(&r.done[s], cudaEventDisableTiming));
    }
    bool used[2] = {false, false};
    for (int s = 0;; s ^= 1) {
      const std::size_t i = next.fetch_add(1);
      if (i >= chunks_.size()) break;
      const chunk& c = chunks_[i];
      if (used[s]) AQ_CUDA_CHECK(cudaEventSynchronize(r.done[s]));
      std::memcpy(r.pinned[s], c.src, c.bytes);
      if (c.check != nullptr) (*c.check)(c.offset, std::span<const std::byte>(static_cast<const std::byte*>(r.pinned[s]), c.bytes));
      AQ_CUDA_CHECK(cudaMemcpyAsync(c.dst, r.pinned[s], c.bytes, cudaMemcpyHostToDevice, r.stream));
      AQ_CUDA_CHECK(cudaEventRecord(r.done[s], r.stream));
      used[s] = true;
    }
    AQ_CUDA_CHECK(cudaStreamSynchronize(r.stream));
  }

  unsigned threads_;
  std::size_t chunk_;
  std::vector<chunk> chunks_;
  std::deque<chunk_check> checks_;  // stable addresses for the chunks' pointers
};

}  // namespace aq::cuda
