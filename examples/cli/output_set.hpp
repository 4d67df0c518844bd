// The outputs of one run published as a set: every location checked writable before any work,
// everything written to temporary siblings, then renamed into place together, so that a failed or
// killed run never leaves a half-written or mixed set of reports.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/core/atomic_file.hpp"
#include "aq/core/error.hpp"

namespace aq {

namespace detail {

inline std::filesystem::path parent_or_dot(const std::filesystem::path& p) {
  return p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
}

// A target named with a trailing separator ("out/") has an empty filename; the folder is "out".
inline std::filesystem::path without_trailing_separator(std::filesystem::path p) {
  while (!p.has_filename() && p.has_parent_path() && p.parent_path() != p) p = p.parent_path();
  return p;
}

// strerror, with the common ENOTDIR spelled out: a component of the path is a file.
inline std::string path_error(int code) {
  if (code == ENOTDIR) return "a component of the path is not a directory";
  return std::strerror(code);
}

inline const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISREG(mode)) return "a regular file";
  return "not a regular file";
}

// Creates and removes a probe file in `dir`: the only test of writability that holds for root,
// read-only mounts and /proc alike.
inline void probe_create(const std::string& what, const std::filesystem::path& dir) {
  const std::filesystem::path probe = dir / (".aq-probe." + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw error(what + ": cannot create files in " + dir.string() + ": " + std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

// Removes "<name>.tmp.<pid>" and "<name>.old.<pid>" siblings of `target` left by a run that was
// killed (its pid is no longer alive); a live run's temporaries are left alone.
inline void remove_stale_temporaries(const std::filesystem::path& target) {
  const std::string name = target.filename().string();
  if (name.empty()) return;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(parent_or_dot(target), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string entry = it->path().filename().string();
    for (const char* tag : {".tmp.", ".old."}) {
      const std::string prefix = name + tag;
      if (!entry.starts_with(prefix)) continue;
      const std::string digits = entry.substr(prefix.size());
      if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
      const pid_t pid = static_cast<pid_t>(std::strtol(digits.c_str(), nullptr, 10));
      if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno == EPERM) continue;  // ours, or a live run's
      std::error_code ignored;
      std::filesystem::remove_all(it->path(), ignored);
    }
  }
}

}  // namespace detail

// Checks, before any work, that a run can later create or replace the file `path` (named by
// `flag` in errors): its parent is an existing directory where files can be created, and the
// path is absent or a regular file (never a directory, FIFO or device).
inline void check_output_file(const std::string& flag, const std::filesystem::path& path) {
  const std::string what = flag + " " + path.string();
  if (path.empty()) throw error(flag + ": empty path");
  if (!path.has_filename()) throw error(what + ": names a directory, expected a file");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) throw error(what + ": exists and is " + detail::file_kind(st.st_mode) + ", not a regular file");
  } else if (errno != ENOENT) {
    throw error(what + ": " + detail::path_error(errno));
  }
  const std::filesystem::path parent = detail::parent_or_dot(path);
  if (::stat(parent.c_str(), &st) != 0) throw error(what + ": directory " + parent.string() + ": " + detail::path_error(errno));
  if (!S_ISDIR(st.st_mode)) throw error(what + ": " + parent.string() + " is not a directory");
  detail::probe_create(what, parent);
}

// Checks that a run can later create (with its missing parents) or replace the folder `path`:
// it is absent or a directory, and its nearest existing ancestor is a directory where files can
// be created (the new folder is written beside the old one and renamed over it).
inline void check_output_directory(const std::string& flag, const std::filesystem::path& path) {
  const std::string what = flag + " " + path.string();
  if (path.empty()) throw error(flag + ": empty path");
  const std::filesystem::path dir = detail::without_trailing_separator(path);
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw error(what + ": exists and is " + detail::file_kind(st.st_mode) + ", not a directory");
  } else if (errno != ENOENT) {
    throw error(what + ": " + detail::path_error(errno));
  }
  std::filesystem::path ancestor = detail::parent_or_dot(dir);
  while (::stat(ancestor.c_str(), &st) != 0) {
    if (errno != ENOENT) throw error(what + ": " + ancestor.string() + ": " + detail::path_error(errno));
    if (!ancestor.has_parent_path() || ancestor.parent_path() == ancestor) {
      throw error(what + ": no existing parent directory");
    }
    ancestor = detail::parent_or_dot(ancestor);
  }
  if (!S_ISDIR(st.st_mode)) throw error(what + ": " + ancestor.string() + " is not a directory");
  detail::probe_create(what, ancestor);
}

