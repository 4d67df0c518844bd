// Binding of the Qwen3-VL vision tower's checkpoint tensors (model.visual.*: patch embedding,
// learned position grid, pre-LN ViT blocks, the final patch merger and the DeepStack mergers) to
// fp32 tensors with checked shapes, by the tensor schema's names and shapes.
#pragma once

#include <cstdint>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/schema.hpp"
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

// Which members hold each row of a block or merger of the schema: weight and bias.
template <class W>
struct vision_member {
  using pointer = tensor W::*;  // an alias: nvcc's host output would parenthesize the declarator
  schema::module_id module;
  pointer weight;
  pointer bias;
};
inline constexpr vision_member<vision_block_weights> vision_block_members[] = {
    {schema::module_id::norm1, &vision_block_weights::norm1_w, &vision_block_weights::norm1_b},
    {schema::module_id::norm2, &vision_block_weights::norm2_w, &vision_block_weights::norm2_b},
    {schema::module_id::attn_qkv, &vision_block_weights::qkv_w, &vision_block_weights::qkv_b},
    {schema::module_id::attn_proj, &vision_block_weights::proj_w, &vision_block_weights::proj_b},
    {schema::module_id::mlp_fc1, &vision_block_weights::fc1_w, &vision_block_weights::fc1_b},
    {schema::module_id::mlp_fc2, &vision_block_weights::fc2_w, &vision_block_weights::fc2_b},
};
inline constexpr vision_member<merger_weights> merger_members[] = {
    {schema::module_id::merger_norm, &merger_weights::norm_w, &merger_weights::norm_b},
    {schema::module_id::merger_fc1, &merger_weights::fc1_w, &merger_weights::fc1_b},
    {schema::module_id::merger_fc2, &merger_weights::fc2_w, &merger_weights::fc2_b},
};
static_assert(schema::covers_family(schema::family::vision_block, vision_block_members));
static_assert(schema::covers_family(schema::family::merger, merger_members));

inline void check_vision_config(const vision_config& v) {
  if (v.hidden_size <= 0 || v.num_heads <= 0 || v.hidden_size % v.num_heads != 0 || v.depth <= 0 ||
      v.intermediate_size <= 0 || v.out_hidden_size <= 0 || v.num_position_embeddings <= 0) {
    throw error("qwen3_vl vision config: depth, hidden_size (a multiple of num_heads), intermediate_size, "
                "out_hidden_size and num_position_embeddings must be positive");
  }
}

inline vision_weights load_vision_weights(const config& cfg, const weight_source& source) {
  check_implemented(cfg);
  check_vision_config(cfg.vision);
  using schema::module_id;
  using schema::tensor_kind;
  const auto load = [&](module_id id, std::int64_t index = -1, tensor_kind kind = tensor_kind::weight) {
    return source.load(schema::tensor_name(id, index, kind), schema::tensor_shape(cfg, id, index, kind));
  };
  const auto load_members = [&](auto& into, const auto& members, std::int64_t index) {
    for (const auto& m : members) {
      into.*m.weight = load(m.module, index);
      into.*m.bias = load(m.module, index, tensor_kind::bias);
    }
  };
  const vision_config& v = cfg.vision;
  vision_weights w;
  w.patch_w = load(module_id::patch_embed);
  w.patch_w.reshape({v.hidden_size, v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size});
  w.patch_b = load(module_id::patch_embed, -1, tensor_kind::bias);
  w.pos_embed = load(module_id::pos_embed);
  for (std::int64_t b = 0; b < v.depth; ++b) {
    vision_block_weights bw;
    load_members(bw, vision_block_members, b);
    w.blocks.push_back(std::move(bw));
  }
  // The final merger is instance -1; DeepStack merger k is instance k, normed after the concat.
  schema::for_each_instance(cfg, schema::family::merger, [&](std::int64_t k) {
    merger_weights m;
    load_members(m, merger_members, k);
    m.postshuffle_norm = k >= 0;
    if (k < 0) {
      w.merger = std::move(m);
    } else {
      w.deepstack.push_back(std::move(m));
    }
  });
  return w;
}

}  // namespace aq::qwen3_vl
