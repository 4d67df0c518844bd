// Calibration batches: tokenized samples padded to a fixed length with attention masks and LM
// labels, grouped by batch size, exactly as the reference drivers build their DataLoader lists;
// plus the step counts they derive. Output of io, input of calibration and scoring.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/io/data/chat_template.hpp"
#include "aq/io/image/image.hpp"
#include "aq/io/image/image_preprocess.hpp"

namespace aq::io {

inline constexpr std::int32_t qwen3_pad_token_id = 151643;  // <|endoftext|>, tokenizer_config pad_token
inline constexpr std::int32_t ignore_label = -100;

enum class pad_side { left, right };

// One batch, row-major [batch_size, seq_len]. labels = input_ids except where the id equals the
// pad id: there -100. The reference's loss uses ignore_index = pad_token_id on labels that are
// plain input_ids, i.e. every target equal to the pad id is ignored; -100 says the same thing.
struct calib_batch {
  std::int64_t batch_size = 0;
  std::int64_t seq_len = 0;
  std::vector<std::int32_t> input_ids;
  std::vector<std::int32_t> attention_mask;
  std::vector<std::int32_t> labels;
  vision_inputs vision;  // empty for text-only batches
};

struct padding_options {
  std::int64_t max_length = 512;
  bool truncate = true;      // keep the first max_length tokens (truncation side right)
  pad_side side = pad_side::left;
  std::int32_t pad_id = qwen3_pad_token_id;
};

namespace detail {

template <class Ids>
void append_padded_row(calib_batch& b, const Ids& ids, std::int64_t width, const padding_options& o) {
  const std::int64_t n = std::min<std::int64_t>(static_cast<std::int64_t>(std::size(ids)), width);
  const std::int64_t pad = width - n;
  const auto push_pad = [&] {
    for (std::int64_t j = 0; j < pad; ++j) {
      b.input_ids.push_back(o.pad_id);
      b.attention_mask.push_back(0);
      b.labels.push_back(ignore_label);
    }
  };
  if (o.side == pad_side::left) push_pad();
  auto it = std::begin(ids);
  for (std::int64_t j = 0; j < n; ++j, ++it) {
    const auto id = static_cast<std::int32_t>(*it);
    b.input_ids.push_back(id);
    b.attention_mask.push_back(1);
    b.labels.push_back(id == o.pad_id ? ignore_label : id);
  }
  if (o.side == pad_side::right) push_pad();
}

}  // namespace detail

// Text-only calibration: each caption tokenized alone, no chat template, no special tokens added
// (`encode(std::string_view)` returns a range of integer ids), padded/truncated to max_length,
// grouped in order by batch_size (the last batch may be smaller).
template <class Encode>
std::vector<calib_batch> make_text_calib_batches(const std::vector<std::string>& captions, Encode&& encode,
                                                 std::int64_t batch_size = 8, const padding_options& o = {}) {
  if (batch_size < 1) throw error("make_text_calib_batches: batch_size must be >= 1, got " + std::to_string(batch_size));
  if (o.max_length < 1) throw error("make_text_calib_batches: max_length must be >= 1");
  std::vector<calib_batch> out;
  for (std::size_t i = 0; i < captions.size(); ++i) {
    if (i % static_cast<std::size_t>(batch_size) == 0) {
      out.emplace_back();
      out.back().seq_len = o.max_length;
    }
    calib_batch& b = out.back();
    const auto ids = encode(std::string_view(captions[i]));
    if (!o.truncate && static_cast<std::int64_t>(std::size(ids)) > o.max_length) {
      throw error("caption " + std::to_string(i) + ": " + std::to_string(std::size(ids)) +
                  " tokens exceed max_length " + std::to_string(o.max_length) + " and truncation is off");
    }
    detail::append_padded_row(b, ids, o.max_length, o);
    ++b.batch_size;
  }
  return out;
}

// Image+caption calibration sample (batch 1): chat prompt user [image, caption] with generation
// prompt, <|image_pad|> expanded to the image's token count, padded to max_length without
// truncation (a longer sequence stays unpadded, as padding="max_length" does), pixel_values attached.
template <class Encode>
calib_batch make_image_caption_batch(const image_rgb8& image, std::string_view caption, Encode&& encode,
                                     const qwen3_vl_image_options& image_options = {},
                                     padding_options o = {}, const std::string& name = "image") {
  o.truncate = false;
  calib_batch b;
  append_image(b.vision, image, image_options, name);
  const std::int64_t n_pad = image_token_count(b.vision.grid_thw.back(), image_options.merge_size);
  const std::string prompt = expand_image_pads(qwen3_vl_image_caption_prompt(caption), std::span(&n_pad, 1));
  const auto ids = encode(std::string_view(prompt));
  const std::int64_t n = static_cast<std::int64_t>(std::size(ids));
  b.seq_len = std::max(n, o.max_length);
  detail::append_padded_row(b, ids, b.seq_len, o);
  b.batch_size = 1;
  return b;
}

// The reference's step counts: calibration runs every batch; scoring runs the first
// min(max(score_size / batch_size, 1), max(num_batches, 1)) batches of the same list.
inline std::int64_t num_calib_steps(std::int64_t num_batches) { return num_batches; }
inline std::int64_t num_score_steps(std::int64_t num_batches, std::int64_t batch_size, std::int64_t score_size = 128) {
  if (batch_size < 1) throw error("num_score_steps: batch_size must be >= 1");
  return std::min(std::max<std::int64_t>(score_size / batch_size, 1), std::max<std::int64_t>(num_batches, 1));
}

}  // namespace aq::io
