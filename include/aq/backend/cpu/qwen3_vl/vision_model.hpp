// The Qwen3-VL vision tower on the CPU in fp32: patch embedding, bilinear learned position grid,
// 2-D rotary ViT blocks with per-image attention, the final 2×2 patch merger and the DeepStack
// mergers tapped after chosen blocks; and the input-gradient backward from the visual token
// gradients, reporting every linear (and the patch-embedding Conv3d as one) to the observer.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "aq/backend/cpu/attention.hpp"
#include "aq/backend/cpu/gelu.hpp"
#include "aq/backend/cpu/gemm.hpp"
#include "aq/backend/cpu/layer_norm.hpp"
#include "aq/backend/cpu/qwen3_vl/linear_observer.hpp"
#include "aq/backend/cpu/rope.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"
#include "aq/model/qwen3_vl/schema.hpp"
#include "aq/model/qwen3_vl/vision_geometry.hpp"
#include "aq/model/qwen3_vl/vision_weights.hpp"

namespace aq::qwen3_vl {

// The tower's outputs: one row per visual token (2×2 merged patches), images in input order.
struct vision_output {
  tensor embeds;                  // [n_visual, out_hidden]
  std::vector<tensor> deepstack;  // one per DeepStack merger, same shape
};

// Activations of one forward kept for the backward (opaque to callers).
struct vision_activations {
  struct merger_state {
    tensor ln_out, fc1, act;
    std::vector<float> mean, rstd;
  };
  struct block_state {
    tensor x_in, ln1, qkv, q_rot, k_rot, attn, proj_out, x_mid, ln2, fc1, act, fc2;
    std::vector<float> mean1, rstd1, mean2, rstd2, lse;
  };
  tensor pixels, patch_out;
  vision_rotary rotary;  // the rope tables and one attention segment per frame
  std::vector<block_state> blocks;
  std::vector<tensor> tap_in;  // block outputs fed to the DeepStack mergers
  tensor merger_in;
  merger_state merger;
  std::vector<merger_state> deepstack;
  vision_output out;
};

class vision_model {
 public:
  vision_model(const config& cfg, const vision_weights& weights) : cfg_(cfg), w_(weights) {
    const vision_config& v = cfg_.vision;
    if (static_cast<std::int64_t>(w_.blocks.size()) != v.depth || w_.deepstack.size() != v.deepstack_visual_indexes.size()) {
      throw error("qwen3_vl vision_model: weights do not match the config's depth / deepstack_visual_indexes");
    }
  }

  // pixels [Σ t·h·w, C·Tp·P·P] as the image processor returns them; grids per image.
  vision_activations forward(const tensor& pixels, const std::vector<grid_thw>& grids,
                             linear_observer* observer = nullptr) const;
  // dL/d embeds and dL/d deepstack outputs (same shapes as the outputs; empty = zero).
  void backward(vision_activations& a, const tensor& d_embeds, const std::vector<tensor>& d_deepstack,
                linear_observer* observer = nullptr) const;

 private:
  using module_id = schema::module_id;
  using module_ref = schema::module_ref;

  // Y = X·Wᵀ + b of one module as a new tensor, shown to the observer (which may replace it).
  static tensor linear(linear_observer* obs, const module_ref& module, const tensor& w, const tensor& b,
                       const const_matrix_view& x) {
    tensor y({x.rows, w.dim(0)});
    cpu::linear_forward(x, w.matrix(), y.matrix(), b.data());
    notify_linear(obs, false, module, w.matrix(), b.data(), x, y.matrix());
    return y;
  }
  // dX = dY·W of one module, after dL/dY is shown to the observer.
  static void linear_backward(linear_observer* obs, const module_ref& module, const tensor& w, const tensor& b,
                              const const_matrix_view& x, const tensor& y, const tensor& dy, tensor& dx) {
    notify_linear(obs, true, module, w.matrix(), b.data(), x, y.matrix(), dy.matrix());
    cpu::linear_backward_input(dy.matrix(), w.matrix(), dx.matrix());
  }
  std::int64_t merged_rows(const tensor& t) const {
    const std::int64_t m2 = cfg_.vision.spatial_merge_size * cfg_.vision.spatial_merge_size;
    return t.numel() / (t.dim(1) * m2);
  }

