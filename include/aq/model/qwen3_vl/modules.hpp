// Qwen3-VL's quantizable modules in ModelOpt's order (named_modules of
// Qwen3VLForConditionalGeneration: vision tower, text decoder layers, lm_head) with weight shapes:
// what calibration, scoring and the allocator iterate over. Grouping is model/quantizable_modules.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/model/quantizable_modules.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/parameters.hpp"

namespace aq::qwen3_vl {

// Every Linear with a 2-D weight plus the Conv3d patch embedding (ModelOpt quantizes
// QuantConv3d too). lm_head is a Linear even when its weight is tied to embed_tokens.
inline std::vector<quantizable_module> quantizable_modules(const config& cfg) {
  std::vector<quantizable_module> out;
  const vision_config& v = cfg.vision;
  const text_config& t = cfg.text;
  const std::string vp(vision_prefix);
  const auto linear = [&](std::string name, std::int64_t out_features, std::int64_t in_features) {
    out.push_back({std::move(name), module_kind::linear, {out_features, in_features}});
  };

  out.push_back({vp + "patch_embed.proj", module_kind::conv3d,
                 {v.hidden_size, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size}});
  for (std::int64_t b = 0; b < v.depth; ++b) {
    const std::string block = vp + "blocks." + std::to_string(b) + ".";
    linear(block + "attn.qkv", 3 * v.hidden_size, v.hidden_size);
    linear(block + "attn.proj", v.hidden_size, v.hidden_size);
    linear(block + "mlp.linear_fc1", v.intermediate_size, v.hidden_size);
    linear(block + "mlp.linear_fc2", v.hidden_size, v.intermediate_size);
  }
  const std::int64_t merged = merger_hidden_size(v);
  linear(vp + "merger.linear_fc1", merged, merged);
  linear(vp + "merger.linear_fc2", v.out_hidden_size, merged);
  for (std::size_t k = 0; k < v.deepstack_visual_indexes.size(); ++k) {
    const std::string merger = vp + "deepstack_merger_list." + std::to_string(k) + ".";
    linear(merger + "linear_fc1", merged, merged);
    linear(merger + "linear_fc2", v.out_hidden_size, merged);
  }

  const std::int64_t q_width = t.num_attention_heads * t.head_dim;
  const std::int64_t kv_width = t.num_key_value_heads * t.head_dim;
  for (std::int64_t l = 0; l < t.num_hidden_layers; ++l) {
    const std::string layer = std::string(text_prefix) + "layers." + std::to_string(l) + ".";
    linear(layer + "self_attn.q_proj", q_width, t.hidden_size);
    linear(layer + "self_attn.k_proj", kv_width, t.hidden_size);
    linear(layer + "self_attn.v_proj", kv_width, t.hidden_size);
    linear(layer + "self_attn.o_proj", t.hidden_size, q_width);
    linear(layer + "mlp.gate_proj", t.intermediate_size, t.hidden_size);
    linear(layer + "mlp.up_proj", t.intermediate_size, t.hidden_size);
    linear(layer + "mlp.down_proj", t.hidden_size, t.intermediate_size);
  }
  linear("lm_head", t.vocab_size, t.hidden_size);
  return out;
}

// Which part of the model a module or parameter name belongs to.
inline model_part part_of(std::string_view name) {
  if (name.starts_with(vision_prefix)) return model_part::vision;
  if (name.starts_with(text_prefix)) return model_part::text;
  return model_part::lm_head;
}

}  // namespace aq::qwen3_vl
