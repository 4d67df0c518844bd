// The Qwen3-VL vision tower's weights on the GPU: matrices in bf16, vectors in fp32, the learned
// position grid kept on the host (interpolated per batch of images there). Uploaded from the CPU
// model's fp32 weights, or bound straight from a checkpoint through loaders
// (qwen3_vl_vision_checkpoint.hpp). Host-compilable: no kernels here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text_weights.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/schema.hpp"
#include "aq/model/qwen3_vl/vision_weights.hpp"

namespace aq::cuda {

struct qwen3_vl_vision_block_device_weights {
  device_buffer<float> norm1_w, norm1_b, norm2_w, norm2_b, qkv_b, proj_b, fc1_b, fc2_b;
  device_buffer<bf16> qkv_w, proj_w, fc1_w, fc2_w;
};

struct qwen3_vl_merger_device_weights {
  device_buffer<float> norm_w, norm_b, fc1_b, fc2_b;
  device_buffer<bf16> fc1_w, fc2_w;
  std::int64_t out = 0;  // fc2 rows (the decoder's hidden size)
  bool postshuffle_norm = false;
};

// Matrices in bf16, vectors in fp32; the position grid stays on the host (it is interpolated per
// batch of images there, as a table, and uploaded).
struct qwen3_vl_vision_device_weights {
  device_buffer<bf16> patch_w;  // [D, C·Tp·P·P]
  device_buffer<float> patch_b;
  tensor pos_embed;  // host [num_position_embeddings, D]
  std::vector<qwen3_vl_vision_block_device_weights> blocks;
  qwen3_vl_merger_device_weights merger;
  std::vector<qwen3_vl_merger_device_weights> deepstack;
  std::size_t bytes() const;  // defined after the member tables
};

// Which members hold each block or merger row of the schema: the weight (bf16 for matrices, fp32
// for norms, as the schema's dtype says) and the fp32 bias.
template <class W, class T>
struct vision_device_member {
  using weight_pointer = device_buffer<T> W::*;  // aliases: nvcc would parenthesize the declarators
  using bias_pointer = device_buffer<float> W::*;
  qwen3_vl::schema::module_id module;
  weight_pointer weight;
  bias_pointer bias;
};
using block_device_weights = qwen3_vl_vision_block_device_weights;
using merger_device_weights = qwen3_vl_merger_device_weights;
inline constexpr vision_device_member<block_device_weights, float> vision_block_norm_members[] = {
    {qwen3_vl::schema::module_id::norm1, &block_device_weights::norm1_w, &block_device_weights::norm1_b},
    {qwen3_vl::schema::module_id::norm2, &block_device_weights::norm2_w, &block_device_weights::norm2_b},
};
inline constexpr vision_device_member<block_device_weights, bf16> vision_block_matrix_members[] = {
    {qwen3_vl::schema::module_id::attn_qkv, &block_device_weights::qkv_w, &block_device_weights::qkv_b},
    {qwen3_vl::schema::module_id::attn_proj, &block_device_weights::proj_w, &block_device_weights::proj_b},
    {qwen3_vl::schema::module_id::mlp_fc1, &block_device_weights::fc1_w, &block_device_weights::fc1_b},
    {qwen3_vl::schema::module_id::mlp_fc2, &block_device_weights::fc2_w, &block_device_weights::fc2_b},
};
inline constexpr vision_device_member<merger_device_weights, float> merger_norm_members[] = {
    {qwen3_vl::schema::module_id::merger_norm, &merger_device_weights::norm_w, &merger_device_weights::norm_b},
};
inline constexpr vision_device_member<merger_device_weights, bf16> merger_matrix_members[] = {
    {qwen3_vl::schema::module_id::merger_fc1, &merger_device_weights::fc1_w, &merger_device_weights::fc1_b},
    {qwen3_vl::schema::module_id::merger_fc2, &merger_device_weights::fc2_w, &merger_device_weights::fc2_b},
};

namespace detail {

static_assert(members_hold(vision_block_norm_members, qwen3_vl::schema::gpu_dtype::f32, true));
static_assert(members_hold(vision_block_matrix_members, qwen3_vl::schema::gpu_dtype::bf16, true));
static_assert(members_hold(merger_norm_members, qwen3_vl::schema::gpu_dtype::f32, true));
static_assert(members_hold(merger_matrix_members, qwen3_vl::schema::gpu_dtype::bf16, true));
static_assert(qwen3_vl::schema::covers_family(qwen3_vl::schema::family::vision_block, vision_block_norm_members,
                                              vision_block_matrix_members));
static_assert(qwen3_vl::schema::covers_family(qwen3_vl::schema::family::merger, merger_norm_members,
                                              merger_matrix_members));
static_assert(qwen3_vl::schema::spec(qwen3_vl::schema::module_id::patch_embed).dtype == qwen3_vl::schema::gpu_dtype::bf16 &&
              qwen3_vl::schema::spec(qwen3_vl::schema::module_id::pos_embed).dtype == qwen3_vl::schema::gpu_dtype::host_f32);

// Binds every vision tensor through three loaders: bf(ref, name, shape) -> device_buffer<bf16>
// (matrices), f32(ref, name, shape) -> device_buffer<float> (norms, biases), host(ref, name,
// shape) -> tensor (the position grid). Names and shapes are the schema's.
template <class LoadBf16, class LoadF32, class LoadHost>
qwen3_vl_vision_device_weights bind_vision_weights(const qwen3_vl::config& cfg, LoadBf16 bf, LoadF32 f32, LoadHost host) {
  qwen3_vl::check_vision_config(cfg.vision);
  using qwen3_vl::schema::module_id;
  using qwen3_vl::schema::tensor_kind;
  const auto load = [&](auto& loader, module_id id, std::int64_t index = -1, tensor_kind kind = tensor_kind::weight) {
    const qwen3_vl::schema::tensor_ref ref{id, index, kind};
    return loader(ref, qwen3_vl::schema::tensor_name(ref), qwen3_vl::schema::tensor_shape(cfg, ref));
  };
  const auto load_members = [&](auto& into, auto& loader, const auto& members, std::int64_t index) {
    for (const auto& m : members) {
      into.*m.weight = load(loader, m.module, index);
      into.*m.bias = load(f32, m.module, index, tensor_kind::bias);
    }
  };
  qwen3_vl_vision_device_weights w;
  w.patch_w = load(bf, module_id::patch_embed);
  w.patch_b = load(f32, module_id::patch_embed, -1, tensor_kind::bias);
  w.pos_embed = load(host, module_id::pos_embed);
  for (std::int64_t b = 0; b < cfg.vision.depth; ++b) {
    qwen3_vl_vision_block_device_weights d;
    load_members(d, f32, vision_block_norm_members, b);
    load_members(d, bf, vision_block_matrix_members, b);
    w.blocks.push_back(std::move(d));
  }
  // The final merger is instance -1; DeepStack merger k is instance k, normed after the concat.
  qwen3_vl::schema::for_each_instance(cfg, qwen3_vl::schema::family::merger, [&](std::int64_t k) {
    qwen3_vl_merger_device_weights m;
    load_members(m, f32, merger_norm_members, k);
    load_members(m, bf, merger_matrix_members, k);
    m.out = cfg.vision.out_hidden_size;
    m.postshuffle_norm = k >= 0;
    if (k < 0) {
      w.merger = std::move(m);
    } else {
      w.deepstack.push_back(std::move(m));
    }
  });
  return w;
}

}  // namespace detail

inline std::size_t qwen3_vl_vision_device_weights::bytes() const {
  const auto members = [](const auto& w, const auto& table) {
    std::size_t n = 0;
    for (const auto& m : table) n += (w.*m.weight).bytes() + (w.*m.bias).bytes();
    return n;
  };
  const auto merger_bytes = [&](const qwen3_vl_merger_device_weights& m) {
    return members(m, merger_norm_members) + members(m, merger_matrix_members);
  };
  std::size_t n = patch_w.bytes() + patch_b.bytes() + merger_bytes(merger);
  for (const auto& b : blocks) n += members(b, vision_block_norm_members) + members(b, vision_block_matrix_members);
  for (const auto& m : deepstack) n += merger_bytes(m);
  return n;
}

namespace detail {

// The host tensor a vision row's tensor_ref names, through the host weights' member tables.
inline const tensor& host_vision_tensor(const qwen3_vl::vision_weights& host, const qwen3_vl::schema::tensor_ref& ref) {
  using qwen3_vl::schema::module_id;
  const bool weight = ref.kind == qwen3_vl::schema::tensor_kind::weight;
  const auto member = [&](const auto& w, const auto& table) -> const tensor& {
    for (const auto& m : table) {
      if (m.module == ref.module) return w.*(weight ? m.weight : m.bias);
    }
    throw error("qwen3_vl host weights: no member holds " + qwen3_vl::schema::tensor_name(ref));
  };
  if (ref.module == module_id::patch_embed) return weight ? host.patch_w : host.patch_b;
  if (ref.module == module_id::pos_embed) return host.pos_embed;
  const auto index = static_cast<std::size_t>(ref.index);
  if (qwen3_vl::schema::spec(ref.module).unit == qwen3_vl::schema::family::merger) {
    return member(ref.index < 0 ? host.merger : host.deepstack.at(index), qwen3_vl::merger_members);
  }
  return member(host.blocks.at(index), qwen3_vl::vision_block_members);
}

}  // namespace detail

// The host weights (fp32, e.g. qwen3_vl::load_vision_weights of a checkpoint) rounded to bf16
// (matrices; exact for bf16 checkpoints) and uploaded.
inline qwen3_vl_vision_device_weights upload_vision_weights(const qwen3_vl::config& cfg,
                                                            const qwen3_vl::vision_weights& host) {
  using qwen3_vl::schema::tensor_ref;
  using shape = std::vector<std::int64_t>;
  const auto bf = [&](const tensor_ref& ref, const std::string&, const shape&) {
    return device_buffer<bf16>(detail::rounded_to_bf16(detail::host_vision_tensor(host, ref)));
  };
  const auto f32 = [&](const tensor_ref& ref, const std::string&, const shape&) {
    return device_buffer<float>(detail::host_vision_tensor(host, ref).storage());
  };
  const auto grid = [&](const tensor_ref&, const std::string&, const shape&) { return host.pos_embed; };
  return detail::bind_vision_weights(cfg, bf, f32, grid);
}

}  // namespace aq::cuda