// The outputs of one run, published together: an optional folder, replaced as a whole, and
// single files (which may lie inside that folder). Use: describe every output, check() before
// any work, write each through staged() after stage(), then publish(). Until publish() nothing
// at the targets changes; an unpublished set removes its temporaries when destroyed.
class output_set {
 public:
  output_set() = default;
  output_set(const output_set&) = delete;
  output_set& operator=(const output_set&) = delete;
  ~output_set() { discard(); }

  // `ours(name)` says whether an entry of an existing folder is a file this run would write; a
  // folder holding anything else is refused, since publishing replaces the whole folder.
  void set_directory(std::string flag, const std::filesystem::path& dir, std::function<bool(std::string_view)> ours) {
    dir_flag_ = std::move(flag);
    dir_given_ = dir.string();
    dir_ = std::filesystem::absolute(detail::without_trailing_separator(dir)).lexically_normal();
    dir_ = detail::without_trailing_separator(dir_);
    ours_ = std::move(ours);
  }
  void add_file(std::string flag, const std::filesystem::path& file) {
    files_.push_back({std::move(flag), file, {}});
  }

  // Every output location writable, no folder that holds foreign files, stale temporaries of
  // killed runs removed. Throws aq::error naming the flag and the path.
  void check() const {
    if (!dir_.empty()) {
      // Replacing the working directory (or a folder above it) would pull it from under the run.
      std::error_code cwd_error;
      const std::filesystem::path cwd = std::filesystem::current_path(cwd_error).lexically_normal();
      const std::filesystem::path up = cwd.lexically_relative(dir_);
      if (!cwd_error && !up.empty() && *up.begin() != "..") {
        throw error(what() + ": is the working directory or holds it; name a folder for the reports");
      }
      check_output_directory(dir_flag_, dir_given_);
      std::error_code ec;
      if (std::filesystem::is_directory(dir_, ec)) {
        for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
          const std::string name = it->path().filename().string();
          if (ours_ && ours_(name)) continue;
          if (inside_folder_name(name)) continue;
          throw error(what() + ": holds " + name +
                      ", which this run does not write; the folder is replaced as a whole, so use a new or empty one");
        }
        if (ec) throw error(what() + ": cannot list: " + ec.message());
      }
      detail::remove_stale_temporaries(dir_);
    }
    for (const staged_file& f : files_) {
      const std::filesystem::path rel = relative_to_folder(f.target);
      if (rel == ".") throw error(f.flag + " " + f.target.string() + ": is the " + dir_flag_ + " folder itself");
      if (!rel.empty()) continue;  // published with the folder, checked with it
      check_output_file(f.flag, f.target);
      detail::remove_stale_temporaries(f.target);
    }
  }

  // Creates the staging folder ("<folder>.tmp.<pid>", beside the target, its parents created).
  void stage() {
    if (dir_.empty() || !stage_.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(dir_.parent_path(), ec);
    if (ec) throw error(what() + ": cannot create parent directories: " + ec.message());
    stage_ = detail::temporary_sibling(dir_);
    std::filesystem::remove_all(stage_, ec);
    std::filesystem::create_directory(stage_, ec);
    if (ec) throw error(what() + ": cannot create " + stage_.string() + ": " + ec.message());
  }

  // The staged folder: write the folder's files here.
  const std::filesystem::path& directory() const { return stage_; }

  // Where to write the single file added as `target` (its parents inside the staged folder made).
  std::filesystem::path staged(const std::filesystem::path& target) {
    for (staged_file& f : files_) {
      if (f.target != target) continue;
      const std::filesystem::path rel = relative_to_folder(target);
      if (rel.empty()) {
        f.temp = detail::temporary_sibling(target);
      } else {
        stage();
        f.temp = stage_ / rel;
        std::error_code ec;
        std::filesystem::create_directories(f.temp.parent_path(), ec);
        if (ec) throw error(f.flag + " " + target.string() + ": " + ec.message());
      }
      return f.temp;
    }
    throw error("output_set: " + target.string() + " was not added");
  }

  // Renames everything into place: the folder first (swapped with the old one in one atomic
  // step where the kernel can, else old aside, new in), then each single file (atomic rename).
  void publish() {
    if (!stage_.empty()) {
      publish_directory();
      stage_.clear();
    }
    for (staged_file& f : files_) {
      if (f.temp.empty() || !relative_to_folder(f.target).empty()) continue;
      std::error_code ec;
      std::filesystem::rename(f.temp, f.target, ec);
      if (ec) throw error(f.flag + " " + f.target.string() + ": cannot rename into place: " + ec.message());
      f.temp.clear();
    }
  }

  // Removes whatever was staged and not published.
  void discard() noexcept {
    std::error_code ignored;
    for (staged_file& f : files_) {
      if (!f.temp.empty() && relative_to_folder(f.target).empty()) std::filesystem::remove(f.temp, ignored);
      f.temp.clear();
    }
    if (!stage_.empty()) std::filesystem::remove_all(stage_, ignored);
    stage_.clear();
  }

 private:
  struct staged_file {
    std::string flag;
    std::filesystem::path target;
    std::filesystem::path temp;
  };

  // target's path inside the folder ("." for the folder itself), or empty when outside it.
  std::filesystem::path relative_to_folder(const std::filesystem::path& target) const {
    if (dir_.empty()) return {};
    const std::filesystem::path abs = std::filesystem::absolute(target).lexically_normal();
    const std::filesystem::path rel = abs.lexically_relative(dir_);
    if (rel.empty() || *rel.begin() == "..") return {};
    return rel;
  }

  bool inside_folder_name(const std::string& name) const {
    for (const staged_file& f : files_) {
      const std::filesystem::path rel = relative_to_folder(f.target);
      if (!rel.empty() && rel != "." && rel.begin()->string() == name) return true;
    }
    return false;
  }

  void publish_directory() {
    std::error_code ec;
    const bool exists = std::filesystem::exists(dir_, ec);
    if (!exists) {
      std::filesystem::rename(stage_, dir_, ec);
      if (ec) throw error(what() + ": cannot rename " + stage_.string() + " into place: " + ec.message());
      return;
    }
#if defined(__linux__) && defined(RENAME_EXCHANGE)
    if (::renameat2(AT_FDCWD, stage_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_EXCHANGE) == 0) {
      std::filesystem::remove_all(stage_, ec);  // now the old folder
      return;
    }
#endif
    const std::filesystem::path old = detail::temporary_sibling(dir_, ".old.");
    std::filesystem::remove_all(old, ec);
    std::filesystem::rename(dir_, old, ec);
    if (ec) throw error(what() + ": cannot move the old folder aside: " + ec.message());
    std::filesystem::rename(stage_, dir_, ec);
    if (ec) {
      std::error_code ignored;
      std::filesystem::rename(old, dir_, ignored);
      throw error(what() + ": cannot rename " + stage_.string() + " into place: " + ec.message());
    }
    std::filesystem::remove_all(old, ec);
  }

  // The flag and the folder as the user spelled them ("--output-dir out"), for messages.
  std::string what() const { return dir_flag_ + " " + dir_given_; }

  std::string dir_flag_;
  std::string dir_given_;
  std::filesystem::path dir_;
  std::function<bool(std::string_view)> ours_;
  std::vector<staged_file> files_;
  std::filesystem::path stage_;
};

}  // namespace aq
