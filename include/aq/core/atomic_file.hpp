// Writes a whole file or nothing: data goes to a temporary sibling which is renamed over the
// target only after a successful flush, so a crash or error never leaves a half-written file
// (the drivers publish several outputs as one set on top of this: examples/cli/output_set.hpp).
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "aq/core/error.hpp"

namespace aq {

namespace detail {

// "<name>.tmp.<pid>": the sibling a file or folder is written to before it is renamed into place.
inline std::filesystem::path temporary_sibling(const std::filesystem::path& target, const char* tag = ".tmp.") {
  std::filesystem::path temp = target;
  temp += tag + std::to_string(::getpid());
  return temp;
}

// Writes and flushes `bytes` to `file`; errors name `target` (the file the caller means).
inline void write_whole(const std::filesystem::path& file, std::string_view bytes, const std::filesystem::path& target) {
  std::FILE* out = std::fopen(file.c_str(), "wb");
  if (out == nullptr) throw error(target.string() + ": cannot open for writing: " + std::strerror(errno));
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), out) == bytes.size();
  const bool flushed = std::fflush(out) == 0 && ::fsync(::fileno(out)) == 0;
  const bool closed = std::fclose(out) == 0;
  if (!written || !flushed || !closed) {
    const std::string reason = std::strerror(errno);
    std::error_code ignored;
    std::filesystem::remove(file, ignored);
    throw error(target.string() + ": write failed: " + reason);
  }
}

}  // namespace detail

// Writes `bytes` to `target` (created or truncated) and flushes them to disk, without a rename:
// for files inside a staged folder, which is published as a whole.
inline void write_file(const std::filesystem::path& target, std::string_view bytes) {
  detail::write_whole(target, bytes, target);
}

inline void write_file_atomic(const std::filesystem::path& target, std::string_view bytes) {
  const std::filesystem::path temp = detail::temporary_sibling(target);
  detail::write_whole(temp, bytes, target);
  std::error_code rename_error;
  std::filesystem::rename(temp, target, rename_error);
  if (rename_error) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    throw error(target.string() + ": cannot rename temporary file into place: " + rename_error.message());
  }
}

}  // namespace aq
