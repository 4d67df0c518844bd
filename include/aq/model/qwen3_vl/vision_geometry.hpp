// Where the vision tower's patches sit: the learned position embeddings interpolated to each image's
// grid and the 2-D rotary tables with one attention segment per frame. Host math both backends' towers
// use, so that they place patches identically.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "aq/core/tensor.hpp"
#include "aq/model/attention_config.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"
#include "aq/model/rope_frequencies.hpp"

namespace aq::qwen3_vl {

// Calls f(row, column) for each patch of an h x w grid in merge-block order (the order of
// pixel_values rows): merge x merge blocks in raster order, the patches of a block consecutive.
template <class F>
void for_each_patch_in_merge_order(std::int64_t h, std::int64_t w, std::int64_t merge, F&& f) {
  for (std::int64_t bh = 0; bh < h / merge; ++bh) {
    for (std::int64_t bw = 0; bw < w / merge; ++bw) {
      for (std::int64_t mh = 0; mh < merge; ++mh) {
        for (std::int64_t mw = 0; mw < merge; ++mw) f(bh * merge + mh, bw * merge + mw);
      }
    }
  }
}

// Learned position embeddings interpolated bilinearly from the G×G grid (fast_pos_embed_interpolate),
// in merge-block row order and repeated per frame: [Σ t·h·w, D].
inline tensor vision_position_embeddings(const tensor& table, const std::vector<grid_thw>& grids, std::int64_t merge) {
  const std::int64_t D = table.dim(1);
  const auto G = static_cast<std::int64_t>(std::lround(std::sqrt(static_cast<double>(table.dim(0)))));
  auto linspace = [&](std::int64_t n) {  // torch.linspace(0, G-1, n) in fp32
    std::vector<float> v(static_cast<std::size_t>(n));
    const float end = static_cast<float>(G - 1);
    const float step = n > 1 ? end / static_cast<float>(n - 1) : 0.0f;
    for (std::int64_t i = 0; i < n; ++i) {
      v[static_cast<std::size_t>(i)] = i < n / 2 ? step * static_cast<float>(i) : end - step * static_cast<float>(n - 1 - i);
    }
    if (n == 1) v[0] = 0.0f;
    return v;
  };
  std::int64_t rows = 0;
  for (const grid_thw& g : grids) rows += g[0] * g[1] * g[2];
  tensor out({rows, D});
  std::int64_t row = 0;
  for (const grid_thw& g : grids) {
    const std::int64_t t = g[0], h = g[1], w = g[2];
    const std::vector<float> hs = linspace(h), ws = linspace(w);
    tensor raster({h * w, D});
    for (std::int64_t r = 0; r < h; ++r) {
      const auto hf = static_cast<std::int64_t>(hs[static_cast<std::size_t>(r)]);
      const std::int64_t hc = std::min(hf + 1, G - 1);
      const float dh = hs[static_cast<std::size_t>(r)] - static_cast<float>(hf);
      for (std::int64_t c = 0; c < w; ++c) {
        const auto wf = static_cast<std::int64_t>(ws[static_cast<std::size_t>(c)]);
        const std::int64_t wc = std::min(wf + 1, G - 1);
        const float dw = ws[static_cast<std::size_t>(c)] - static_cast<float>(wf);
        const std::int64_t idx[4] = {hf * G + wf, hf * G + wc, hc * G + wf, hc * G + wc};
        const float wt[4] = {(1 - dh) * (1 - dw), (1 - dh) * dw, dh * (1 - dw), dh * dw};
        float* dst = raster.data() + (r * w + c) * D;
        for (std::int64_t e = 0; e < D; ++e) {
          float s = table.data()[idx[0] * D + e] * wt[0];
          for (int q = 1; q < 4; ++q) s = s + table.data()[idx[q] * D + e] * wt[q];
          dst[e] = s;
        }
      }
    }
    for (std::int64_t f = 0; f < t; ++f) {
      for_each_patch_in_merge_order(h, w, merge, [&](std::int64_t y, std::int64_t x) {
        std::copy_n(raster.data() + (y * w + x) * D, D, out.data() + row * D);
        ++row;
      });
    }
  }
  return out;
}

// The tower's 2-D rotary tables [Σ t·h·w, head_dim] in merge-block row order (head dims (i,
// i + hd/2) rotate by row·inv[i] for i < hd/4 and by column·inv[i − hd/4] after) and one attention
// segment per image frame. Shared by the CPU and GPU towers.
struct vision_rotary {
  tensor cos, sin;
  std::vector<attention_segment> segments;
};

inline vision_rotary vision_rotary_tables(const std::vector<grid_thw>& grids, std::int64_t m, std::int64_t hd) {
  std::int64_t np = 0;
  for (const grid_thw& g : grids) np += g[0] * g[1] * g[2];
  const std::vector<float> inv = rope_inv_freq(hd / 2, 10000.0);
  const auto quarter = static_cast<std::int64_t>(inv.size());
  vision_rotary out;
  out.cos = tensor({np, hd});
  out.sin = tensor({np, hd});
  std::int64_t row = 0;
  for (const grid_thw& g : grids) {
    for (std::int64_t f = 0; f < g[0]; ++f) {
      out.segments.push_back({row, g[1] * g[2]});
      for_each_patch_in_merge_order(g[1], g[2], m, [&](std::int64_t y, std::int64_t x) {
        for (std::int64_t j = 0; j < 2 * quarter; ++j) {
          const float angle = static_cast<float>(j < quarter ? y : x) * inv[static_cast<std::size_t>(j % quarter)];
          for (const std::int64_t col : {j, j + 2 * quarter}) {
            out.cos.data()[row * hd + col] = std::cos(angle);
            out.sin.data()[row * hd + col] = std::sin(angle);
          }
        }
        ++row;
      });
    }
  }
  return out;
}

}  // namespace aq::qwen3_vl
