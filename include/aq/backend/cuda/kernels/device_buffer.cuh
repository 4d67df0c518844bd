// An owning, move-only block of device memory (plain cudaMalloc, never managed memory) with
// typed upload/download helpers. Weights, activations and workspaces of the CUDA backend live
// in these; kernels only ever see raw pointers or views.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/error.hpp"

namespace aq::cuda {

template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t count) : count_(count) {
    if (count_ > 0) AQ_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), count_ * sizeof(T)));
  }
  // Uploads host data synchronously (for setup; hot paths use copy_from_host on a stream).
  explicit device_buffer(const std::vector<T>& host) : device_buffer(host.size()) {
    if (count_ > 0) AQ_CUDA_CHECK(cudaMemcpy(data_, host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  device_buffer& operator=(device_buffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }
  ~device_buffer() { release(); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }
  bool empty() const { return count_ == 0; }

  // At least `count` elements, for scratch reused across calls: reallocated (contents dropped)
  // only when smaller.
  void grow_to(std::size_t count) {
    if (count_ < count) *this = device_buffer(count);
  }
  // Grows to the host vector's size and copies it in on the stream.
  void upload(const std::vector<T>& host, cudaStream_t stream) {
    grow_to(host.size());
    copy_from_host(host.data(), host.size(), stream);
  }

  void copy_from_host(const T* host, std::size_t count, cudaStream_t stream = nullptr) {
    check_count(count, "copy_from_host");
    AQ_CUDA_CHECK(cudaMemcpyAsync(data_, host, count * sizeof(T), cudaMemcpyHostToDevice, stream));
  }
  void copy_to_host(T* host, std::size_t count, cudaStream_t stream = nullptr) const {
    check_count(count, "copy_to_host");
    AQ_CUDA_CHECK(cudaMemcpyAsync(host, data_, count * sizeof(T), cudaMemcpyDeviceToHost, stream));
  }
  // Synchronous download of the whole buffer.
  std::vector<T> to_host() const {
    std::vector<T> host(count_);
    if (count_ > 0) AQ_CUDA_CHECK(cudaMemcpy(host.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  // Byte fill (0xff poisons float outputs with NaN so unwritten elements show up in tests).
  void fill_bytes(int value, cudaStream_t stream = nullptr) {
    if (count_ > 0) AQ_CUDA_CHECK(cudaMemsetAsync(data_, value, count_ * sizeof(T), stream));
  }

 private:
  void check_count(std::size_t count, const char* what) const {
    if (count > count_) {
      throw error(std::string("device_buffer::") + what + ": " + std::to_string(count) + " elements into a buffer of " +
                  std::to_string(count_));
    }
  }
  void release() noexcept {
    if (data_ != nullptr) cudaFree(data_);  // no throw from a destructor; a failed free leaks
    data_ = nullptr;
    count_ = 0;
  }

  T* data_ = nullptr;
  std::size_t count_ = 0;
};

// The buffer's leading rows·cols elements as a dense row-major matrix, read-only or writable.
template <class T>
device_matrix<const T> cview(const device_buffer<T>& b, std::int64_t rows, std::int64_t cols) {
  return {b.data(), rows, cols, cols};
}
template <class T>
device_matrix<T> mview(device_buffer<T>& b, std::int64_t rows, std::int64_t cols) {
  return {b.data(), rows, cols, cols};
}

}  // namespace aq::cuda
