// The Qwen3-VL text decoder's weights on the GPU: linears and embeddings in bf16 (the checkpoint
// dtype), norm weights in fp32, uploaded once; bound by the tensor schema's rows through two
// loaders, e.g. from the CPU model's fp32 tensors (rounded to bf16) or straight from a
// checkpoint's bf16 bytes.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/schema.hpp"
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
  std::size_t bytes() const;  // defined after the member tables
};

// Which member holds each text_layer row of the schema, by the dtype the schema gives it.
template <class T>
struct text_layer_device_member {
  using pointer = device_buffer<T> qwen3_vl_text_layer_weights::*;  // an alias: nvcc would parenthesize the declarator
  qwen3_vl::schema::module_id module;
  pointer member;
};
inline constexpr text_layer_device_member<bf16> text_layer_bf16_members[] = {
    {qwen3_vl::schema::module_id::q_proj, &qwen3_vl_text_layer_weights::q_proj},
    {qwen3_vl::schema::module_id::k_proj, &qwen3_vl_text_layer_weights::k_proj},
    {qwen3_vl::schema::module_id::v_proj, &qwen3_vl_text_layer_weights::v_proj},
    {qwen3_vl::schema::module_id::o_proj, &qwen3_vl_text_layer_weights::o_proj},
    {qwen3_vl::schema::module_id::gate_proj, &qwen3_vl_text_layer_weights::gate_proj},
    {qwen3_vl::schema::module_id::up_proj, &qwen3_vl_text_layer_weights::up_proj},
    {qwen3_vl::schema::module_id::down_proj, &qwen3_vl_text_layer_weights::down_proj},
};
inline constexpr text_layer_device_member<float> text_layer_f32_members[] = {
    {qwen3_vl::schema::module_id::input_layernorm, &qwen3_vl_text_layer_weights::input_layernorm},
    {qwen3_vl::schema::module_id::post_attention_layernorm, &qwen3_vl_text_layer_weights::post_attention_layernorm},
    {qwen3_vl::schema::module_id::q_norm, &qwen3_vl_text_layer_weights::q_norm},
    {qwen3_vl::schema::module_id::k_norm, &qwen3_vl_text_layer_weights::k_norm},
};

inline std::size_t qwen3_vl_text_device_weights::bytes() const {
  std::size_t n = embed_tokens.bytes() + norm.bytes() + lm_head.bytes();
  for (const auto& l : layers) {
    for (const auto& m : text_layer_bf16_members) n += (l.*m.member).bytes();
    for (const auto& m : text_layer_f32_members) n += (l.*m.member).bytes();
  }
  return n;
}

namespace detail {

// Every member's schema row has this dtype (with_bias: and always a bias, as the vision rows).
template <class T, std::size_t N>
constexpr bool members_hold(const T (&members)[N], qwen3_vl::schema::gpu_dtype dtype, bool with_bias = false) {
  for (const T& m : members) {
    const qwen3_vl::schema::module_spec& spec = qwen3_vl::schema::spec(m.module);
    if (spec.dtype != dtype || (with_bias && spec.bias != qwen3_vl::schema::bias_rule::always)) return false;
  }
  return true;
}
static_assert(members_hold(text_layer_bf16_members, qwen3_vl::schema::gpu_dtype::bf16));
static_assert(members_hold(text_layer_f32_members, qwen3_vl::schema::gpu_dtype::f32));
static_assert(qwen3_vl::schema::covers_family(qwen3_vl::schema::family::text_layer, text_layer_bf16_members,
                                              text_layer_f32_members));
static_assert(qwen3_vl::schema::spec(qwen3_vl::schema::module_id::embed_tokens).dtype == qwen3_vl::schema::gpu_dtype::bf16 &&
              qwen3_vl::schema::spec(qwen3_vl::schema::module_id::lm_head).dtype == qwen3_vl::schema::gpu_dtype::bf16 &&
              qwen3_vl::schema::spec(qwen3_vl::schema::module_id::final_norm).dtype == qwen3_vl::schema::gpu_dtype::f32);

// Binds every text tensor through two loaders (bf16 for linears/embeddings, fp32 for norms), each
// called as load(ref, name, shape) with the schema's tensor, name and shape.
template <class LoadBf16, class LoadF32>
qwen3_vl_text_device_weights bind_text_weights(const qwen3_vl::config& cfg, bool has_lm_head, LoadBf16 bf,
                                               LoadF32 f32) {
  qwen3_vl::check_text_config(cfg.text);
  using qwen3_vl::schema::module_id;
  const auto load = [&](auto& loader, module_id id, std::int64_t index = -1) {
    const qwen3_vl::schema::tensor_ref ref{id, index};
    return loader(ref, qwen3_vl::schema::tensor_name(ref), qwen3_vl::schema::tensor_shape(cfg, ref));
  };
  qwen3_vl_text_device_weights w;
  w.embed_tokens = load(bf, module_id::embed_tokens);
  w.norm = load(f32, module_id::final_norm);
  for (std::int64_t l = 0; l < cfg.text.num_hidden_layers; ++l) {
    qwen3_vl_text_layer_weights lw;
    for (const auto& m : text_layer_f32_members) lw.*m.member = load(f32, m.module, l);
    for (const auto& m : text_layer_bf16_members) lw.*m.member = load(bf, m.module, l);
    w.layers.push_back(std::move(lw));
  }
  if (!cfg.tie_word_embeddings) {
    const std::string head = qwen3_vl::schema::tensor_name(module_id::lm_head);
    if (!has_lm_head) throw error("qwen3_vl checkpoint: tie_word_embeddings is false but " + head + " is missing");
    w.lm_head = load(bf, module_id::lm_head);
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

// An fp32 host tensor rounded to bf16 (GEMM operands: weights on upload, the vision tower's pixels).
inline std::vector<bf16> rounded_to_bf16(const tensor& t) {
  std::vector<bf16> v(static_cast<std::size_t>(t.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = float_to_bf16(t.data()[i]);
  return v;
}

}  // namespace detail

// Host fp32 weights (the CPU model's) rounded to bf16 on upload.
inline qwen3_vl_text_device_weights upload_text_weights(const qwen3_vl::config& cfg, const qwen3_vl::text_weights& host) {
  using qwen3_vl::schema::module_id;
  const auto find = [&](const qwen3_vl::schema::tensor_ref& ref) -> const tensor& {
    switch (ref.module) {
      case module_id::embed_tokens: return host.embed_tokens;
      case module_id::final_norm: return host.norm;
      case module_id::lm_head: return host.lm_head;
      default: return qwen3_vl::layer_member(host.layers.at(static_cast<std::size_t>(ref.index)), ref.module);
    }
  };
  using shape = std::vector<std::int64_t>;
  const auto bf = [&](const qwen3_vl::schema::tensor_ref& ref, const std::string& name, const shape& want) {
    const tensor& t = find(ref);
    detail::check_shape(name, t.shape(), want, "qwen3_vl host weights");
    return device_buffer<bf16>(detail::rounded_to_bf16(t));
  };
  const auto f32 = [&](const qwen3_vl::schema::tensor_ref& ref, const std::string& name, const shape& want) {
    const tensor& t = find(ref);
    detail::check_shape(name, t.shape(), want, "qwen3_vl host weights");
    return device_buffer<float>(t.storage());
  };
  return detail::bind_text_weights(cfg, !host.lm_head.empty(), bf, f32);
}

}  // namespace aq::cuda
