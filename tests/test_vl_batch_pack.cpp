// Packing image-caption rows with their images: each row's grids and pixel rows go with it in
// placeholder order, positions are the untrimmed batch's, passes keep the patch limit; and, on a
// tiny generated Qwen3-VL (fp32 CPU, SDPA masking), every token of a packed pass gets the logits
// it gets in its own untrimmed batch.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "aq/backend/cpu/cross_entropy.hpp"
#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/core/error.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"
#include "aq/model/qwen3_vl/vl_batch_pack.hpp"

#include "cli/default_model.hpp"
#include "support/tiny_vl_config.hpp"

namespace test_vl_batch_pack {

namespace {

using namespace aq;
using qwen3_vl::grid_thw;
using qwen3_vl::image_batch;
using qwen3_vl::text_batch;

constexpr std::int64_t pad = 96, image_id = 90;

qwen3_vl::config tiny_config() { return test_support::tiny_vl_config(); }

struct vl_sample {
  text_batch text;
  image_batch images;
};

// Row r: pads[r] padding tokens, two text tokens, the placeholders of images[r] (one run each,
// split by a text token), then text up to `seq`. Pixels: tag·100 + patch index + column / 1000.
vl_sample make_sample(const std::vector<std::int64_t>& pads, const std::vector<std::vector<grid_thw>>& images,
                      std::int64_t seq, std::int64_t tag, std::int64_t pixel_cols) {
  vl_sample s;
  s.text.batch = static_cast<std::int64_t>(pads.size());
  s.text.seq = seq;
  for (std::size_t r = 0; r < pads.size(); ++r) {
    std::vector<std::int64_t> row(static_cast<std::size_t>(pads[r]), pad);
    row.push_back(10 + tag);
    row.push_back(20 + static_cast<std::int64_t>(r));
    for (const grid_thw& g : images[r]) {
      row.insert(row.end(), static_cast<std::size_t>(qwen3_vl::image_placeholder_count(g, 2)), image_id);
      row.push_back(30);
      s.images.grids.push_back(g);
    }
    REQUIRE(static_cast<std::int64_t>(row.size()) <= seq);
    for (std::int64_t k = 0; static_cast<std::int64_t>(row.size()) < seq; ++k) row.push_back(40 + (tag * 7 + k) % 40);
    for (std::size_t c = 0; c < row.size(); ++c) {
      const bool is_pad = static_cast<std::int64_t>(c) < pads[r];
      s.text.input_ids.push_back(row[c]);
      s.text.attention_mask.push_back(is_pad ? 0 : 1);
      s.text.labels.push_back(is_pad || row[c] == image_id ? cpu::ignore_index : row[c]);
    }
  }
  std::int64_t patches = 0;
  for (const grid_thw& g : s.images.grids) patches += qwen3_vl::image_patches(g);
  if (patches > 0) {
    s.images.pixel_values = tensor({patches, pixel_cols});
    for (std::int64_t p = 0; p < patches; ++p) {
      for (std::int64_t c = 0; c < pixel_cols; ++c) {
        s.images.pixel_values.data()[p * pixel_cols + c] =
            static_cast<float>(std::sin(0.37 * static_cast<double>(tag * 100 + p) + 0.011 * static_cast<double>(c)));
      }
    }
  }
  return s;
}

std::int64_t pixel_cols(const qwen3_vl::config& cfg) {
  return cfg.vision.in_channels * cfg.vision.temporal_patch_size * cfg.vision.patch_size * cfg.vision.patch_size;
}

// Three batches: one image; two rows of one and two images; text only.
std::vector<vl_sample> samples(const qwen3_vl::config& cfg) {
  const std::int64_t cols = pixel_cols(cfg);
  return {make_sample({8}, {{{1, 4, 4}}}, 20, 1, cols),
          make_sample({5, 2}, {{{1, 2, 6}}, {{1, 4, 4}, {1, 2, 2}}}, 24, 2, cols),
          make_sample({6}, std::vector<std::vector<grid_thw>>(1), 14, 3, cols)};
}

const qwen3_vl::vl_pack_ids ids{image_id, 2};

std::vector<text_batch> positioned(const std::vector<vl_sample>& s) {
  std::vector<text_batch> out;
  for (const vl_sample& v : s) out.push_back(qwen3_vl::positioned_batch(v.text, &v.images, ids, true));
  return out;
}

std::vector<image_batch> images_of(const std::vector<vl_sample>& s) {
  std::vector<image_batch> out;
  for (const vl_sample& v : s) out.push_back(v.images);
  return out;
}

}  // namespace

TEST_CASE("vl packing: each row's images, by its placeholders") {
  const qwen3_vl::config cfg = tiny_config();
  const std::vector<vl_sample> s = samples(cfg);
  const auto rows = qwen3_vl::images_of_rows(s[1].text, s[1].images, ids);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].first == 0);
  CHECK(rows[0].last == 1);
  CHECK(rows[0].patch_first == 0);
  CHECK(rows[0].patches == 12);
  CHECK(rows[1].first == 1);
  CHECK(rows[1].last == 3);
  CHECK(rows[1].patch_first == 12);
  CHECK(rows[1].patches == 16 + 4);
  CHECK(qwen3_vl::images_of_rows(s[2].text, s[2].images, ids)[0].patches == 0);

  vl_sample wrong = s[1];
  wrong.images.grids[0] = {1, 4, 4};  // 4 placeholders for a row that holds 3
  CHECK_THROWS_AS(qwen3_vl::images_of_rows(wrong.text, wrong.images, ids), aq::error);
  wrong = s[1];
  wrong.images.pixel_values = tensor({31, pixel_cols(cfg)});  // one pixel row short
  CHECK_THROWS_AS(qwen3_vl::images_of_rows(wrong.text, wrong.images, ids), aq::error);
  wrong = s[1];
  wrong.images.grids.pop_back();  // the last row's second image is missing
  CHECK_THROWS_AS(qwen3_vl::images_of_rows(wrong.text, wrong.images, ids), aq::error);
}

