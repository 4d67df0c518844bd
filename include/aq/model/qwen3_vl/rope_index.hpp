// 3-D M-RoPE position ids of a left-padded batch (transformers 4.57 get_rope_index semantics):
// text tokens count the attended tokens on all three axes; an image of merged grid (t, h, w)
// takes (base+ti, base+hi, base+wi) and the next text position is one past the largest so far;
// padding slots get 1 on every axis. Output layout: [3, batch, seq] (t rows, then h, then w).
// Also: placing each image's placeholder run in one sequence's ids, as the processor does.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "aq/core/error.hpp"

namespace aq::qwen3_vl {

// One image's (t, h, w) grid in vision patches (image_grid_thw).
using grid_thw = std::array<std::int64_t, 3>;

// Visual tokens of one image after the spatial merge: t * (h / merge) * (w / merge).
inline std::int64_t image_placeholder_count(const grid_thw& g, std::int64_t spatial_merge_size) {
  return g[0] * (g[1] / spatial_merge_size) * (g[2] / spatial_merge_size);
}

struct image_placeholder_ids {
  std::int64_t vision_start = -1;
  std::int64_t image = -1;  // <|image_pad|>
  std::int64_t vision_end = -1;
};

// The ids of one sequence with every image's placeholder run where it belongs. A run is a
// maximal stretch of image ids. Ids without any run get one <vision_start> image x N
// <vision_end> per image in front. Ids with runs must hold one per image, in image order: a run
// of exactly N ids is kept, a run of one is expanded to N (as the Hugging Face processor expands
// the template's single <|image_pad|>); anything else is an error naming the image.
inline std::vector<std::int64_t> place_image_placeholders(const std::vector<std::int64_t>& ids,
                                                          const std::vector<grid_thw>& images,
                                                          std::int64_t spatial_merge_size,
                                                          const image_placeholder_ids& t) {
  std::vector<std::int64_t> out;
  std::size_t runs = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) runs += ids[i] == t.image && (i == 0 || ids[i - 1] != t.image) ? 1 : 0;
  if (runs == 0) {
    for (const grid_thw& g : images) {
      out.push_back(t.vision_start);
      out.insert(out.end(), static_cast<std::size_t>(image_placeholder_count(g, spatial_merge_size)), t.image);
      out.push_back(t.vision_end);
    }
    out.insert(out.end(), ids.begin(), ids.end());
    return out;
  }
  if (runs != images.size()) {
    throw error("the ids hold " + std::to_string(runs) + " image placeholder run(s) (id " + std::to_string(t.image) +
                ") but " + std::to_string(images.size()) + " image(s) are given; put one run per image, or none");
  }
  std::size_t image = 0;
  for (std::size_t i = 0; i < ids.size();) {
    if (ids[i] != t.image) {
      out.push_back(ids[i++]);
      continue;
    }
    std::size_t end = i;
    while (end < ids.size() && ids[end] == t.image) ++end;
    const std::int64_t length = static_cast<std::int64_t>(end - i);
    const grid_thw& g = images[image];
    const std::int64_t count = image_placeholder_count(g, spatial_merge_size);
    if (length != 1 && length != count) {
      throw error("image " + std::to_string(image) + " (grid " + std::to_string(g[0]) + "x" + std::to_string(g[1]) + "x" +
                  std::to_string(g[2]) + ") needs " + std::to_string(count) +
                  " placeholder ids (or one, to be expanded), its run at position " + std::to_string(i) + " has " +
                  std::to_string(length));
    }
    out.insert(out.end(), static_cast<std::size_t>(count), t.image);
    ++image;
    i = end;
  }
  return out;
}

// images: grids in the order their placeholder runs appear in the flattened batch.
inline std::vector<std::int64_t> rope_position_ids(const std::vector<std::int64_t>& input_ids,
                                                   const std::vector<std::uint8_t>& attention_mask,
                                                   std::int64_t batch, std::int64_t seq,
                                                   std::int64_t image_token_id = -1,
                                                   const std::vector<grid_thw>& images = {},
                                                   std::int64_t spatial_merge_size = 2) {
  const std::int64_t n = batch * seq;
  if (static_cast<std::int64_t>(input_ids.size()) != n || static_cast<std::int64_t>(attention_mask.size()) != n) {
    throw error("rope_position_ids: input_ids/attention_mask sizes differ from batch*seq = " + std::to_string(n));
  }
  std::vector<std::int64_t> pos(static_cast<std::size_t>(3 * n), 1);
  std::size_t image = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    std::int64_t next = 0;
    std::int64_t s = 0;
    while (s < seq) {
      const std::int64_t i = b * seq + s;
      if (attention_mask[static_cast<std::size_t>(i)] == 0) {
        ++s;
        continue;
      }
      if (input_ids[static_cast<std::size_t>(i)] != image_token_id || image_token_id < 0) {
        for (int a = 0; a < 3; ++a) pos[static_cast<std::size_t>(a * n + i)] = next;
        ++next;
        ++s;
        continue;
      }
      if (image >= images.size()) {
        throw error("rope_position_ids: more image placeholder runs than image grids (" +
                    std::to_string(images.size()) + ")");
      }
      const grid_thw g = images[image++];
      const std::int64_t gh = g[1] / spatial_merge_size;
      const std::int64_t gw = g[2] / spatial_merge_size;
      const std::int64_t count = g[0] * gh * gw;
      std::int64_t largest = next - 1;
      std::int64_t k = 0;
      for (std::int64_t r = s; r < seq && k < count; ++r) {
        const std::int64_t j = b * seq + r;
        if (attention_mask[static_cast<std::size_t>(j)] == 0) continue;
        if (input_ids[static_cast<std::size_t>(j)] != image_token_id) {
          throw error("rope_position_ids: image " + std::to_string(image - 1) + " has " + std::to_string(count) +
                      " tokens in its grid but its placeholder run in row " + std::to_string(b) + " is shorter");
        }
        const std::int64_t ti = k / (gh * gw);
        const std::int64_t hi = (k / gw) % gh;
        const std::int64_t wi = k % gw;
        pos[static_cast<std::size_t>(j)] = next + ti;
        pos[static_cast<std::size_t>(n + j)] = next + hi;
        pos[static_cast<std::size_t>(2 * n + j)] = next + wi;
        largest = std::max({largest, next + ti, next + hi, next + wi});
        ++k;
        s = r + 1;
      }
      if (k != count) {
        throw error("rope_position_ids: image " + std::to_string(image - 1) + " needs " + std::to_string(count) +
                    " placeholder tokens, row " + std::to_string(b) + " has " + std::to_string(k));
      }
      next = largest + 1;
    }
  }
  return pos;
}

}  // namespace aq::qwen3_vl
