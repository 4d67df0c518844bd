// Progress of the long stages (calibration, scoring): the engine reports (stage, done, total);
// the driver shows a one-line bar with rate and ETA on stderr, only when stderr is a terminal.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

#include <unistd.h>

namespace aq::autoquant {

// Called with done = 0 when a stage starts and done = total when it ends.
using progress_callback = std::function<void(std::string_view stage, std::size_t done, std::size_t total)>;

// "calibration [#########.........]  9/20  1.2 s elapsed, ETA 1.5 s"
inline std::string render_progress_line(std::string_view stage, std::size_t done, std::size_t total, double elapsed_s,
                                        int width = 30) {
  const double fraction = total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  const int filled = static_cast<int>(fraction * width);
  std::string line(stage);
  line.resize(12, ' ');
  line += '[';
  line += std::string(static_cast<std::size_t>(filled), '#');
  line += std::string(static_cast<std::size_t>(width - filled), '.');
  char tail[128];
  if (done == 0 || done >= total) {
    std::snprintf(tail, sizeof(tail), "] %zu/%zu  %.1f s", done, total, elapsed_s);
  } else {
    const double eta = elapsed_s / static_cast<double>(done) * static_cast<double>(total - done);
    std::snprintf(tail, sizeof(tail), "] %zu/%zu  %.1f s, ETA %.1f s", done, total, elapsed_s, eta);
  }
  return line + tail;
}

// A progress_callback drawing on a stream; quiet unless `enabled` (default: the stream is a tty).
class terminal_progress {
 public:
  explicit terminal_progress(std::FILE* out = stderr) : out_(out), enabled_(isatty(fileno(out)) != 0) {}
  terminal_progress(std::FILE* out, bool enabled) : out_(out), enabled_(enabled) {}

  void operator()(std::string_view stage, std::size_t done, std::size_t total) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done == 0 || stage != stage_) {
      stage_ = std::string(stage);
      start_ = now;
    }
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    std::fprintf(out_, "\r%s\x1b[K", render_progress_line(stage, done, total, elapsed).c_str());
    if (done >= total) std::fputc('\n', out_);
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
  bool enabled_;
  std::string stage_;
  std::chrono::steady_clock::time_point start_{};
};

}  // namespace aq::autoquant
