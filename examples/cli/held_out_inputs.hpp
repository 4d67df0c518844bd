// The held-out batches an evaluation measures on: samples of the evaluation source from a first
// index on (the calibration samples, when the source is the calibration's own or its superset),
// never one equal to a calibration sample, batched as the calibration data is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/io/tokenizer/tokenizer.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/report/evaluation_model.hpp"

#include "cli/calib_inputs.hpp"

namespace aq::autoquant {

// Where held-out samples come from and how many to take.
struct held_out_source {
  std::filesystem::path path;
  std::size_t first = 0;  // samples before this index are not used
  std::size_t count = 0;  // at most this many
};

struct held_out_batches {
  std::vector<io::calib_batch> batches;
  io::evaluation_data_info info;
};

namespace detail {

// Samples [first, ...) whose key is not a calibration key, at most count; counts the skipped ones.
template <class Sample, class Key>
std::vector<Sample> take_held_out(const std::vector<Sample>& all, const held_out_source& source,
                                  const std::set<std::string>& calibration_keys, Key key, io::evaluation_data_info& info) {
  std::vector<Sample> out;
  for (std::size_t i = source.first; i < all.size() && out.size() < source.count; ++i) {
    if (calibration_keys.count(key(all[i])) != 0) {
      ++info.skipped_calibration;
      continue;
    }
    out.push_back(all[i]);
  }
  if (out.empty()) {
    throw error(source.path.string() + ": no held-out samples after the " + std::to_string(source.first) +
                " calibration samples (pass --eval-data with other samples, or fewer --num-samples)");
  }
  info.samples = static_cast<std::int64_t>(out.size());
  return out;
}

inline std::string image_caption_key(const io::image_caption& s) {
  return std::filesystem::weakly_canonical(s.image).string() + '\n' + s.caption;
}

}  // namespace detail

inline held_out_batches held_out_caption_batches(const io::tokenizer& tok, const std::vector<std::string>& calibration,
                                                 const held_out_source& source, std::int64_t batch_size,
                                                 std::int64_t seq_len) {
  held_out_batches out;
  out.info.source = source.path.string();
  out.info.first_sample = static_cast<std::int64_t>(source.first);
  const std::set<std::string> keys(calibration.begin(), calibration.end());
  const std::vector<std::string> lines = detail::take_held_out(
      io::read_caption_lines(source.path), source, keys, [](const std::string& s) { return s; }, out.info);
  out.batches = caption_line_batches(tok, lines, batch_size, seq_len);
  return out;
}

inline held_out_batches held_out_image_caption_batches(const io::tokenizer& tok,
                                                       const std::vector<io::image_caption>& calibration,
                                                       const held_out_source& source, std::int64_t seq_len,
                                                       const qwen3_vl::config& cfg,
                                                       std::int64_t max_pixels = io::qwen3_vl_image_options{}.max_pixels) {
  held_out_batches out;
  out.info.source = source.path.string();
  out.info.first_sample = static_cast<std::int64_t>(source.first);
  std::set<std::string> keys;
  for (const io::image_caption& s : calibration) keys.insert(detail::image_caption_key(s));
  const std::vector<io::image_caption> samples = detail::take_held_out(
      io::read_image_caption_jsonl(source.path, false), source, keys, detail::image_caption_key, out.info);
  out.batches = image_caption_batches(tok, samples, seq_len, cfg, max_pixels);
  return out;
}

}  // namespace aq::autoquant