TEST_CASE("vl packing: rows keep their images, positions and order; passes keep the patch limit") {
  const qwen3_vl::config cfg = tiny_config();
  const std::vector<vl_sample> s = samples(cfg);
  const std::vector<text_batch> stage = positioned(s);
  CHECK(stage[0].seq == 20 - 7);  // one padding column stays
  const std::vector<image_batch> images = images_of(s);

  const auto one = qwen3_vl::pack_vl_batches(stage, images, 1000, 1000, ids);
  REQUIRE(one.size() == 1);
  const text_batch& p = one[0].text.batch;
  CHECK(p.batch == 4);
  const std::vector<grid_thw> grids = {{1, 4, 4}, {1, 2, 6}, {1, 4, 4}, {1, 2, 2}};
  CHECK(one[0].images.grids == grids);
  REQUIRE(one[0].images.pixel_values.dim(0) == 16 + 12 + 16 + 4);
  // Pixel rows: batch 0's 16, then batch 1's 32 in order.
  const std::int64_t cols = pixel_cols(cfg);
  CHECK(std::equal(s[0].images.pixel_values.data(), s[0].images.pixel_values.data() + 16 * cols,
                   one[0].images.pixel_values.data()));
  CHECK(std::equal(s[1].images.pixel_values.data(), s[1].images.pixel_values.data() + 32 * cols,
                   one[0].images.pixel_values.data() + 16 * cols));
  // Every row ends with its own untrimmed batch's last tokens and positions (all three axes).
  std::int64_t row = 0;
  for (std::size_t b = 0; b < s.size(); ++b) {
    const text_batch& u = s[b].text;
    const std::vector<std::int64_t> pos = qwen3_vl::rope_position_ids(u.input_ids, u.attention_mask, u.batch, u.seq,
                                                                      image_id, s[b].images.grids, 2);
    for (std::int64_t r = 0; r < u.batch; ++r, ++row) {
      CAPTURE(b);
      CAPTURE(r);
      const std::int64_t n = 8;  // the last 8 tokens of every row are real
      for (std::int64_t k = 1; k <= n; ++k) {
        const auto at = static_cast<std::size_t>((row + 1) * p.seq - k), from = static_cast<std::size_t>((r + 1) * u.seq - k);
        CHECK(p.input_ids[at] == u.input_ids[from]);
        for (std::int64_t a = 0; a < 3; ++a) {
          CHECK(p.position_ids[static_cast<std::size_t>(a * p.batch * p.seq) + at] ==
                pos[static_cast<std::size_t>(a * u.batch * u.seq) + from]);
        }
      }
      CHECK(one[0].text.sources[static_cast<std::size_t>(row)].batch == b);
    }
  }

  // Patch limit 24: [16] [12] [20 + 0 (the text row)].
  const auto limited = qwen3_vl::pack_vl_batches(stage, images, 1000, 24, ids);
  REQUIRE(limited.size() == 3);
  CHECK(limited[0].images.pixel_values.dim(0) == 16);
  CHECK(limited[1].images.pixel_values.dim(0) == 12);
  CHECK(limited[2].images.pixel_values.dim(0) == 20);
  CHECK(limited[2].text.batch.batch == 2);
  // A row over the limit runs alone rather than being refused.
  const auto tight = qwen3_vl::pack_vl_batches(stage, images, 1000, 8, ids);
  CHECK(tight.size() == 4);
  // A pass of text rows only carries no images.
  const auto text_only = qwen3_vl::pack_vl_batches(std::vector<text_batch>{stage[2]}, std::vector<image_batch>{images[2]},
                                                   1000, 1000, ids);
  REQUIRE(text_only.size() == 1);
  CHECK(text_only[0].images.grids.empty());
}

