// A whole file mapped read-only into memory: how checkpoints are read without copying gigabytes.
// Tensor views point straight into the mapping; it lives as long as the mapped_file that owns it.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <sys/mman.h>

#include "aq/core/error.hpp"
#include "aq/io/regular_file.hpp"

namespace aq {

class mapped_file {
 public:
  mapped_file() = default;

  // Refuses anything but a regular file (a FIFO, a directory) before reading; see regular_file.
  explicit mapped_file(const std::filesystem::path& path) : path_(path) {
    const regular_file file(path);
    size_ = file.size();
    if (size_ > 0) {  // mmap of length 0 is an error; an empty file is an empty span (data() is null)
      void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.fd(), 0);
      if (address == MAP_FAILED) {
        const std::string reason = std::strerror(errno);
        size_ = 0;
        throw error(path.string() + ": cannot map into memory: " + reason);
      }
      data_ = static_cast<const std::byte*>(address);
    }
  }  // the mapping keeps the file alive after the descriptor closes

  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;

  mapped_file(mapped_file&& other) noexcept
      : path_(std::move(other.path_)), data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

  mapped_file& operator=(mapped_file&& other) noexcept {
    if (this != &other) {
      unmap();
      path_ = std::move(other.path_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }

  ~mapped_file() { unmap(); }

  const std::filesystem::path& path() const { return path_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // The bytes as text; throws "PATH: empty file" for a 0-byte file, so parsers never see a null pointer.
  std::string_view nonempty_text() const {
    if (size_ == 0) throw error(path_.string() + ": empty file");
    return {reinterpret_cast<const char*>(data_), size_};
  }

 private:
  void unmap() {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace aq