  // The rows and width a merger's LayerNorm sees in its input x [patches, D]: each patch (the final
  // merger) or each merge_size^2 concatenation of patches (DeepStack mergers, normed after the concat).
  std::pair<std::int64_t, std::int64_t> norm_shape(const merger_weights& mw, const tensor& x) const {
    if (mw.postshuffle_norm) return {merged_rows(x), mw.fc1_w.dim(0)};
    return {x.dim(0), x.dim(1)};
  }
  cpu::attention_config attention() const {
    const std::int64_t heads = cfg_.vision.num_heads, hd = cfg_.vision.hidden_size / heads;
    return {.heads = heads, .kv_heads = heads, .head_dim = hd, .scale = 1.0f / std::sqrt(static_cast<float>(hd))};
  }

  void merger_forward(std::int64_t k, const merger_weights& mw, const tensor& x, vision_activations::merger_state& s,
                      tensor& out, linear_observer* obs) const {
    const std::int64_t rows = merged_rows(x);
    const std::int64_t M = mw.fc1_w.dim(0);
    const auto [norm_rows, width] = norm_shape(mw, x);
    s.ln_out = tensor({x.dim(0), x.dim(1)});
    s.mean.resize(static_cast<std::size_t>(norm_rows));
    s.rstd.resize(static_cast<std::size_t>(norm_rows));
    cpu::layer_norm_forward(const_matrix_view{x.data(), norm_rows, width, width}, mw.norm_w.data(), mw.norm_b.data(),
                            1e-6f, matrix_view{s.ln_out.data(), norm_rows, width, width}, s.mean.data(), s.rstd.data());
    const const_matrix_view ln{s.ln_out.data(), rows, M, M};
    s.fc1 = linear(obs, {module_id::merger_fc1, k}, mw.fc1_w, mw.fc1_b, ln);
    s.act = tensor({rows, M});
    cpu::activation_forward<cpu::gelu_erf>(s.fc1.matrix(), s.act.matrix());
    out = linear(obs, {module_id::merger_fc2, k}, mw.fc2_w, mw.fc2_b, s.act.matrix());
  }

  // Adds dL/dx into g.
  void merger_backward(std::int64_t k, const merger_weights& mw, const tensor& x, vision_activations::merger_state& s,
                       const tensor& out, const tensor& d_out, tensor& g, linear_observer* obs) const {
    const std::int64_t rows = merged_rows(x);
    const std::int64_t M = mw.fc1_w.dim(0);
    tensor d_act({rows, M});
    linear_backward(obs, {module_id::merger_fc2, k}, mw.fc2_w, mw.fc2_b, s.act.matrix(), out, d_out, d_act);
    cpu::activation_backward<cpu::gelu_erf>(s.fc1.matrix(), d_act.matrix(), d_act.matrix());
    const const_matrix_view ln{s.ln_out.data(), rows, M, M};
    tensor d_ln({rows, M});
    linear_backward(obs, {module_id::merger_fc1, k}, mw.fc1_w, mw.fc1_b, ln, s.fc1, d_act, d_ln);
    const auto [norm_rows, width] = norm_shape(mw, x);
    cpu::layer_norm_backward(const_matrix_view{x.data(), norm_rows, width, width}, mw.norm_w.data(), s.mean.data(),
                             s.rstd.data(), const_matrix_view{d_ln.data(), norm_rows, width, width},
                             matrix_view{g.data(), norm_rows, width, width}, true);
  }

