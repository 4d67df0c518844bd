// The Qwen3-VL vision tower on the GPU: the twin of qwen3_vl::vision_model (patch embedding,
// bilinear learned positions, 2-D rotary pre-LN ViT blocks with per-image attention, the final
// 2×2 patch merger and the DeepStack mergers) with bf16 GEMM operands, fp32 accumulation, norms,
// attention and residuals; forward keeps every activation (the tower is small next to the
// decoder) for the input-gradient backward, and every linear (the patch Conv3d as one) is
// reported to a device_linear_observer with its bias.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "aq/backend/cuda/kernels/attention.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/elementwise.cuh"
#include "aq/backend/cuda/kernels/gelu.cuh"
#include "aq/backend/cuda/kernels/gemm_cublaslt.cuh"
#include "aq/backend/cuda/kernels/kernel_profile.cuh"
#include "aq/backend/cuda/kernels/layer_norm.cuh"
#include "aq/backend/cuda/kernels/rope.cuh"
#include "aq/backend/cuda/model/linear_observer.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text.cuh"
#include "aq/backend/cuda/model/qwen3_vl_vision_weights.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/model/qwen3_vl/batch.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/schema.hpp"
#include "aq/model/qwen3_vl/vision_geometry.hpp"
#include "aq/model/qwen3_vl/vision_weights.hpp"

namespace aq::cuda {


class qwen3_vl_vision_model {
 public:
  // Shares the decoder's stream, GEMM handle and profile (one stream keeps the order simple).
  qwen3_vl_vision_model(const qwen3_vl::config& cfg, const qwen3_vl_vision_device_weights& weights,
                         qwen3_vl_text_model& decoder)
      : cfg_(cfg), w_(weights), dec_(decoder) {
    const qwen3_vl::vision_config& v = cfg_.vision;
    if (static_cast<std::int64_t>(w_.blocks.size()) != v.depth || w_.deepstack.size() != v.deepstack_visual_indexes.size()) {
      throw error("cuda qwen3_vl vision model: weights do not match the config's depth / deepstack_visual_indexes");
    }
    if (w_.merger.out != cfg_.text.hidden_size) {
      throw error("cuda qwen3_vl vision model: merger output " + std::to_string(w_.merger.out) +
                  " differs from the decoder's hidden_size " + std::to_string(cfg_.text.hidden_size));
    }
  }

  // pixels [Σ t·h·w, C·Tp·P·P] (host, rounded to bf16 as the GEMM operand), one grid per image.
  // Outputs stay on the device until the next forward: embeds() and deepstack(k), fp32.
  void forward(const tensor& pixels, const std::vector<qwen3_vl::grid_thw>& grids, device_linear_observer* obs);
  // dL/d embeds and dL/d deepstack[k] (device fp32, [visual tokens, hidden]; nullptr = zero).
  void backward(const float* d_embeds, const std::vector<const float*>& d_deepstack, device_linear_observer* obs);

