// Binding of the Qwen3-VL text decoder's checkpoint tensors (model.language_model.*, lm_head)
// to fp32 tensors with checked shapes. The weights come from any source that can hand out a
// named tensor as float32 (a safetensors checkpoint, a test's synthetic weights).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/config.hpp"

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

inline std::string text_weight_prefix() { return "model.language_model."; }
inline std::string text_layer_weight_prefix(std::int64_t layer) {
  return text_weight_prefix() + "layers." + std::to_string(layer) + ".";
}

// lm_head = embed_tokens unless the checkpoint has lm_head.weight and the config is untied
// (transformers drops the tied duplicate on save).
inline text_weights load_text_weights(const config& cfg, const weight_source& source) {
  check_implemented(cfg);
  const text_config& t = cfg.text;
  if (t.hidden_size <= 0 || t.num_hidden_layers <= 0 || t.num_attention_heads <= 0 || t.num_key_value_heads <= 0 ||
      t.head_dim <= 0 || t.vocab_size <= 0 || t.intermediate_size <= 0) {
    throw error("qwen3_vl text config: hidden_size, intermediate_size, num_hidden_layers, heads, head_dim and "
                "vocab_size must all be positive");
  }
  const std::int64_t H = t.hidden_size;
  const std::int64_t qd = t.num_attention_heads * t.head_dim;
  const std::int64_t kvd = t.num_key_value_heads * t.head_dim;
  const std::int64_t I = t.intermediate_size;
  text_weights w;
  w.embed_tokens = source.load(text_weight_prefix() + "embed_tokens.weight", {t.vocab_size, H});
  w.norm = source.load(text_weight_prefix() + "norm.weight", {H});
  for (std::int64_t l = 0; l < t.num_hidden_layers; ++l) {
    const std::string p = text_layer_weight_prefix(l);
    text_layer_weights lw;
    lw.input_layernorm = source.load(p + "input_layernorm.weight", {H});
    lw.post_attention_layernorm = source.load(p + "post_attention_layernorm.weight", {H});
    lw.q_proj = source.load(p + "self_attn.q_proj.weight", {qd, H});
    lw.k_proj = source.load(p + "self_attn.k_proj.weight", {kvd, H});
    lw.v_proj = source.load(p + "self_attn.v_proj.weight", {kvd, H});
    lw.o_proj = source.load(p + "self_attn.o_proj.weight", {H, qd});
    lw.q_norm = source.load(p + "self_attn.q_norm.weight", {t.head_dim});
    lw.k_norm = source.load(p + "self_attn.k_norm.weight", {t.head_dim});
    lw.gate_proj = source.load(p + "mlp.gate_proj.weight", {I, H});
    lw.up_proj = source.load(p + "mlp.up_proj.weight", {I, H});
    lw.down_proj = source.load(p + "mlp.down_proj.weight", {H, I});
    w.layers.push_back(std::move(lw));
  }
  if (!cfg.tie_word_embeddings) {
    if (!source.contains("lm_head.weight")) {
      throw error("qwen3_vl checkpoint: tie_word_embeddings is false but lm_head.weight is missing");
    }
    w.lm_head = source.load("lm_head.weight", {t.vocab_size, H});
  }
  return w;
}

}  // namespace aq::qwen3_vl
