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

#include "aq/backend/cuda/device_buffer.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/config.hpp"
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
  std::size_t bytes() const {
    std::size_t n = patch_w.bytes() + patch_b.bytes();
    for (const auto& b : blocks) {
      n += b.norm1_w.bytes() + b.norm1_b.bytes() + b.norm2_w.bytes() + b.norm2_b.bytes() + b.qkv_b.bytes() +
           b.proj_b.bytes() + b.fc1_b.bytes() + b.fc2_b.bytes() + b.qkv_w.bytes() + b.proj_w.bytes() + b.fc1_w.bytes() +
           b.fc2_w.bytes();
    }
    const auto merger_bytes = [](const qwen3_vl_merger_device_weights& m) {
      return m.norm_w.bytes() + m.norm_b.bytes() + m.fc1_b.bytes() + m.fc2_b.bytes() + m.fc1_w.bytes() + m.fc2_w.bytes();
    };
    n += merger_bytes(merger);
    for (const auto& m : deepstack) n += merger_bytes(m);
    return n;
  }
};

// The host weights (fp32, e.g. qwen3_vl::load_vision_weights of a checkpoint) rounded to bf16
// (matrices; exact for bf16 checkpoints) and uploaded.
inline qwen3_vl_vision_device_weights upload_vision_weights(const qwen3_vl::vision_weights& host) {
  const auto bf = [](const tensor& t) {
    std::vector<bf16> v(static_cast<std::size_t>(t.numel()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = float_to_bf16(t.data()[i]);
    return device_buffer<bf16>(v);
  };
  const auto f32 = [](const tensor& t) { return device_buffer<float>(t.storage()); };
  const auto merger = [&](const qwen3_vl::merger_weights& m) {
    qwen3_vl_merger_device_weights d;
    d.norm_w = f32(m.norm_w);
    d.norm_b = f32(m.norm_b);
    d.fc1_w = bf(m.fc1_w);
    d.fc1_b = f32(m.fc1_b);
    d.fc2_w = bf(m.fc2_w);
    d.fc2_b = f32(m.fc2_b);
    d.out = m.fc2_w.dim(0);
    d.postshuffle_norm = m.postshuffle_norm;
    return d;
  };
  qwen3_vl_vision_device_weights w;
  w.patch_w = bf(host.patch_w);
  w.patch_b = f32(host.patch_b);
  w.pos_embed = host.pos_embed;
  for (const qwen3_vl::vision_block_weights& b : host.blocks) {
    qwen3_vl_vision_block_device_weights d;
    d.norm1_w = f32(b.norm1_w);
    d.norm1_b = f32(b.norm1_b);
    d.norm2_w = f32(b.norm2_w);
    d.norm2_b = f32(b.norm2_b);
    d.qkv_w = bf(b.qkv_w);
    d.qkv_b = f32(b.qkv_b);
    d.proj_w = bf(b.proj_w);
    d.proj_b = f32(b.proj_b);
    d.fc1_w = bf(b.fc1_w);
    d.fc1_b = f32(b.fc1_b);
    d.fc2_w = bf(b.fc2_w);
    d.fc2_b = f32(b.fc2_b);
    w.blocks.push_back(std::move(d));
  }
  w.merger = merger(host.merger);
  for (const qwen3_vl::merger_weights& m : host.deepstack) w.deepstack.push_back(merger(m));
  return w;
}

namespace detail {

// Binds every vision tensor through three loaders: bf(name, shape) -> device_buffer<bf16>
// (matrices), f32(name, shape) -> device_buffer<float> (norms, biases), host(name, shape) ->
// tensor (the position grid). Names and shapes as qwen3_vl::load_vision_weights.
template <class LoadBf16, class LoadF32, class LoadHost>
qwen3_vl_vision_device_weights bind_vision_weights(const qwen3_vl::config& cfg, LoadBf16 bf, LoadF32 f32, LoadHost host) {
  const qwen3_vl::vision_config& v = cfg.vision;
  if (v.hidden_size <= 0 || v.num_heads <= 0 || v.hidden_size % v.num_heads != 0 || v.depth <= 0 ||
      v.intermediate_size <= 0 || v.out_hidden_size <= 0 || v.num_position_embeddings <= 0) {
    throw error("qwen3_vl vision config: depth, hidden_size (a multiple of num_heads), intermediate_size, "
                "out_hidden_size and num_position_embeddings must be positive");
  }
  using shape = std::vector<std::int64_t>;
  const std::int64_t D = v.hidden_size, I = v.intermediate_size;
  const std::int64_t M = D * v.spatial_merge_size * v.spatial_merge_size;
  const std::string p = qwen3_vl::vision_weight_prefix();
  qwen3_vl_vision_device_weights w;
  w.patch_w = bf(p + "patch_embed.proj.weight", shape{D, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size});
  w.patch_b = f32(p + "patch_embed.proj.bias", shape{D});
  w.pos_embed = host(p + "pos_embed.weight", shape{v.num_position_embeddings, D});
  for (std::int64_t b = 0; b < v.depth; ++b) {
    const std::string bp = p + "blocks." + std::to_string(b) + ".";
    qwen3_vl_vision_block_device_weights d;
    d.norm1_w = f32(bp + "norm1.weight", shape{D});
    d.norm1_b = f32(bp + "norm1.bias", shape{D});
    d.norm2_w = f32(bp + "norm2.weight", shape{D});
    d.norm2_b = f32(bp + "norm2.bias", shape{D});
    d.qkv_w = bf(bp + "attn.qkv.weight", shape{3 * D, D});
    d.qkv_b = f32(bp + "attn.qkv.bias", shape{3 * D});
    d.proj_w = bf(bp + "attn.proj.weight", shape{D, D});
    d.proj_b = f32(bp + "attn.proj.bias", shape{D});
    d.fc1_w = bf(bp + "mlp.linear_fc1.weight", shape{I, D});
    d.fc1_b = f32(bp + "mlp.linear_fc1.bias", shape{I});
    d.fc2_w = bf(bp + "mlp.linear_fc2.weight", shape{D, I});
    d.fc2_b = f32(bp + "mlp.linear_fc2.bias", shape{D});
    w.blocks.push_back(std::move(d));
  }
  const auto merger = [&](const std::string& mp, bool postshuffle) {
    qwen3_vl_merger_device_weights m;
    const std::int64_t norm_width = postshuffle ? M : D;
    m.norm_w = f32(mp + "norm.weight", shape{norm_width});
    m.norm_b = f32(mp + "norm.bias", shape{norm_width});
    m.fc1_w = bf(mp + "linear_fc1.weight", shape{M, M});
    m.fc1_b = f32(mp + "linear_fc1.bias", shape{M});
    m.fc2_w = bf(mp + "linear_fc2.weight", shape{v.out_hidden_size, M});
    m.fc2_b = f32(mp + "linear_fc2.bias", shape{v.out_hidden_size});
    m.out = v.out_hidden_size;
    m.postshuffle_norm = postshuffle;
    return m;
  };
  w.merger = merger(p + "merger.", false);
  for (std::size_t k = 0; k < v.deepstack_visual_indexes.size(); ++k) {
    w.deepstack.push_back(merger(p + "deepstack_merger_list." + std::to_string(k) + ".", true));
  }
  return w;
}

}  // namespace detail

}  // namespace aq::cuda
