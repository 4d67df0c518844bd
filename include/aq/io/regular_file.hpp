// Opening an input file: the one gate every reader goes through (config.json, the safetensors
// index and shards, tokenizer.json, captions and image-caption lists). Anything but a regular file
// is refused before a byte is read: a FIFO would block forever, a directory fails with an opaque
// stream error, a device never ends.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aq/core/error.hpp"

namespace aq {

// An open read-only descriptor of a regular file, closed on destruction.
class regular_file {
 public:
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer before the type
  // check could run. Regular files ignore the flag.
  explicit regular_file(const std::filesystem::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd_ < 0) throw error(path.string() + ": cannot open: " + std::strerror(errno));
    struct stat info {};
    if (::fstat(fd_, &info) != 0) {
      const std::string reason = std::strerror(errno);
      close();
      throw error(path.string() + ": cannot stat: " + reason);
    }
    if (!S_ISREG(info.st_mode)) {
      close();
      throw error(path.string() + ": not a regular file");
    }
    size_ = static_cast<std::size_t>(info.st_size);
  }

  regular_file(const regular_file&) = delete;
  regular_file& operator=(const regular_file&) = delete;
  ~regular_file() { close(); }

  int fd() const { return fd_; }
  // Size when opened.
  std::size_t size() const { return size_; }

  // The whole content, read with read(2) until end of file.
  std::string read_all() const {
    std::string out(size_, '\0');
    std::size_t filled = 0;
    for (;;) {
      if (filled == out.size()) out.resize(out.size() + 65536);  // the file may have grown
      const ::ssize_t n = ::pread(fd_, out.data() + filled, out.size() - filled, static_cast<off_t>(filled));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw error(path_.string() + ": cannot read: " + std::strerror(errno));
      }
      if (n == 0) break;
      filled += static_cast<std::size_t>(n);
    }
    out.resize(filled);
    return out;
  }

 private:
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  std::filesystem::path path_;
  int fd_ = -1;
  std::size_t size_ = 0;
};

// The whole content of a regular file (errors: "PATH: cannot open: ...", "PATH: not a regular file").
inline std::string read_regular_file(const std::filesystem::path& path) { return regular_file(path).read_all(); }

}  // namespace aq