  // Device bytes a forward + backward over `patches` patches holds (kept activations of every
  // block and merger, backward scratch), for memory plans made before the first image runs.
  static std::size_t device_bytes(const qwen3_vl::config& cfg, std::int64_t patches, bool saved_blocks = true,
                                  bool tensor_core_attention = false) {
    const qwen3_vl::vision_config& v = cfg.vision;
    const auto D = static_cast<std::size_t>(v.hidden_size), I = static_cast<std::size_t>(v.intermediate_size);
    const auto n = static_cast<std::size_t>(patches), H = static_cast<std::size_t>(cfg.text.hidden_size);
    // Tensor-core attention keeps bf16 q, k, v instead of the fp32 attention output.
    const std::size_t block = tensor_core_attention ? n * ((10 * D + I) * sizeof(float) + (6 * D + I) * sizeof(bf16))
                                                    : n * ((11 * D + I) * sizeof(float) + (3 * D + I) * sizeof(bf16));
    const std::size_t merger = n * D * (sizeof(float) + 2 * sizeof(bf16)) + n / 4 * H * 2 * sizeof(float);
    const auto patch = static_cast<std::size_t>(v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size);
    const std::size_t inputs = n * (D * 5 * sizeof(float) + patch * sizeof(bf16));  // + merger input
    // backward scratch (g, dq/dk/dv, d_attn, d_ln, d_act … fp32 and bf16) and the feature gradients
    const std::size_t scratch = n * (9 * D + 2 * I) * sizeof(float) + n / 4 * H * 4 * sizeof(float) +
                                (tensor_core_attention ? n * 4 * D * sizeof(bf16) : 0);
    const std::size_t blocks = saved_blocks ? static_cast<std::size_t>(v.depth) * block
                                            : static_cast<std::size_t>(v.depth) * n * D * sizeof(float) + block;
    return blocks + (1 + v.deepstack_visual_indexes.size()) * merger + inputs + scratch;
  }
  std::int64_t visual_tokens() const { return merged_; }
  // Keep every block's activations from the forward (default), or only each block's input and
  // recompute the block in the backward (one extra block forward each; same numbers).
  void set_saved_blocks(bool on) { saved_blocks_ = on; }
  // Attention on the bf16 tensor-core kernels (bf16 q, k, v, O and dO, fp32 accumulation), as the
  // decoder's default; off (default here): fp32 storage on CUDA cores.
  void set_tensor_core_attention(bool on) { tc_attention_ = on; }
  // With tensor-core attention: hand batches of equal frames to the registered fused-attention
  // library (cuDNN) where it takes them (kernels/fused_attention_library.hpp).
  // workspace_limit: device bytes it may hold (0: no limit; the memory plan counts them).
  void set_fused_attention_library(bool on, std::int64_t workspace_limit = 0) {
    fused_library_ = on;
    fused_workspace_limit_ = workspace_limit;
  }
  device_matrix<const float> embeds() const { return cview(merger_.out, merged_, cfg_.text.hidden_size); }
  device_matrix<const float> deepstack(std::size_t k) const {
    return cview(deepstack_[k].out, merged_, cfg_.text.hidden_size);
  }
  std::size_t deepstack_count() const { return deepstack_.size(); }
  // Device buffers for dL/d embeds and dL/d deepstack[k] of the current forward's visual tokens.
  float* embeds_grad() {
    d_embeds_.grow_to(merged_ * cfg_.text.hidden_size);
    return d_embeds_.data();
  }
  float* deepstack_grad(std::size_t k) {
    if (d_deepstack_.size() < deepstack_.size()) d_deepstack_.resize(deepstack_.size());
    d_deepstack_[k].grow_to(merged_ * cfg_.text.hidden_size);
    return d_deepstack_[k].data();
  }

 private:
  struct merger_state {
    device_buffer<bf16> ln_out, act;
    device_buffer<float> fc1, out, mean, rstd;
  };
  struct block_state {
    device_buffer<float> x_in, qkv, q, k, v, attn_f, proj_out, x_mid, fc1, fc2, mean1, rstd1, mean2, rstd2, lse;
    device_buffer<bf16> ln1, attn, ln2, act;
    device_buffer<bf16> qb, kb, vb;  // tensor-core attention operands
  };

  using module_id = qwen3_vl::schema::module_id;
  // index: block b, DeepStack merger k, or -1 for the final merger.
  static std::string module_name(std::int64_t index, module_id m) { return qwen3_vl::schema::module_path(m, index); }
  cudaStream_t stream() const { return dec_.stream(); }
  template <class F>
  void timed(kernel_class c, F&& f) {
    profiled(dec_.profile(), c, stream(), f);
  }
  // y = x·Wᵀ + bias into y [x.rows, out] (W [out, x.cols]), then reported to the observer.
  void linear(device_linear_observer* obs, const std::string& name, device_matrix<const bf16> x,
              const device_buffer<bf16>& w, const device_buffer<float>& bias, std::int64_t out,
              device_buffer<float>& y) {
    timed(kernel_class::gemm, [&] {
      dec_.gemm().linear_forward(x, cview(w, out, x.cols), mview(y, x.rows, out), bias.data(), false, stream());
    });
    if (obs != nullptr) obs->on_forward(call_of(name, w.data(), out, bias.data(), x, cview(y, x.rows, out), {}));
  }
  // Its backward: reported to the observer with dy = dL/dy (y its forward output), then dx = dy·W.
  template <class Out>
  void linear_back(device_linear_observer* obs, const std::string& name, device_matrix<const bf16> x,
                   const device_buffer<bf16>& w, const device_buffer<float>& bias, device_matrix<const float> y,
                   device_matrix<const bf16> dy, device_matrix<Out> dx) {
    if (obs != nullptr) obs->on_backward(call_of(name, w.data(), dy.cols, bias.data(), x, y, dy));
    timed(kernel_class::gemm,
          [&] { dec_.gemm().linear_backward_input(dy, cview(w, dy.cols, dx.cols), dx, false, stream()); });
  }
  template <class In, class Out>
  void convert(device_matrix<const In> x, device_matrix<Out> y) {
    timed(kernel_class::elementwise,
          [&] { launch_elementwise(x.rows, x.cols, detail::convert_op<In, Out>{x, y}, stream()); });
  }
  // The observer's view of one linear: W [out, x.cols] and its bias.
  static device_linear_call call_of(const std::string& name, const bf16* w, std::int64_t out, const float* bias,
                                    device_matrix<const bf16> x, device_matrix<const float> y,
                                    device_matrix<const bf16> g) {
    device_linear_call call{name, {w, out, x.cols, x.cols}, 0, out, x, y, g};
    call.bias = bias;
    return call;
  }

