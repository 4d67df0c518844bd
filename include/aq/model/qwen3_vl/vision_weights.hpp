// Binding of the Qwen3-VL vision tower's checkpoint tensors (model.visual.*: patch embedding,
// learned position grid, pre-LN ViT blocks, the final patch merger and the DeepStack mergers) to
// fp32 tensors with checked shapes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/text_weights.hpp"

namespace aq::qwen3_vl {

struct vision_block_weights {
  tensor norm1_w, norm1_b, norm2_w, norm2_b;  // [D]
  tensor qkv_w, qkv_b;                        // [3D, D], [3D]
  tensor proj_w, proj_b;                      // [D, D], [D]
  tensor fc1_w, fc1_b;                        // [I, D], [I]
  tensor fc2_w, fc2_b;                        // [D, I], [D]
};

// A patch merger: LayerNorm (over D before the 2×2 concat, or over 4D after it for DeepStack),
// then Linear(4D, 4D), exact GELU, Linear(4D, out).
struct merger_weights {
  tensor norm_w, norm_b;
  tensor fc1_w, fc1_b, fc2_w, fc2_b;
  bool postshuffle_norm = false;
};

struct vision_weights {
  tensor patch_w;  // [D, C·Tp·P·P] (the Conv3d kernel flattened in pixel_values column order)
  tensor patch_b;  // [D]
  tensor pos_embed;  // [num_position_embeddings, D]
  std::vector<vision_block_weights> blocks;
  merger_weights merger;
  std::vector<merger_weights> deepstack;  // one per deepstack_visual_indexes entry
};

inline std::string vision_weight_prefix() { return "model.visual."; }

inline vision_weights load_vision_weights(const config& cfg, const weight_source& source) {
  check_implemented(cfg);
  const vision_config& v = cfg.vision;
  if (v.hidden_size <= 0 || v.num_heads <= 0 || v.hidden_size % v.num_heads != 0 || v.depth <= 0 ||
      v.intermediate_size <= 0 || v.out_hidden_size <= 0 || v.num_position_embeddings <= 0) {
    throw error("qwen3_vl vision config: depth, hidden_size (a multiple of num_heads), intermediate_size, "
                "out_hidden_size and num_position_embeddings must be positive");
  }
  const std::int64_t D = v.hidden_size;
  const std::int64_t I = v.intermediate_size;
  const std::int64_t M = D * v.spatial_merge_size * v.spatial_merge_size;
  const std::string p = vision_weight_prefix();
  vision_weights w;
  const std::int64_t patch = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size;
  w.patch_w = source.load(p + "patch_embed.proj.weight", {D, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size});
  w.patch_w.reshape({D, patch});
  w.patch_b = source.load(p + "patch_embed.proj.bias", {D});
  w.pos_embed = source.load(p + "pos_embed.weight", {v.num_position_embeddings, D});
  for (std::int64_t b = 0; b < v.depth; ++b) {
    const std::string bp = p + "blocks." + std::to_string(b) + ".";
    vision_block_weights bw;
    bw.norm1_w = source.load(bp + "norm1.weight", {D});
    bw.norm1_b = source.load(bp + "norm1.bias", {D});
    bw.norm2_w = source.load(bp + "norm2.weight", {D});
    bw.norm2_b = source.load(bp + "norm2.bias", {D});
    bw.qkv_w = source.load(bp + "attn.qkv.weight", {3 * D, D});
    bw.qkv_b = source.load(bp + "attn.qkv.bias", {3 * D});
    bw.proj_w = source.load(bp + "attn.proj.weight", {D, D});
    bw.proj_b = source.load(bp + "attn.proj.bias", {D});
    bw.fc1_w = source.load(bp + "mlp.linear_fc1.weight", {I, D});
    bw.fc1_b = source.load(bp + "mlp.linear_fc1.bias", {I});
    bw.fc2_w = source.load(bp + "mlp.linear_fc2.weight", {D, I});
    bw.fc2_b = source.load(bp + "mlp.linear_fc2.bias", {D});
    w.blocks.push_back(std::move(bw));
  }
  auto merger = [&](const std::string& mp, bool postshuffle) {
    merger_weights m;
    const std::int64_t norm_width = postshuffle ? M : D;
    m.norm_w = source.load(mp + "norm.weight", {norm_width});
    m.norm_b = source.load(mp + "norm.bias", {norm_width});
    m.fc1_w = source.load(mp + "linear_fc1.weight", {M, M});
    m.fc1_b = source.load(mp + "linear_fc1.bias", {M});
    m.fc2_w = source.load(mp + "linear_fc2.weight", {v.out_hidden_size, M});
    m.fc2_b = source.load(mp + "linear_fc2.bias", {v.out_hidden_size});
    m.postshuffle_norm = postshuffle;
    return m;
  };
  w.merger = merger(p + "merger.", false);
  for (std::size_t k = 0; k < v.deepstack_visual_indexes.size(); ++k) {
    w.deepstack.push_back(merger(p + "deepstack_merger_list." + std::to_string(k) + ".", true));
  }
  return w;
}

}  // namespace aq::qwen3_vl