  config cfg_;
  const vision_weights& w_;
};

inline vision_activations vision_model::forward(const tensor& pixels, const std::vector<grid_thw>& grids,
                                                linear_observer* observer) const {
  const vision_config& v = cfg_.vision;
  const std::int64_t D = v.hidden_size;
  const std::int64_t heads = v.num_heads;
  const std::int64_t hd = D / heads;
  const std::int64_t I = v.intermediate_size;
  const std::int64_t m = v.spatial_merge_size;
  std::int64_t np = 0;
  for (const grid_thw& g : grids) {
    if (g[0] <= 0 || g[1] <= 0 || g[2] <= 0 || g[1] % m != 0 || g[2] % m != 0) {
      throw error("qwen3_vl vision: image grid (" + std::to_string(g[0]) + ", " + std::to_string(g[1]) + ", " +
                  std::to_string(g[2]) + ") is not positive with h, w multiples of spatial_merge_size");
    }
    np += g[0] * g[1] * g[2];
  }
  if (pixels.rank() != 2 || pixels.dim(0) != np || pixels.dim(1) != w_.patch_w.dim(1)) {
    throw error("qwen3_vl vision: pixel_values " + shape_string(pixels.shape()) + ", expected [" + std::to_string(np) +
                ", " + std::to_string(w_.patch_w.dim(1)) + "] for the given image grids");
  }
  vision_activations a;
  a.pixels = pixels;
  a.patch_out = linear(observer, {module_id::patch_embed}, w_.patch_w, w_.patch_b, pixels.matrix());
  tensor h = vision_position_embeddings(w_.pos_embed, grids, m);
  for (std::int64_t i = 0; i < np * D; ++i) h.data()[i] = a.patch_out.data()[i] + h.data()[i];

  a.rotary = vision_rotary_tables(grids, m, hd);
  const cpu::attention_config ac = attention();

  a.blocks.resize(static_cast<std::size_t>(v.depth));
  a.tap_in.resize(w_.deepstack.size());
  a.deepstack.resize(w_.deepstack.size());
  a.out.deepstack.resize(w_.deepstack.size());
  for (std::int64_t b = 0; b < v.depth; ++b) {
    const vision_block_weights& bw = w_.blocks[static_cast<std::size_t>(b)];
    vision_activations::block_state& s = a.blocks[static_cast<std::size_t>(b)];
    s.x_in = h;
    s.ln1 = tensor({np, D});
    s.mean1.resize(static_cast<std::size_t>(np));
    s.rstd1.resize(static_cast<std::size_t>(np));
    cpu::layer_norm_forward(s.x_in.matrix(), bw.norm1_w.data(), bw.norm1_b.data(), 1e-6f, s.ln1.matrix(), s.mean1.data(),
                            s.rstd1.data());
    s.qkv = linear(observer, {module_id::attn_qkv, b}, bw.qkv_w, bw.qkv_b, s.ln1.matrix());
    s.q_rot = tensor({np, D});
    s.k_rot = tensor({np, D});
    for (std::int64_t i = 0; i < np; ++i) {
      std::copy_n(s.qkv.data() + i * 3 * D, D, s.q_rot.data() + i * D);
      std::copy_n(s.qkv.data() + i * 3 * D + D, D, s.k_rot.data() + i * D);
    }
    cpu::rope_forward(s.q_rot.matrix(), heads, a.rotary.cos, a.rotary.sin);
    cpu::rope_forward(s.k_rot.matrix(), heads, a.rotary.cos, a.rotary.sin);
    const const_matrix_view vv{s.qkv.data() + 2 * D, np, D, 3 * D};
    s.attn = tensor({np, D});
    s.lse.resize(static_cast<std::size_t>(heads * np));
    cpu::attention_forward(ac, a.rotary.segments, s.q_rot.matrix(), s.k_rot.matrix(), vv, s.attn.matrix(),
                           s.lse.data());
    s.proj_out = linear(observer, {module_id::attn_proj, b}, bw.proj_w, bw.proj_b, s.attn.matrix());
    s.x_mid = s.x_in;
    for (std::int64_t i = 0; i < np * D; ++i) s.x_mid.data()[i] += s.proj_out.data()[i];
    s.ln2 = tensor({np, D});
    s.mean2.resize(static_cast<std::size_t>(np));
    s.rstd2.resize(static_cast<std::size_t>(np));
    cpu::layer_norm_forward(s.x_mid.matrix(), bw.norm2_w.data(), bw.norm2_b.data(), 1e-6f, s.ln2.matrix(), s.mean2.data(),
                            s.rstd2.data());
    s.fc1 = linear(observer, {module_id::mlp_fc1, b}, bw.fc1_w, bw.fc1_b, s.ln2.matrix());
    s.act = tensor({np, I});
    cpu::activation_forward<cpu::gelu_tanh>(s.fc1.matrix(), s.act.matrix());
    s.fc2 = linear(observer, {module_id::mlp_fc2, b}, bw.fc2_w, bw.fc2_b, s.act.matrix());
    h = s.x_mid;
    for (std::int64_t i = 0; i < np * D; ++i) h.data()[i] += s.fc2.data()[i];
    for (std::size_t k = 0; k < v.deepstack_visual_indexes.size(); ++k) {
      if (v.deepstack_visual_indexes[k] != b) continue;
      a.tap_in[k] = h;
      merger_forward(static_cast<std::int64_t>(k), w_.deepstack[k], a.tap_in[k], a.deepstack[k], a.out.deepstack[k],
                     observer);
    }
  }
  a.merger_in = std::move(h);
  merger_forward(-1, w_.merger, a.merger_in, a.merger, a.out.embeds, observer);
  return a;
}

inline void vision_model::backward(vision_activations& a, const tensor& d_embeds, const std::vector<tensor>& d_deepstack,
                                   linear_observer* observer) const {
  const vision_config& v = cfg_.vision;
  const std::int64_t D = v.hidden_size;
  const std::int64_t heads = v.num_heads;
  const std::int64_t I = v.intermediate_size;
  const std::int64_t np = a.patch_out.dim(0);
  const cpu::attention_config ac = attention();

  tensor g({np, D});
  if (!d_embeds.empty()) merger_backward(-1, w_.merger, a.merger_in, a.merger, a.out.embeds, d_embeds, g, observer);
  tensor d_act({np, I}), d_ln({np, D}), d_attn({np, D}), dqkv({np, 3 * D});
  for (std::int64_t b = v.depth - 1; b >= 0; --b) {
    for (std::size_t k = 0; k < v.deepstack_visual_indexes.size(); ++k) {
      if (v.deepstack_visual_indexes[k] != b || k >= d_deepstack.size() || d_deepstack[k].empty()) continue;
      merger_backward(static_cast<std::int64_t>(k), w_.deepstack[k], a.tap_in[k], a.deepstack[k], a.out.deepstack[k],
                      d_deepstack[k], g, observer);
    }
    const vision_block_weights& bw = w_.blocks[static_cast<std::size_t>(b)];
    vision_activations::block_state& s = a.blocks[static_cast<std::size_t>(b)];
    linear_backward(observer, {module_id::mlp_fc2, b}, bw.fc2_w, bw.fc2_b, s.act.matrix(), s.fc2, g, d_act);
    cpu::activation_backward<cpu::gelu_tanh>(s.fc1.matrix(), d_act.matrix(), d_act.matrix());
    linear_backward(observer, {module_id::mlp_fc1, b}, bw.fc1_w, bw.fc1_b, s.ln2.matrix(), s.fc1, d_act, d_ln);
    cpu::layer_norm_backward(s.x_mid.matrix(), bw.norm2_w.data(), s.mean2.data(), s.rstd2.data(), d_ln.matrix(),
                             g.matrix(), true);
    linear_backward(observer, {module_id::attn_proj, b}, bw.proj_w, bw.proj_b, s.attn.matrix(), s.proj_out, g, d_attn);
    const matrix_view dq{dqkv.data(), np, D, 3 * D};
    const matrix_view dk{dqkv.data() + D, np, D, 3 * D};
    const matrix_view dv{dqkv.data() + 2 * D, np, D, 3 * D};
    const const_matrix_view vv{s.qkv.data() + 2 * D, np, D, 3 * D};
    cpu::attention_backward(ac, a.rotary.segments, s.q_rot.matrix(), s.k_rot.matrix(), vv, s.attn.matrix(),
                            s.lse.data(), d_attn.matrix(), dq, dk, dv);
    cpu::rope_backward(dq, heads, a.rotary.cos, a.rotary.sin);
    cpu::rope_backward(dk, heads, a.rotary.cos, a.rotary.sin);
    linear_backward(observer, {module_id::attn_qkv, b}, bw.qkv_w, bw.qkv_b, s.ln1.matrix(), s.qkv, dqkv, d_ln);
    cpu::layer_norm_backward(s.x_in.matrix(), bw.norm1_w.data(), s.mean1.data(), s.rstd1.data(), d_ln.matrix(),
                             g.matrix(), true);
    s = vision_activations::block_state();
  }
  notify_linear(observer, true, module_ref{module_id::patch_embed}, w_.patch_w.matrix(), w_.patch_b.data(),
                a.pixels.matrix(), a.patch_out.matrix(), g.matrix());
}

}  // namespace aq::qwen3_vl