  void merger_forward(std::int64_t k, const qwen3_vl_merger_device_weights& mw, device_matrix<const float> x,
                      merger_state& s, device_linear_observer* obs);
  void block_forward(std::int64_t b, device_linear_observer* obs, bool write_output);
  // Block b's activations: its own set when blocks are saved, else the one shared set (its input
  // x_in always stays in blocks_[b]).
  block_state& state(std::int64_t b) { return saved_blocks_ ? blocks_[static_cast<std::size_t>(b)] : work_; }
  attention_config attention() const {
    attention_config ac;
    ac.heads = cfg_.vision.num_heads;
    ac.kv_heads = cfg_.vision.num_heads;
    ac.head_dim = cfg_.vision.hidden_size / cfg_.vision.num_heads;
    ac.scale = 1.0f / std::sqrt(static_cast<float>(ac.head_dim));
    ac.causal = false;
    ac.tensor_cores = tc_attention_;
    ac.fused_library = tc_attention_ && fused_library_;
    ac.fused_workspace_limit = fused_workspace_limit_;
    return ac;
  }
  // The merger's norm input: the patches [n, D], or (DeepStack, normed after the concat) the
  // merged rows [n / m², D·m²] of the same memory.
  device_matrix<const float> norm_input(const qwen3_vl_merger_device_weights& mw, device_matrix<const float> x) const {
    const std::int64_t m2 = cfg_.vision.spatial_merge_size * cfg_.vision.spatial_merge_size;
    return mw.postshuffle_norm ? device_matrix<const float>{x.data, x.rows / m2, x.cols * m2, x.cols * m2} : x;
  }
  void merger_backward(std::int64_t k, const qwen3_vl_merger_device_weights& mw, device_matrix<const float> x,
                       merger_state& s, const float* d_out, device_matrix<float> g, device_linear_observer* obs);

