// Image-caption batches trimmed and packed like text (text_batch_pack.hpp). A row keeps the images
// whose placeholders it holds: their grids and pixel rows travel with it into the pass, in the
// order the pass's placeholders appear, so the vision tower's per-image attention and the
// decoder's scatter of visual tokens see each image as in its own batch. Positions are made per
// batch from its own images before any column goes (M-RoPE counts attended tokens only, so
// they are the positions of the untrimmed batch); a pass also keeps its vision patches within a
// limit, which bounds the tower's activations as the token limit bounds the decoder's.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/batch.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"
#include "aq/model/qwen3_vl/text_batch_pack.hpp"
#include "aq/model/qwen3_vl/text_batch_padding.hpp"

namespace aq::qwen3_vl {

struct vl_pack_ids {
  std::int64_t image_token_id = -1;
  std::int64_t spatial_merge_size = 2;
};

struct packed_vl_batch {
  packed_text_batch text;
  image_batch images;  // no grids: the pass holds no image
};

// The images of one row: grids [first, last) of its batch, pixel rows [patch_first, + patches).
struct row_images {
  std::size_t first = 0, last = 0;
  std::int64_t patch_first = 0, patches = 0;
};

// Vision patches of one image: t·h·w.
inline std::int64_t image_patches(const grid_thw& g) { return g[0] * g[1] * g[2]; }

// Each row's images, taken in order by the placeholder tokens it holds. `images` may have no
// grids (a text batch). Throws where placeholders and grids or pixel rows do not match.
inline std::vector<row_images> images_of_rows(const text_batch& b, const image_batch& images, const vl_pack_ids& ids) {
  check_text_batch(b, "images_of_rows");
  std::vector<row_images> out(static_cast<std::size_t>(b.batch));
  std::size_t next = 0;
  std::int64_t patch = 0;
  for (std::int64_t r = 0; r < b.batch; ++r) {
    const auto row = b.input_ids.begin() + r * b.seq;
    std::int64_t tokens = std::count(row, row + b.seq, ids.image_token_id);
    row_images& ri = out[static_cast<std::size_t>(r)];
    ri.first = next;
    ri.patch_first = patch;
    while (tokens > 0 && next < images.grids.size()) {
      tokens -= image_placeholder_count(images.grids[next], ids.spatial_merge_size);
      ri.patches += image_patches(images.grids[next++]);
    }
    if (tokens != 0) {
      throw error("images_of_rows: row " + std::to_string(r) + "'s image placeholders do not match whole images of the " +
                  std::to_string(images.grids.size()) + " grids");
    }
    ri.last = next;
    patch += ri.patches;
  }
  if (next != images.grids.size() || (!images.grids.empty() && patch != images.pixel_values.dim(0))) {
    throw error("images_of_rows: the batch's placeholders take " + std::to_string(next) + " of " +
                std::to_string(images.grids.size()) + " images and " + std::to_string(patch) + " pixel rows");
  }
  return out;
}

// The batch with explicit M-RoPE positions from its own images (kept where given), then trimmed
// of its droppable leading padding when `trim` (text_batch_padding.hpp).
inline text_batch positioned_batch(text_batch b, const image_batch* images, const vl_pack_ids& ids, bool trim) {
  if (b.position_ids.empty()) {
    b.position_ids = rope_position_ids(b.input_ids, b.attention_mask, b.batch, b.seq, ids.image_token_id,
                                       images != nullptr ? images->grids : std::vector<grid_thw>{},
                                       ids.spatial_merge_size);
  }
  return trim ? trim_padding(b) : b;
}

// Packs the rows of `batches` (explicit positions, e.g. from positioned_batch) with their images
// (images[i] for batches[i]; no grids: text only) into passes of at most max_tokens tokens and
// max_patches vision patches (a row over max_patches runs alone).
inline std::vector<packed_vl_batch> pack_vl_batches(std::span<const text_batch> batches,
                                                    std::span<const image_batch> images, std::int64_t max_tokens,
                                                    std::int64_t max_patches, const vl_pack_ids& ids) {
  if (images.size() != batches.size()) {
    throw error("pack_vl_batches: " + std::to_string(images.size()) + " image batches for " +
                std::to_string(batches.size()) + " text batches");
  }
  if (max_patches <= 0) throw error("pack_vl_batches: max_patches must be positive");
  std::vector<std::vector<row_images>> rows;
  std::vector<std::vector<std::int64_t>> patches;
  std::int64_t cols = -1;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    if (batches[i].position_ids.empty()) {
      throw error("pack_vl_batches: batch " + std::to_string(i) + " has no position_ids (positioned_batch makes them)");
    }
    rows.push_back(images_of_rows(batches[i], images[i], ids));
    patches.emplace_back();
    for (const row_images& ri : rows.back()) patches.back().push_back(ri.patches);
    if (images[i].grids.empty()) continue;
    if (cols >= 0 && images[i].pixel_values.dim(1) != cols) {
      throw error("pack_vl_batches: batch " + std::to_string(i) + " has pixel rows of " +
                  std::to_string(images[i].pixel_values.dim(1)) + " values, batch 0's images " + std::to_string(cols));
    }
    cols = images[i].pixel_values.dim(1);
  }
  std::vector<packed_vl_batch> out;
  for (packed_text_batch& p : pack_text_batches(batches, max_tokens, {patches, max_patches})) {
    packed_vl_batch v;
    std::int64_t total = 0;
    for (const packed_row_source& s : p.sources) total += rows[s.batch][static_cast<std::size_t>(s.row)].patches;
    if (total > 0) {
      v.images.pixel_values = tensor({total, cols});
      float* to = v.images.pixel_values.data();
      for (const packed_row_source& s : p.sources) {
        const row_images& ri = rows[s.batch][static_cast<std::size_t>(s.row)];
        const image_batch& from = images[s.batch];
        v.images.grids.insert(v.images.grids.end(), from.grids.begin() + static_cast<std::ptrdiff_t>(ri.first),
                              from.grids.begin() + static_cast<std::ptrdiff_t>(ri.last));
        const std::size_t n = static_cast<std::size_t>(ri.patches * cols);
        if (n > 0) std::memcpy(to, from.pixel_values.data() + ri.patch_first * cols, n * sizeof(float));
        to += n;
      }
    }
    v.text = std::move(p);
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace aq::qwen3_vl
