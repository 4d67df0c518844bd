// What a driver checks before it loads a model or reads data: input paths exist and have the
// right kind, --seq-len fits the model's positions, and every output location can be written
// (the output_set that later publishes them). Each failure is one aq::error naming the flag.
#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "aq/core/error.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"

#include "cli/default_model.hpp"
#include "cli/options.hpp"
#include "cli/output_set.hpp"
#include "cli/outputs.hpp"

namespace aq::autoquant {

// `path` is an existing regular file (symbolic links followed), not a directory, FIFO or device.
inline void check_input_file(const std::string& flag, const std::filesystem::path& path) {
  struct stat st {};
  if (path.empty()) throw error(flag + ": empty path");
  if (::stat(path.c_str(), &st) != 0) throw error(flag + " " + path.string() + ": " + aq::detail::path_error(errno));
  if (!S_ISREG(st.st_mode)) {
    throw error(flag + " " + path.string() + ": is " + aq::detail::file_kind(st.st_mode) + ", expected a file");
  }
}

// `path` is an existing directory.
inline void check_input_directory(const std::string& flag, const std::filesystem::path& path) {
  struct stat st {};
  if (path.empty()) throw error(flag + ": empty path");
  if (::stat(path.c_str(), &st) != 0) throw error(flag + " " + path.string() + ": " + aq::detail::path_error(errno));
  if (!S_ISDIR(st.st_mode)) throw error(flag + " " + path.string() + ": not a directory");
}

// A sequence of `tokens` positions fits a model of `max_positions` (0: no limit known); `source`
// says where the limit comes from (the config file, or the built-in model).
inline void check_sequence_length(const std::string& what, std::int64_t tokens, std::int64_t max_positions,
                                  const std::string& source) {
  if (max_positions > 0 && tokens > max_positions) {
    throw error(what + " exceeds the model's max_position_embeddings " + std::to_string(max_positions) + " (" +
                source + ")");
  }
}

// The outputs of an aq-autoquant run: the report folder, --result-json and --dump-batches.
inline void plan_outputs(const driver_options& o, output_set& outputs) {
  if (!o.output_dir) throw error("--output-dir is required (see --help)");
  outputs.set_directory("--output-dir", *o.output_dir, is_report_file);
  if (o.result_json) outputs.add_file("--result-json", *o.result_json);
  if (o.dump_batches) outputs.add_file("--dump-batches", *o.dump_batches);
  outputs.check();
}

// Everything an aq-autoquant run (CPU or GPU) can check before it loads anything: the model
// dir and its config (refused settings, positions against seq_len), the calibration file, the output locations.
inline void preflight(const driver_options& o, std::int64_t seq_len, const std::filesystem::path& calib,
                      output_set& outputs) {
  if (o.model_dir) {
    const std::filesystem::path dir(*o.model_dir);
    check_input_directory("--model", dir);
    check_input_file("--model", dir / "config.json");
    const qwen3_vl::config cfg = read_qwen3_vl_config(dir);  // a config aq cannot run is refused here too
    check_sequence_length("--seq-len " + std::to_string(seq_len), seq_len, cfg.text.max_position_embeddings,
                          (dir / "config.json").string());
  } else {
    check_sequence_length("--seq-len " + std::to_string(seq_len), seq_len,
                          default_model_config().text.max_position_embeddings, "the built-in model");
  }
  check_input_file("--calib", calib);
  if (o.eval_data) check_input_file("--eval-data", *o.eval_data);
  if (o.recipes) check_input_file("--recipes", *o.recipes);
  plan_outputs(o, outputs);
}

}  // namespace aq::autoquant