  qwen3_vl::config cfg_;
  const qwen3_vl_vision_device_weights& w_;
  qwen3_vl_text_model& dec_;
  std::int64_t patches_ = 0, merged_ = 0;
  attention_segments segs_{};
  device_buffer<int> cu_seqlens_;
  device_buffer<bf16> pixels_;
  device_buffer<float> patch_out_, pos_, cos_, sin_;
  std::vector<block_state> blocks_;
  block_state work_;
  bool saved_blocks_ = true;
  std::vector<device_buffer<float>> tap_in_;
  device_buffer<float> merger_in_;
  merger_state merger_;
  std::vector<merger_state> deepstack_;
  // Backward scratch
  device_buffer<float> g_, d_act_f_, d_ln_, d_attn_, dq_, dk_, dv_, d_m_, delta_, d_embeds_;
  std::vector<device_buffer<float>> d_deepstack_;
  device_buffer<bf16> gb_, d_act_, dqkv_, d_mb_;
  device_buffer<bf16> d_attn_b_, dqb_, dkb_, dvb_;  // tensor-core attention backward
  bool tc_attention_ = false;
  bool fused_library_ = false;
  std::int64_t fused_workspace_limit_ = 0;
};

inline void qwen3_vl_vision_model::merger_forward(std::int64_t k, const qwen3_vl_merger_device_weights& mw,
                                                  device_matrix<const float> x, merger_state& s,
                                                  device_linear_observer* obs) {
  const std::int64_t m2 = cfg_.vision.spatial_merge_size * cfg_.vision.spatial_merge_size;
  const std::int64_t D = x.cols, rows = x.rows / m2, M = D * m2, out = mw.out;
  s.ln_out.grow_to(x.rows * D);
  s.fc1.grow_to(rows * M);
  s.act.grow_to(rows * M);
  s.out.grow_to(rows * out);
  const device_matrix<const float> xn = norm_input(mw, x);
  s.mean.grow_to(xn.rows);
  s.rstd.grow_to(xn.rows);
  timed(kernel_class::norm_rope, [&] {
    layer_norm_forward(xn, mw.norm_w.data(), mw.norm_b.data(), 1e-6f, mview(s.ln_out, xn.rows, xn.cols), s.mean.data(),
                       s.rstd.data(), stream());
  });
  linear(obs, module_name(k, module_id::merger_fc1), cview(s.ln_out, rows, M), mw.fc1_w, mw.fc1_b, M, s.fc1);
  timed(kernel_class::elementwise,
        [&] { activation_forward<gelu_erf>(cview(s.fc1, rows, M), mview(s.act, rows, M), stream()); });
  linear(obs, module_name(k, module_id::merger_fc2), cview(s.act, rows, M), mw.fc2_w, mw.fc2_b, out, s.out);
}

// Adds dL/dx into g.
inline void qwen3_vl_vision_model::merger_backward(std::int64_t k, const qwen3_vl_merger_device_weights& mw,
                                                   device_matrix<const float> x, merger_state& s, const float* d_out,
                                                   device_matrix<float> g, device_linear_observer* obs) {
  const std::int64_t m2 = cfg_.vision.spatial_merge_size * cfg_.vision.spatial_merge_size;
  const std::int64_t D = x.cols, rows = x.rows / m2, M = D * m2, out = mw.out;
  d_mb_.grow_to(rows * out);
  d_act_f_.grow_to(rows * M);
  d_act_.grow_to(rows * M);
  d_ln_.grow_to(rows * M);
  convert(device_matrix<const float>{d_out, rows, out, out}, mview(d_mb_, rows, out));
  linear_back(obs, module_name(k, module_id::merger_fc2), cview(s.act, rows, M), mw.fc2_w, mw.fc2_b,
              cview(s.out, rows, out), cview(d_mb_, rows, out), mview(d_act_f_, rows, M));
  timed(kernel_class::elementwise, [&] {
    activation_backward<gelu_erf>(cview(s.fc1, rows, M), cview(d_act_f_, rows, M), mview(d_act_, rows, M), stream());
  });
  linear_back(obs, module_name(k, module_id::merger_fc1), cview(s.ln_out, rows, M), mw.fc1_w, mw.fc1_b,
              cview(s.fc1, rows, M), cview(d_act_, rows, M), mview(d_ln_, rows, M));
  const device_matrix<const float> xn = norm_input(mw, x);
  timed(kernel_class::norm_rope, [&] {
    layer_norm_backward(xn, mw.norm_w.data(), s.mean.data(), s.rstd.data(), cview(d_ln_, xn.rows, xn.cols),
                        device_matrix<float>{g.data, xn.rows, xn.cols, xn.cols}, true, stream());
  });
}

// One ViT block from its kept input into its activation set (state(b)); write_output: also the
// block output (the next block's input). The recompute in the backward passes false.
inline void qwen3_vl_vision_model::block_forward(std::int64_t b, device_linear_observer* obs, bool write_output) {
  const qwen3_vl::vision_config& v = cfg_.vision;
  const std::int64_t D = v.hidden_size, heads = v.num_heads, hd = D / heads, I = v.intermediate_size;
  const std::int64_t np = patches_;
  const device_matrix<const float> tc{cos_.data(), np, hd, hd}, ts{sin_.data(), np, hd, hd};
  const attention_config ac = attention();
  const qwen3_vl_vision_block_device_weights& bw = w_.blocks[static_cast<std::size_t>(b)];
  block_state& s = state(b);
  device_buffer<float>& x_in_buf = blocks_[static_cast<std::size_t>(b)].x_in;
  for (auto* f : {&x_in_buf, &s.q, &s.k, &s.v, &s.proj_out, &s.x_mid, &s.fc2}) f->grow_to(np * D);
  for (auto* h : {&s.ln1, &s.attn, &s.ln2}) h->grow_to(np * D);
  for (auto* f : {&s.mean1, &s.rstd1, &s.mean2, &s.rstd2}) f->grow_to(np);
  s.qkv.grow_to(np * 3 * D);
  s.lse.grow_to(np * heads);
  s.fc1.grow_to(np * I);
  s.act.grow_to(np * I);
  if (tc_attention_) {
    for (auto* h : {&s.qb, &s.kb, &s.vb}) h->grow_to(np * D);
  } else {
    s.attn_f.grow_to(np * D);
  }
  const auto x_in = cview(x_in_buf, np, D);
  timed(kernel_class::norm_rope, [&] {
    layer_norm_forward(x_in, bw.norm1_w.data(), bw.norm1_b.data(), 1e-6f, mview(s.ln1, np, D), s.mean1.data(),
                       s.rstd1.data(), stream());
  });
  linear(obs, module_name(b, module_id::attn_qkv), cview(s.ln1, np, D), bw.qkv_w, bw.qkv_b, 3 * D, s.qkv);
  const auto qkv = cview(s.qkv, np, 3 * D);
  timed(kernel_class::norm_rope, [&] {
    // q, k, v: the column blocks of the fused qkv output (strided views).
    for (const auto& [offset, dst] : {std::pair{std::int64_t{0}, &s.q}, std::pair{D, &s.k}, std::pair{2 * D, &s.v}}) {
      launch_elementwise(np, D, detail::convert_op<float, float>{{qkv.data + offset, np, D, 3 * D}, mview(*dst, np, D)},
                         stream());
    }
    rope_forward(mview(s.q, np, D), heads, tc, ts, stream());
    rope_forward(mview(s.k, np, D), heads, tc, ts, stream());
  });
  if (tc_attention_) {
    // bf16 operands straight into the tensor-core kernel, which writes the bf16 output the
    // projection GEMM reads.
    timed(kernel_class::elementwise, [&] {
      for (const auto& [src, dst] : {std::pair{&s.q, &s.qb}, std::pair{&s.k, &s.kb}, std::pair{&s.v, &s.vb}}) {
        launch_elementwise(np, D, detail::convert_op<float, bf16>{cview(*src, np, D), mview(*dst, np, D)}, stream());
      }
    });
    timed(kernel_class::attention, [&] {
      attention_forward<bf16>(ac, segs_, cview(s.qb, np, D), cview(s.kb, np, D), cview(s.vb, np, D), mview(s.attn, np, D),
                              s.lse.data(), stream());
    });
  } else {
    timed(kernel_class::attention, [&] {
      attention_forward<float>(ac, segs_, cview(s.q, np, D), cview(s.k, np, D), cview(s.v, np, D), mview(s.attn_f, np, D),
                               s.lse.data(), stream());
    });
    convert(cview(s.attn_f, np, D), mview(s.attn, np, D));
  }
  linear(obs, module_name(b, module_id::attn_proj), cview(s.attn, np, D), bw.proj_w, bw.proj_b, D, s.proj_out);
  timed(kernel_class::elementwise, [&] {
    launch_elementwise(np, D, detail::add_op{x_in, cview(s.proj_out, np, D), mview(s.x_mid, np, D)}, stream());
  });
  const auto x_mid = cview(s.x_mid, np, D);
  timed(kernel_class::norm_rope, [&] {
    layer_norm_forward(x_mid, bw.norm2_w.data(), bw.norm2_b.data(), 1e-6f, mview(s.ln2, np, D), s.mean2.data(),
                       s.rstd2.data(), stream());
  });
  linear(obs, module_name(b, module_id::mlp_fc1), cview(s.ln2, np, D), bw.fc1_w, bw.fc1_b, I, s.fc1);
  timed(kernel_class::elementwise,
        [&] { activation_forward<gelu_tanh>(cview(s.fc1, np, I), mview(s.act, np, I), stream()); });
  linear(obs, module_name(b, module_id::mlp_fc2), cview(s.act, np, I), bw.fc2_w, bw.fc2_b, D, s.fc2);
  if (!write_output) return;
  // Block output: the next block's input, or the final merger's.
  device_buffer<float>& next = b + 1 < v.depth ? blocks_[static_cast<std::size_t>(b + 1)].x_in : merger_in_;
  next.grow_to(np * D);
  timed(kernel_class::elementwise, [&] {
    launch_elementwise(np, D, detail::add_op{x_mid, cview(s.fc2, np, D), mview(next, np, D)}, stream());
  });
}

inline void qwen3_vl_vision_model::forward(const tensor& pixels, const std::vector<qwen3_vl::grid_thw>& grids,
                                           device_linear_observer* obs) {
  const qwen3_vl::vision_config& v = cfg_.vision;
  const std::int64_t D = v.hidden_size, heads = v.num_heads, hd = D / heads;
  const std::int64_t m = v.spatial_merge_size;
  std::int64_t np = 0;
  for (const qwen3_vl::grid_thw& g : grids) {
    if (g[0] <= 0 || g[1] <= 0 || g[2] <= 0 || g[1] % m != 0 || g[2] % m != 0) {
      throw error("cuda qwen3_vl vision: image grid (" + std::to_string(g[0]) + ", " + std::to_string(g[1]) + ", " +
                  std::to_string(g[2]) + ") is not positive with h, w multiples of spatial_merge_size");
    }
    np += g[0] * g[1] * g[2];
  }
  const std::int64_t patch = w_.patch_w.size() / static_cast<std::size_t>(D);
  if (pixels.rank() != 2 || pixels.dim(0) != np || pixels.dim(1) != patch) {
    throw error("cuda qwen3_vl vision: pixel_values " + aq::shape_string(pixels.shape()) + ", expected [" +
                std::to_string(np) + ", " + std::to_string(patch) + "] for the given image grids");
  }
  patches_ = np;
  merged_ = np / (m * m);
  // Host side: bf16 pixels, interpolated positions, rotary tables and per-frame segments (the CPU
  // tower's formulas, so both backends share them).
  pixels_.upload(detail::rounded_to_bf16(pixels), stream());
  const tensor pos = qwen3_vl::vision_position_embeddings(w_.pos_embed, grids, m);
  pos_.upload(pos.storage(), stream());
  const qwen3_vl::vision_rotary rot = qwen3_vl::vision_rotary_tables(grids, m, hd);
  std::vector<int> cu{0};
  int longest = 0;
  for (const attention_segment& seg : rot.segments) {
    cu.push_back(static_cast<int>(seg.start + seg.length));
    longest = std::max(longest, static_cast<int>(seg.length));
  }
  cos_.upload(rot.cos.storage(), stream());
  sin_.upload(rot.sin.storage(), stream());
  cu_seqlens_.upload(cu, stream());
  const int frames = static_cast<int>(cu.size() - 1);
  segs_ = attention_segments{cu_seqlens_.data(), frames, longest,
                             static_cast<std::int64_t>(frames) * longest == np};

  // Patch embedding (the Conv3d as a linear over flattened patches) + positions.
  patch_out_.grow_to(np * D);
  linear(obs, qwen3_vl::schema::module_path(module_id::patch_embed), cview(pixels_, np, patch), w_.patch_w, w_.patch_b,
         D, patch_out_);
  blocks_.resize(static_cast<std::size_t>(v.depth));
  tap_in_.resize(w_.deepstack.size());
  deepstack_.resize(w_.deepstack.size());
  blocks_[0].x_in.grow_to(np * D);
  timed(kernel_class::elementwise, [&] {
    launch_elementwise(np, D, detail::add_op{cview(patch_out_, np, D), cview(pos_, np, D), mview(blocks_[0].x_in, np, D)},
                       stream());
  });
  for (std::int64_t b = 0; b < v.depth; ++b) {
    block_forward(b, obs, true);
    const device_buffer<float>& next = b + 1 < v.depth ? blocks_[static_cast<std::size_t>(b + 1)].x_in : merger_in_;
    for (std::size_t k = 0; k < v.deepstack_visual_indexes.size(); ++k) {
      if (v.deepstack_visual_indexes[k] != b) continue;
      merger_forward(static_cast<std::int64_t>(k), w_.deepstack[k], cview(next, np, D), deepstack_[k], obs);
    }
  }
  merger_forward(-1, w_.merger, cview(merger_in_, np, D), merger_, obs);
}

inline void qwen3_vl_vision_model::backward(const float* d_embeds, const std::vector<const float*>& d_deepstack,
                                            device_linear_observer* obs) {
  const qwen3_vl::vision_config& v = cfg_.vision;
  const std::int64_t D = v.hidden_size, heads = v.num_heads, hd = D / heads, I = v.intermediate_size;
  const std::int64_t np = patches_;
  const device_matrix<const float> tc{cos_.data(), np, hd, hd}, ts{sin_.data(), np, hd, hd};
  const attention_config ac = attention();
  for (auto* f : {&g_, &d_attn_, &dq_, &dk_, &dv_, &d_ln_}) f->grow_to(np * D);
  gb_.grow_to(np * D);
  d_m_.grow_to(np * I);
  d_act_.grow_to(np * I);
  dqkv_.grow_to(np * 3 * D);
  delta_.grow_to(np * heads);
  if (tc_attention_) {
    for (auto* h : {&d_attn_b_, &dqb_, &dkb_, &dvb_}) h->grow_to(np * D);
  }
  const auto g = mview(g_, np, D);
  AQ_CUDA_CHECK(cudaMemsetAsync(g_.data(), 0, static_cast<std::size_t>(np * D) * sizeof(float), stream()));
  if (d_embeds != nullptr) merger_backward(-1, w_.merger, cview(merger_in_, np, D), merger_, d_embeds, g, obs);
  for (std::int64_t b = v.depth - 1; b >= 0; --b) {
    const device_buffer<float>& block_out = b + 1 < v.depth ? blocks_[static_cast<std::size_t>(b + 1)].x_in : merger_in_;
    for (std::size_t k = 0; k < v.deepstack_visual_indexes.size(); ++k) {
      if (v.deepstack_visual_indexes[k] != b || k >= d_deepstack.size() || d_deepstack[k] == nullptr) continue;
      merger_backward(static_cast<std::int64_t>(k), w_.deepstack[k], cview(block_out, np, D), deepstack_[k], d_deepstack[k],
                      g, obs);
    }
    const qwen3_vl_vision_block_device_weights& bw = w_.blocks[static_cast<std::size_t>(b)];
    if (!saved_blocks_) block_forward(b, nullptr, false);
    block_state& s = state(b);
    const device_buffer<float>& x_in_buf = blocks_[static_cast<std::size_t>(b)].x_in;
    convert(cview(g_, np, D), mview(gb_, np, D));
    linear_back(obs, module_name(b, module_id::mlp_fc2), cview(s.act, np, I), bw.fc2_w, bw.fc2_b, cview(s.fc2, np, D),
                cview(gb_, np, D), mview(d_m_, np, I));
    timed(kernel_class::elementwise, [&] {
      activation_backward<gelu_tanh>(cview(s.fc1, np, I), cview(d_m_, np, I), mview(d_act_, np, I), stream());
    });
    linear_back(obs, module_name(b, module_id::mlp_fc1), cview(s.ln2, np, D), bw.fc1_w, bw.fc1_b, cview(s.fc1, np, I),
                cview(d_act_, np, I), mview(d_ln_, np, D));
    timed(kernel_class::norm_rope, [&] {
      layer_norm_backward(cview(s.x_mid, np, D), bw.norm2_w.data(), s.mean2.data(), s.rstd2.data(), cview(d_ln_, np, D), g,
                          true, stream());
    });
    convert(cview(g_, np, D), mview(gb_, np, D));
    linear_back(obs, module_name(b, module_id::attn_proj), cview(s.attn, np, D), bw.proj_w, bw.proj_b,
                cview(s.proj_out, np, D), cview(gb_, np, D), mview(d_attn_, np, D));
    if (tc_attention_) {
      convert(cview(d_attn_, np, D), mview(d_attn_b_, np, D));
      timed(kernel_class::attention, [&] {
        attention_backward<bf16>(ac, segs_, cview(s.qb, np, D), cview(s.kb, np, D), cview(s.vb, np, D), cview(s.attn, np, D),
                                 s.lse.data(), cview(d_attn_b_, np, D), mview(dqb_, np, D), mview(dkb_, np, D),
                                 mview(dvb_, np, D), delta_.data(), stream());
      });
      timed(kernel_class::elementwise, [&] {
        for (const auto& [src, dst] : {std::pair{&dqb_, &dq_}, std::pair{&dkb_, &dk_}, std::pair{&dvb_, &dv_}}) {
          launch_elementwise(np, D, detail::convert_op<bf16, float>{cview(*src, np, D), mview(*dst, np, D)}, stream());
        }
      });
    } else {
      timed(kernel_class::attention, [&] {
        attention_backward<float>(ac, segs_, cview(s.q, np, D), cview(s.k, np, D), cview(s.v, np, D),
                                  cview(s.attn_f, np, D), s.lse.data(), cview(d_attn_, np, D), mview(dq_, np, D),
                                  mview(dk_, np, D), mview(dv_, np, D), delta_.data(), stream());
      });
    }
    timed(kernel_class::norm_rope, [&] {
      rope_backward(mview(dq_, np, D), heads, tc, ts, stream());
      rope_backward(mview(dk_, np, D), heads, tc, ts, stream());
      // dL/d(qkv): dq, dk, dv into the column blocks of one bf16 matrix (strided views).
      for (const auto& [offset, src] : {std::pair{std::int64_t{0}, &dq_}, std::pair{D, &dk_}, std::pair{2 * D, &dv_}}) {
        launch_elementwise(np, D, detail::convert_op<float, bf16>{cview(*src, np, D), {dqkv_.data() + offset, np, D, 3 * D}},
                           stream());
      }
    });
    linear_back(obs, module_name(b, module_id::attn_qkv), cview(s.ln1, np, D), bw.qkv_w, bw.qkv_b,
                cview(s.qkv, np, 3 * D), cview(dqkv_, np, 3 * D), mview(d_ln_, np, D));
    timed(kernel_class::norm_rope, [&] {
      layer_norm_backward(cview(x_in_buf, np, D), bw.norm1_w.data(), s.mean1.data(), s.rstd1.data(), cview(d_ln_, np, D), g,
                          true, stream());
    });
  }
  convert(cview(g_, np, D), mview(gb_, np, D));
  if (obs == nullptr) return;
  obs->on_backward(call_of(qwen3_vl::schema::module_path(module_id::patch_embed), w_.patch_w.data(), D, w_.patch_b.data(),
                           cview(pixels_, np, w_.patch_w.size() / static_cast<std::size_t>(D)), cview(patch_out_, np, D),
                           cview(gb_, np, D)));
}

// One batch through the tower (when it has images) and the decoder: forward, and the backward
// of both when the batch has labels and options ask for it. position_ids empty: computed from the
// ids and image grids (rope_position_ids). The GPU twin of qwen3_vl::vl_model::run.
inline text_run_result run_vl_batch(const qwen3_vl::config& cfg, qwen3_vl_text_model& text,
                                    qwen3_vl_vision_model* vision, qwen3_vl::text_batch batch,
                                    const qwen3_vl::image_batch* images, const text_run_options& options,
                                    device_linear_observer* observer) {
  if (images == nullptr || images->grids.empty()) return text.run(batch, options, observer);
  if (vision == nullptr) throw error("cuda qwen3_vl: a batch with images needs the vision tower");
  if (batch.position_ids.empty()) {
    batch.position_ids = qwen3_vl::rope_position_ids(batch.input_ids, batch.attention_mask, batch.batch, batch.seq,
                                                     cfg.image_token_id, images->grids, cfg.vision.spatial_merge_size);
  }
  vision->forward(images->pixel_values, images->grids, observer);
  text_visual_inputs visual;
  for (std::size_t i = 0; i < batch.input_ids.size(); ++i) {
    if (batch.input_ids[i] == cfg.image_token_id) visual.rows.push_back(static_cast<std::int64_t>(i));
  }
  if (static_cast<std::int64_t>(visual.rows.size()) != vision->visual_tokens()) {
    throw error("cuda qwen3_vl: " + std::to_string(visual.rows.size()) + " image placeholder tokens, the images give " +
                std::to_string(vision->visual_tokens()) + " visual tokens");
  }
  visual.embeds = vision->embeds();
  const bool backward = options.backward && !batch.labels.empty();
  for (std::size_t k = 0; k < vision->deepstack_count(); ++k) {
    visual.deepstack.push_back(vision->deepstack(k));
    if (backward) visual.d_deepstack.push_back(vision->deepstack_grad(k));
  }
  if (backward) visual.d_embeds = vision->embeds_grad();
  text_run_result result = text.run(batch, options, observer, &visual);
  if (!backward) return result;
  vision->backward(visual.d_embeds, std::vector<const float*>(visual.d_deepstack.begin(), visual.d_deepstack.end()),
                   observer);
  AQ_CUDA_CHECK(cudaStreamSynchronize(text.stream()));
  return result;
}

}  // namespace aq::cuda
