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

#include <sys/mman.h>

#include "aq/core/error.hpp"
#include "aq/io/regular_file.hpp"

namespace aq {

// Not movable: tensor views point into the mapping.
class mapped_file {
 public:
  // Refuses anything but a regular file (a FIFO, a directory) before reading; see regular_file.
  explicit mapped_file(const std::filesystem::path& path) : path_(path) {
    const regular_file file(path);
    size_ = file.size();
    if (size_ > 0) {  // mmap of length 0 is an error; an empty file is an empty span (data() is null)
      void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.fd(), 0);
      if (address == MAP_FAILED) {
        const std::string reason = std::strerror(errno);
        throw error(path.string() + ": cannot map into memory: " + reason);
      }
      data_ = static_cast<const std::byte*>(address);
    }
  }  // the mapping keeps the file alive after the descriptor closes

  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file() {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
  }

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  // The bytes as text; throws "PATH: empty file" for a 0-byte file, so parsers never see a null pointer.
  std::string_view nonempty_text() const {
    if (size_ == 0) throw error(path_.string() + ": empty file");
    return {reinterpret_cast<const char*>(data_), size_};
  }

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace aq
