// The calibration batches a driver builds from its data flag: caption lines tokenized and
// left-padded into fixed batches, or image-caption JSON lines with each image preprocessed for
// the model (one sample per batch). Shared by the CPU and GPU drivers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <filesystem>
#include <string_view>
#include <vector>

#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/io/image/image.hpp"
#include "aq/io/image/image_preprocess.hpp"
#include "aq/io/tokenizer/tokenizer.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/special_tokens.hpp"

namespace aq::autoquant {

// Caption lines as batches of `batch_size` rows of seq_len tokens each.
inline std::vector<io::calib_batch> caption_line_batches(const io::tokenizer& tok, const std::vector<std::string>& lines,
                                                         std::int64_t batch_size, std::int64_t seq_len) {
  io::padding_options padding;
  padding.max_length = seq_len;
  return io::make_text_calib_batches(lines, [&tok](std::string_view text) { return tok.encode(text); }, batch_size,
                                     padding);
}

// The first `samples` caption lines, `batch_size` rows of seq_len tokens each.
inline std::vector<io::calib_batch> make_caption_batches(const io::tokenizer& tok, const std::filesystem::path& captions,
                                                         std::int64_t samples, std::int64_t batch_size,
                                                         std::int64_t seq_len) {
  return caption_line_batches(tok, io::read_caption_lines(captions, static_cast<std::size_t>(samples)), batch_size,
                              seq_len);
}

// Image-caption pairs, one batch each, padded to at least seq_len tokens.
inline std::vector<io::calib_batch> image_caption_batches(const io::tokenizer& tok,
                                                          const std::vector<io::image_caption>& samples,
                                                          std::int64_t seq_len, const qwen3_vl::config& cfg,
                                                          std::int64_t max_pixels = io::qwen3_vl_image_options{}.max_pixels) {
  qwen3_vl::check_vision_token_ids(cfg, tok);  // before any image is read
  io::padding_options padding;
  padding.max_length = seq_len;
  io::qwen3_vl_image_options image_options;
  image_options.patch_size = static_cast<int>(cfg.vision.patch_size);
  image_options.temporal_patch_size = static_cast<int>(cfg.vision.temporal_patch_size);
  image_options.merge_size = static_cast<int>(cfg.vision.spatial_merge_size);
  image_options.max_pixels = max_pixels;
  std::vector<io::calib_batch> batches;
  for (const io::image_caption& s : samples) {
    batches.push_back(io::make_image_caption_batch(
        io::load_image(s.image), s.caption, [&tok](std::string_view text) { return tok.encode(text); }, image_options,
        padding, s.image.string()));
  }
  return batches;
}

// The first `samples` image-caption pairs, one batch each, padded to at least seq_len tokens.
inline std::vector<io::calib_batch> make_image_caption_batches(const io::tokenizer& tok, const std::filesystem::path& jsonl,
                                                               std::int64_t samples, std::int64_t seq_len,
                                                               const qwen3_vl::config& cfg,
                                                               std::int64_t max_pixels = io::qwen3_vl_image_options{}.max_pixels) {
  qwen3_vl::check_vision_token_ids(cfg, tok);  // before any file is read
  return image_caption_batches(tok, io::read_image_caption_jsonl(jsonl, true, static_cast<std::size_t>(samples)),
                               seq_len, cfg, max_pixels);
}

}  // namespace aq::autoquant
