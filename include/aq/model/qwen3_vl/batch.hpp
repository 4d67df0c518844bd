// A batch as the model runs it, on either backend: token ids, mask, positions and labels, and the
// images of an image-text batch.
#pragma once

#include <cstdint>
#include <vector>

#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"

namespace aq::qwen3_vl {

// Token rows are b·seq + s throughout.
struct text_batch {
  std::int64_t batch = 0;
  std::int64_t seq = 0;
  std::vector<std::int64_t> input_ids;        // [batch·seq]
  std::vector<std::uint8_t> attention_mask;   // [batch·seq], 1 = attended token, 0 = padding
  std::vector<std::int64_t> position_ids;     // [3, batch·seq]; empty: rope_position_ids() of the text
  std::vector<std::int64_t> labels;           // [batch·seq], -100 ignored; empty: no loss, no backward
};

// pixel_values [Σ t·h·w, C·Tp·P·P] and one grid per image, images in placeholder order.
struct image_batch {
  tensor pixel_values;
  std::vector<grid_thw> grids;
};

}  // namespace aq::qwen3_vl
