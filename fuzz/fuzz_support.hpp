// Shared by the fuzz targets: parsers that only read paths get the fuzz input through a file in a
// private scratch directory (one per process, so parallel fuzzers never share a file).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

#include <unistd.h>

namespace aq::fuzz {

class scratch_dir {
 public:
  scratch_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "aq-fuzz-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Replaces `name` in the directory with `bytes` and returns its path.
  std::filesystem::path write(std::string_view name, const std::uint8_t* data, std::size_t size) const {
    const std::filesystem::path file = path_ / name;
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out.flush()) std::abort();  // the harness, not the parser, failed
    return file;
  }
  std::filesystem::path write(std::string_view name, std::string_view text) const {
    return write(name, reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  }

 private:
  std::filesystem::path path_;
};

// The process's scratch directory, removed when the fuzzer exits normally.
inline const scratch_dir& scratch() {
  static const scratch_dir dir;
  return dir;
}

}  // namespace aq::fuzz
