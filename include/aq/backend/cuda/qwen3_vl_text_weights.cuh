// The Qwen3-VL text decoder's weights on the GPU: linears and embeddings in bf16 (the checkpoint
// dtype), norm weights in fp32, uploaded once; bound by checkpoint name through two loaders, e.g.
// from the CPU model's fp32 tensors (rounded to bf16) or straight from a checkpoint's bf16 bytes.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "aq/backend/cuda/check.hpp"
#include "aq/backend/cuda/device_buffer.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/text_weights.hpp"

namespace aq::cuda {

struct qwen3_vl_text_layer_weights {
  device_buffer<bf16> q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
  device_buffer<float> input_layernorm, post_attention_layernorm, q_norm, k_norm;
};

// Linear weights in bf16 (the checkpoint's dtype), norm weights in fp32.
struct qwen3_vl_text_device_weights {
  device_buffer<bf16> embed_tokens;  // [V, H]
  std::vector<qwen3_vl_text_layer_weights> layers;
  device_buffer<float> norm;
  device_buffer<bf16> lm_head;  // empty when tied to embed_tokens
  const bf16* lm_head_weight() const { return lm_head.empty() ? embed_tokens.data() : lm_head.data(); }
  std::size_t bytes() const {
    std::size_t n = embed_tokens.bytes() + norm.bytes() + lm_head.bytes();
    for (const auto& l : layers) {
      n += l.q_proj.bytes() + l.k_proj.bytes() + l.v_proj.bytes() + l.o_proj.bytes() + l.gate_proj.bytes() +
           l.up_proj.bytes() + l.down_proj.bytes() + l.input_layernorm.bytes() + l.post_attention_layernorm.bytes() +
           l.q_norm.bytes() + l.k_norm.bytes();
    }
    return n;
  }
};

namespace detail {

// Binds every text tensor through two loaders (bf16 for linears/embeddings, fp32 for norms).
template <class LoadBf16, class LoadF32>
qwen3_vl_text_device_weights bind_text_weights(const qwen3_vl::config& cfg, bool has_lm_head, LoadBf16 bf,
                                               LoadF32 f32) {
  const qwen3_vl::text_config& t = cfg.text;
  if (t.hidden_size <= 0 || t.num_hidden_layers <= 0 || t.num_attention_heads <= 0 || t.num_key_value_heads <= 0 ||
      t.head_dim <= 0 || t.vocab_size <= 0 || t.intermediate_size <= 0) {
    throw error("qwen3_vl text config: hidden_size, intermediate_size, num_hidden_layers, heads, head_dim and "
                "vocab_size must all be positive");
  }
  const std::int64_t H = t.hidden_size, I = t.intermediate_size;
  const std::int64_t qd = t.num_attention_heads * t.head_dim, kvd = t.num_key_value_heads * t.head_dim;
  const std::string p0 = qwen3_vl::text_weight_prefix();
  qwen3_vl_text_device_weights w;
  w.embed_tokens = bf(p0 + "embed_tokens.weight", std::vector<std::int64_t>{t.vocab_size, H});
  w.norm = f32(p0 + "norm.weight", std::vector<std::int64_t>{H});
  for (std::int64_t l = 0; l < t.num_hidden_layers; ++l) {
    const std::string p = qwen3_vl::text_layer_weight_prefix(l);
    qwen3_vl_text_layer_weights lw;
    lw.input_layernorm = f32(p + "input_layernorm.weight", std::vector<std::int64_t>{H});
    lw.post_attention_layernorm = f32(p + "post_attention_layernorm.weight", std::vector<std::int64_t>{H});
    lw.q_proj = bf(p + "self_attn.q_proj.weight", std::vector<std::int64_t>{qd, H});
    lw.k_proj = bf(p + "self_attn.k_proj.weight", std::vector<std::int64_t>{kvd, H});
    lw.v_proj = bf(p + "self_attn.v_proj.weight", std::vector<std::int64_t>{kvd, H});
    lw.o_proj = bf(p + "self_attn.o_proj.weight", std::vector<std::int64_t>{H, qd});
    lw.q_norm = f32(p + "self_attn.q_norm.weight", std::vector<std::int64_t>{t.head_dim});
    lw.k_norm = f32(p + "self_attn.k_norm.weight", std::vector<std::int64_t>{t.head_dim});
    lw.gate_proj = bf(p + "mlp.gate_proj.weight", std::vector<std::int64_t>{I, H});
    lw.up_proj = bf(p + "mlp.up_proj.weight", std::vector<std::int64_t>{I, H});
    lw.down_proj = bf(p + "mlp.down_proj.weight", std::vector<std::int64_t>{H, I});
    w.layers.push_back(std::move(lw));
  }
  if (!cfg.tie_word_embeddings) {
    if (!has_lm_head) throw error("qwen3_vl checkpoint: tie_word_embeddings is false but lm_head.weight is missing");
    w.lm_head = bf("lm_head.weight", std::vector<std::int64_t>{t.vocab_size, H});
  }
  return w;
}

inline void check_shape(const std::string& name, std::span<const std::int64_t> got, const std::vector<std::int64_t>& want,
                        const std::string& where) {
  if (!std::equal(got.begin(), got.end(), want.begin(), want.end())) {
    throw error(where + ": tensor " + name + ": shape " + shape_string(std::vector<std::int64_t>(got.begin(), got.end())) +
                ", expected " + shape_string(want));
  }
}

}  // namespace detail

// Host fp32 weights (the CPU model's) rounded to bf16 on upload.
inline qwen3_vl_text_device_weights upload_text_weights(const qwen3_vl::config& cfg, const qwen3_vl::text_weights& host) {
  const auto find = [&](const std::string& name) -> const tensor& {
    const std::string p0 = qwen3_vl::text_weight_prefix();
    if (name == p0 + "embed_tokens.weight") return host.embed_tokens;
    if (name == p0 + "norm.weight") return host.norm;
    if (name == "lm_head.weight") return host.lm_head;
    const std::string rest = name.substr(p0.size() + 7);  // after "layers."
    const std::size_t dot = rest.find('.');
    const auto& lw = host.layers.at(static_cast<std::size_t>(std::stoll(rest.substr(0, dot))));
    const std::string field = rest.substr(dot + 1);
    if (field == "input_layernorm.weight") return lw.input_layernorm;
    if (field == "post_attention_layernorm.weight") return lw.post_attention_layernorm;
    if (field == "self_attn.q_proj.weight") return lw.q_proj;
    if (field == "self_attn.k_proj.weight") return lw.k_proj;
    if (field == "self_attn.v_proj.weight") return lw.v_proj;
    if (field == "self_attn.o_proj.weight") return lw.o_proj;
    if (field == "self_attn.q_norm.weight") return lw.q_norm;
    if (field == "self_attn.k_norm.weight") return lw.k_norm;
    if (field == "mlp.gate_proj.weight") return lw.gate_proj;
    if (field == "mlp.up_proj.weight") return lw.up_proj;
    return lw.down_proj;
  };
  const auto bf = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    const tensor& t = find(name);
    detail::check_shape(name, t.shape(), shape, "qwen3_vl host weights");
    std::vector<bf16> v(static_cast<std::size_t>(t.numel()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = float_to_bf16(t.data()[i]);
    return device_buffer<bf16>(v);
  };
  const auto f32 = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    const tensor& t = find(name);
    detail::check_shape(name, t.shape(), shape, "qwen3_vl host weights");
    return device_buffer<float>(t.storage());
  };
  return detail::bind_text_weights(cfg, !host.lm_head.empty(), bf, f32);
}

}  // namespace aq::cuda