TEST_CASE("vl packing: bad arguments") {
  const qwen3_vl::config cfg = tiny_config();
  const std::vector<vl_sample> s = samples(cfg);
  const std::vector<text_batch> stage = positioned(s);
  const std::vector<image_batch> images = images_of(s);
  CHECK_THROWS_AS(qwen3_vl::pack_vl_batches(stage, std::vector<image_batch>(2), 1000, 1000, ids), aq::error);
  CHECK_THROWS_AS(qwen3_vl::pack_vl_batches(stage, images, 1000, 0, ids), aq::error);
  std::vector<text_batch> unpositioned = stage;
  unpositioned[1].position_ids.clear();
  CHECK_THROWS_AS(qwen3_vl::pack_vl_batches(unpositioned, images, 1000, 1000, ids), aq::error);
  std::vector<image_batch> other_cols = images;
  other_cols[1].pixel_values = tensor({32, pixel_cols(cfg) + 1});
  CHECK_THROWS_AS(qwen3_vl::pack_vl_batches(stage, other_cols, 1000, 1000, ids), aq::error);
}

TEST_CASE("a packed image pass gives every real token the logits of its own untrimmed batch") {
  const qwen3_vl::config cfg = tiny_config();
  const autoquant::generated_model gm = autoquant::make_generated_model(cfg, 5);
  const qwen3_vl::vl_model model(cfg, gm.text, gm.vision);
  const std::vector<vl_sample> s = samples(cfg);
  qwen3_vl::run_options o;
  o.masked_rows = cpu::masked_row_policy::zero;
  o.backward = false;
  const auto packed = qwen3_vl::pack_vl_batches(positioned(s), images_of(s), 1000, 1000, ids);
  REQUIRE(packed.size() == 1);
  text_batch p = packed[0].text.batch;
  p.labels.clear();
  const tensor logits = model.run(p, &packed[0].images, o).logits;
  const std::int64_t V = cfg.text.vocab_size;
  std::int64_t row = 0;
  double worst = 0.0, scale = 0.0;
  for (const vl_sample& v : s) {
    text_batch whole = v.text;  // positions from the model itself, nothing trimmed
    whole.labels.clear();
    const tensor own = model.run(whole, v.images.grids.empty() ? nullptr : &v.images, o).logits;
    for (std::int64_t r = 0; r < whole.batch; ++r, ++row) {
      for (std::int64_t c = 0; c < whole.seq; ++c) {
        if (whole.attention_mask[static_cast<std::size_t>(r * whole.seq + c)] == 0) continue;
        const std::int64_t at = (row + 1) * p.seq - (whole.seq - c), from = r * whole.seq + c;
        for (std::int64_t k = 0; k < V; ++k) {
          const double a = logits.data()[at * V + k], b = own.data()[from * V + k];
          worst = std::max(worst, std::abs(a - b));
          scale = std::max(scale, std::abs(b));
        }
      }
    }
  }
  CHECK(scale > 0.1);
  // fp32 end to end; only the summation order of the attention over padding differs.
  CHECK(worst <= 1e-5 * scale);
}

}  // namespace test_vl_batch_pack
