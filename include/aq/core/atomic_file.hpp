// Writes a whole file or nothing: data goes to a temporary sibling which is renamed over the
// target only after a successful flush, so a crash or error never leaves a half-written report.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <unistd.h>

#include "aq/core/error.hpp"

namespace aq {

inline void write_file_atomic(const std::filesystem::path& target, std::string_view bytes) {
  std::filesystem::path temp = target;
  temp += ".tmp." + std::to_string(::getpid());
  std::FILE* file = std::fopen(temp.c_str(), "wb");
  if (file == nullptr) {
    throw error(target.string() + ": cannot open for writing: " + std::strerror(errno));
  }
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  const bool flushed = std::fflush(file) == 0 && ::fsync(::fileno(file)) == 0;
  const bool closed = std::fclose(file) == 0;
  if (!written || !flushed || !closed) {
    const std::string reason = std::strerror(errno);
    std::filesystem::remove(temp);
    throw error(target.string() + ": write failed: " + reason);
  }
  std::error_code rename_error;
  std::filesystem::rename(temp, target, rename_error);
  if (rename_error) {
    std::filesystem::remove(temp);
    throw error(target.string() + ": cannot rename temporary file into place: " + rename_error.message());
  }
}

}  // namespace aq
