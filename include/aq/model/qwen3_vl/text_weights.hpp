// Binding of the Qwen3-VL text decoder's checkpoint tensors (model.language_model.*, lm_head)
// to fp32 tensors with checked shapes, by the tensor schema's names and shapes. The weights come
// from any source that can hand out a named tensor as float32 (a safetensors checkpoint, a test's
// synthetic weights).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/schema.hpp"

namespace aq::qwen3_vl {

// contains(name): whether the checkpoint has the tensor; load(name, shape): the tensor as fp32,
// throwing aq::error when it is missing or its shape differs.
struct weight_source {
  std::function<bool(const std::string&)> contains;
  std::function<tensor(const std::string&, const std::vector<std::int64_t>&)> load;
};

struct text_layer_weights {
  tensor input_layernorm, post_attention_layernorm;  // [H]
  tensor q_proj, k_proj, v_proj, o_proj;             // [heads·d, H], [kv·d, H], [kv·d, H], [H, heads·d]
  tensor q_norm, k_norm;                             // [d]
  tensor gate_proj, up_proj, down_proj;              // [I, H], [I, H], [H, I]
};

struct text_weights {
  tensor embed_tokens;  // [V, H]
  std::vector<text_layer_weights> layers;
  tensor norm;          // [H]
  tensor lm_head;       // [V, H]; empty when tied to embed_tokens
  const tensor& lm_head_weight() const { return lm_head.empty() ? embed_tokens : lm_head; }
};

// Which member of a layer holds each text_layer row of the schema (weights only: the text
// attention has no bias, check_implemented refuses attention_bias).
struct text_layer_member {
  using pointer = tensor text_layer_weights::*;  // an alias: nvcc's host output would parenthesize the declarator
  schema::module_id module;
  pointer member;
};
inline constexpr text_layer_member text_layer_members[] = {
    {schema::module_id::q_proj, &text_layer_weights::q_proj},
    {schema::module_id::k_proj, &text_layer_weights::k_proj},
    {schema::module_id::v_proj, &text_layer_weights::v_proj},
    {schema::module_id::o_proj, &text_layer_weights::o_proj},
    {schema::module_id::q_norm, &text_layer_weights::q_norm},
    {schema::module_id::k_norm, &text_layer_weights::k_norm},
    {schema::module_id::gate_proj, &text_layer_weights::gate_proj},
    {schema::module_id::up_proj, &text_layer_weights::up_proj},
    {schema::module_id::down_proj, &text_layer_weights::down_proj},
    {schema::module_id::input_layernorm, &text_layer_weights::input_layernorm},
    {schema::module_id::post_attention_layernorm, &text_layer_weights::post_attention_layernorm},
};
static_assert(schema::covers_family(schema::family::text_layer, text_layer_members));

// The member holding a text_layer module's weight (W: text_layer_weights, const or not).
template <class W>
auto& layer_member(W& w, schema::module_id id) {
  for (const text_layer_member& m : text_layer_members) {
    if (m.module == id) return w.*m.member;
  }
  throw error("qwen3_vl text weights: " + schema::module_path(id) + " is not a decoder-layer module");
}

inline void check_text_config(const text_config& t) {
  if (t.hidden_size <= 0 || t.num_hidden_layers <= 0 || t.num_attention_heads <= 0 || t.num_key_value_heads <= 0 ||
      t.head_dim <= 0 || t.vocab_size <= 0 || t.intermediate_size <= 0) {
    throw error("qwen3_vl text config: hidden_size, intermediate_size, num_hidden_layers, heads, head_dim and "
                "vocab_size must all be positive");
  }
}

// lm_head = embed_tokens unless the checkpoint has lm_head.weight and the config is untied
// (transformers drops the tied duplicate on save).
inline text_weights load_text_weights(const config& cfg, const weight_source& source) {
  check_implemented(cfg);
  check_text_config(cfg.text);
  using schema::module_id;
  const auto load = [&](module_id id, std::int64_t index = -1) {
    return source.load(schema::tensor_name(id, index), schema::weight_shape(cfg, id, index));
  };
  text_weights w;
  w.embed_tokens = load(module_id::embed_tokens);
  w.norm = load(module_id::final_norm);
  for (std::int64_t l = 0; l < cfg.text.num_hidden_layers; ++l) {
    text_layer_weights lw;
    for (const text_layer_member& m : text_layer_members) lw.*m.member = load(m.module, l);
    w.layers.push_back(std::move(lw));
  }
  if (!cfg.tie_word_embeddings) {
    const std::string head = schema::tensor_name(module_id::lm_head);
    if (!source.contains(head)) {
      throw error("qwen3_vl checkpoint: tie_word_embeddings is false but " + head + " is missing");
    }
    w.lm_head = load(module_id::lm_head);
  }
  return w;
}

}  // namespace aq::qwen3_vl
