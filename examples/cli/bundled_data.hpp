// Where the drivers find the bundled data (data/: COCO captions, the Qwen3 tokenizer, photos) from
// any working directory: $AQ_DATA_DIR alone when set; otherwise next to the running executable
// (installed: <prefix>/bin/x -> <prefix>/share/aq/data; build tree: <src>/build/examples/x -> <src>/data),
// then the directories the driver was compiled with (its install and source data paths).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "aq/core/error.hpp"

namespace aq::autoquant {

// The running program's own path from /proc/self/exe (argv[0] has no directory when the program
// is found through PATH); empty where the system has no such link.
inline std::filesystem::path executable_path() {
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : exe;
}

// The data directories searched, in order: $AQ_DATA_DIR alone when set and non-empty; otherwise
// the installed and build-tree places relative to `exe`, then `compiled_in` (empty entries skipped).
inline std::vector<std::filesystem::path> bundled_data_roots(const std::filesystem::path& exe,
                                                             std::initializer_list<std::string_view> compiled_in = {}) {
  if (const char* env = std::getenv("AQ_DATA_DIR"); env != nullptr && *env != '\0') return {std::filesystem::path(env)};
  std::vector<std::filesystem::path> roots;
  if (!exe.empty()) {
    const std::filesystem::path dir = exe.parent_path();
    roots.push_back(dir.parent_path() / "share" / "aq" / "data");
    roots.push_back(dir.parent_path().parent_path() / "data");
  }
  for (const std::string_view root : compiled_in) {
    if (!root.empty()) roots.emplace_back(root);
  }
  return roots;
}

// The first root holding `relative` (e.g. "captions/coco2017_captions_medium.txt"); throws
// aq::error naming the file and every directory searched.
inline std::filesystem::path find_bundled_in(std::span<const std::filesystem::path> roots, std::string_view relative) {
  std::error_code ec;
  for (const std::filesystem::path& root : roots) {
    const std::filesystem::path candidate = root / relative;
    if (std::filesystem::is_regular_file(candidate, ec)) return candidate;
  }
  std::string searched;
  for (const std::filesystem::path& root : roots) searched += (searched.empty() ? "" : ", ") + root.string();
  if (searched.empty()) searched = "no directory";
  throw error("bundled file " + std::string(relative) + " not found in " + searched +
              " (set AQ_DATA_DIR to the data/ directory, or pass the file explicitly)");
}

// find_bundled_in over bundled_data_roots of the running program.
inline std::filesystem::path find_bundled(std::string_view relative, std::initializer_list<std::string_view> compiled_in = {}) {
  const std::vector<std::filesystem::path> roots = bundled_data_roots(executable_path(), compiled_in);
  return find_bundled_in(roots, relative);
}

}  // namespace aq::autoquant
