// The Qwen3-VL text decoder on the CPU in fp32: forward of a [batch, seq] batch to logits and
// the mean next-token loss, then the input-gradient backward (weights frozen) through every op,
// reporting X, Y and dL/dY of each quantizable linear to a linear_observer. Matches transformers'
// Qwen3VLForConditionalGeneration (eager or sdpa attention) in fp32.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "aq/backend/cpu/attention.hpp"
#include "aq/backend/cpu/cross_entropy.hpp"
#include "aq/backend/cpu/gemm.hpp"
#include "aq/backend/cpu/qwen3_vl/linear_observer.hpp"
#include "aq/backend/cpu/rms_norm.hpp"
#include "aq/backend/cpu/rope.hpp"
#include "aq/backend/cpu/swiglu.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/batch.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"
#include "aq/model/qwen3_vl/schema.hpp"
#include "aq/model/qwen3_vl/text_weights.hpp"

namespace aq::qwen3_vl {

// Vision features entering the decoder: rows replace the embeddings of the image-token positions
// in row-major (b, s) order; deepstack[l] is added to those positions after decoder layer l.
struct visual_inputs {
  const tensor* embeds = nullptr;            // [n_visual, H]
  std::vector<const tensor*> deepstack;      // each [n_visual, H]
};

struct run_options {
  cpu::masked_row_policy masked_rows = cpu::masked_row_policy::attend_all;  // eager; zero = sdpa
  bool backward = true;
};

struct text_result {
  double loss = 0.0;
  std::int64_t targets = 0;
  tensor logits;               // [batch·seq, vocab]
  tensor inputs_embeds_grad;   // [batch·seq, H]: dL/d(inputs_embeds), after the visual scatter
  std::vector<tensor> deepstack_grads;  // [n_visual, H] each: dL/d deepstack[l]
};

class text_model {
 public:
  text_model(const config& cfg, const text_weights& weights) : cfg_(cfg), w_(weights) {
    const text_config& t = cfg_.text;
    if (static_cast<std::int64_t>(w_.layers.size()) != t.num_hidden_layers) {
      throw error("qwen3_vl text_model: weights have " + std::to_string(w_.layers.size()) + " layers, config " +
                  std::to_string(t.num_hidden_layers));
    }
    if (t.num_attention_heads % t.num_key_value_heads != 0) {
      throw error("qwen3_vl text config: num_attention_heads " + std::to_string(t.num_attention_heads) +
                  " is not a multiple of num_key_value_heads " + std::to_string(t.num_key_value_heads));
    }
    inv_freq_ = cpu::rope_inv_freq(t.head_dim, t.rope_theta);
  }

  const config& model_config() const { return cfg_; }

  text_result run(const text_batch& batch, const run_options& options = {}, linear_observer* observer = nullptr,
                  const visual_inputs& visual = {}) const;

 private:
  // What the backward needs from one layer's forward (and what observers see again there).
  struct layer_state {
    tensor h_in, a, q_raw, k_raw, q_rot, k_rot, v, attn, o_out, h_mid, m, gate, up, act, down_out;
    std::vector<float> r1, r2, rq, rk, lse;
  };

  using module_id = schema::module_id;
  using module_ref = schema::module_ref;

  // Y = X·Wᵀ of one module as a new tensor, shown to the observer (which may replace it).
  static tensor linear(linear_observer* obs, const module_ref& module, const tensor& w, const tensor& x) {
    tensor y({x.matrix().rows, w.dim(0)});
    cpu::linear_forward(x.matrix(), w.matrix(), y.matrix());
    notify_linear(obs, false, module, w.matrix(), nullptr, x.matrix(), y.matrix());
    return y;
  }
  // dX (+)= dY·W of one module, after dL/dY is shown to the observer.
  static void linear_backward(linear_observer* obs, const module_ref& module, const tensor& w, const tensor& x,
                              const tensor& y, const tensor& dy, tensor& dx, bool accumulate = false) {
    notify_linear(obs, true, module, w.matrix(), nullptr, x.matrix(), y.matrix(), dy.matrix());
    cpu::linear_backward_input(dy.matrix(), w.matrix(), dx.matrix(), accumulate);
  }

  config cfg_;
  const text_weights& w_;
  std::vector<float> inv_freq_;
};

inline text_result text_model::run(const text_batch& batch, const run_options& options, linear_observer* observer,
                                   const visual_inputs& visual) const {
  const text_config& t = cfg_.text;
  const std::int64_t B = batch.batch;
  const std::int64_t T = batch.seq;
  const std::int64_t N = B * T;
  const std::int64_t H = t.hidden_size;
  const std::int64_t nh = t.num_attention_heads;
  const std::int64_t nkv = t.num_key_value_heads;
  const std::int64_t hd = t.head_dim;
  const std::int64_t I = t.intermediate_size;
  const std::int64_t V = t.vocab_size;
  const auto eps = static_cast<float>(t.rms_norm_eps);
  if (B <= 0 || T <= 0 || static_cast<std::int64_t>(batch.input_ids.size()) != N ||
      static_cast<std::int64_t>(batch.attention_mask.size()) != N) {
    throw error("qwen3_vl text batch: input_ids/attention_mask must hold batch*seq = " + std::to_string(N) + " entries");
  }
  const bool with_loss = !batch.labels.empty();
  if (with_loss && static_cast<std::int64_t>(batch.labels.size()) != N) {
    throw error("qwen3_vl text batch: labels must hold batch*seq = " + std::to_string(N) + " entries");
  }
  std::vector<std::int64_t> positions = batch.position_ids;
  if (positions.empty()) positions = rope_position_ids(batch.input_ids, batch.attention_mask, B, T);
  if (static_cast<std::int64_t>(positions.size()) != 3 * N) {
    throw error("qwen3_vl text batch: position_ids must hold 3*batch*seq = " + std::to_string(3 * N) + " entries");
  }

  // Embeddings, then the visual rows in (b, s) order.
  tensor h({N, H});
  std::vector<std::int64_t> visual_rows;
  for (std::int64_t i = 0; i < N; ++i) {
    const std::int64_t id = batch.input_ids[static_cast<std::size_t>(i)];
    if (id < 0 || id >= V) {
      throw error("qwen3_vl text batch: input id " + std::to_string(id) + " at row " + std::to_string(i) +
                  " outside the vocabulary [0, " + std::to_string(V) + ")");
    }
    if (visual.embeds != nullptr && id == cfg_.image_token_id) visual_rows.push_back(i);
    std::copy_n(w_.embed_tokens.data() + id * H, H, h.data() + i * H);
  }
  if (visual.embeds != nullptr) {
    if (visual.embeds->matrix().rows != static_cast<std::int64_t>(visual_rows.size()) || visual.embeds->matrix().cols != H) {
      throw error("qwen3_vl text batch: " + std::to_string(visual_rows.size()) + " image tokens but visual embeds " +
                  shape_string(visual.embeds->shape()));
    }
    for (std::size_t r = 0; r < visual_rows.size(); ++r) {
      std::copy_n(visual.embeds->data() + static_cast<std::int64_t>(r) * H, H, h.data() + visual_rows[r] * H);
    }
  }

  tensor cos, sin;
  cpu::mrope_tables(positions.data(), positions.data() + N, positions.data() + 2 * N, N, inv_freq_, t.mrope_section,
                    cos, sin);
  std::vector<cpu::attention_segment> segments;
  for (std::int64_t b = 0; b < B; ++b) segments.push_back({b * T, T});
  const cpu::attention_config ac{.heads = nh, .kv_heads = nkv, .head_dim = hd,
                                 .scale = 1.0f / std::sqrt(static_cast<float>(hd)), .causal = true,
                                 .key_valid = batch.attention_mask.data(), .masked_rows = options.masked_rows};

  auto per_head = [](tensor& x, std::int64_t d) {
    return matrix_view{x.data(), x.numel() / d, d, d};
  };

  std::vector<layer_state> saved(static_cast<std::size_t>(t.num_hidden_layers));
  for (std::int64_t l = 0; l < t.num_hidden_layers; ++l) {
    const text_layer_weights& lw = w_.layers[static_cast<std::size_t>(l)];
    layer_state& s = saved[static_cast<std::size_t>(l)];
    s.h_in = h;
    s.a = tensor({N, H});
    s.r1.resize(static_cast<std::size_t>(N));
    cpu::rms_norm_forward(s.h_in.matrix(), lw.input_layernorm.data(), eps, s.a.matrix(), s.r1.data());
    s.q_raw = linear(observer, {module_id::q_proj, l}, lw.q_proj, s.a);
    s.k_raw = linear(observer, {module_id::k_proj, l}, lw.k_proj, s.a);
    s.v = linear(observer, {module_id::v_proj, l}, lw.v_proj, s.a);
    s.q_rot = tensor({N, nh * hd});
    s.k_rot = tensor({N, nkv * hd});
    s.rq.resize(static_cast<std::size_t>(N * nh));
    s.rk.resize(static_cast<std::size_t>(N * nkv));
    cpu::rms_norm_forward(per_head(s.q_raw, hd), lw.q_norm.data(), eps, per_head(s.q_rot, hd), s.rq.data());
    cpu::rms_norm_forward(per_head(s.k_raw, hd), lw.k_norm.data(), eps, per_head(s.k_rot, hd), s.rk.data());
    cpu::rope_forward(s.q_rot.matrix(), nh, cos, sin);
    cpu::rope_forward(s.k_rot.matrix(), nkv, cos, sin);
    s.attn = tensor({N, nh * hd});
    s.lse.resize(static_cast<std::size_t>(nh * N));
    cpu::attention_forward(ac, segments, s.q_rot.matrix(), s.k_rot.matrix(), s.v.matrix(), s.attn.matrix(),
                           s.lse.data());
    s.o_out = linear(observer, {module_id::o_proj, l}, lw.o_proj, s.attn);
    s.h_mid = s.h_in;
    for (std::int64_t i = 0; i < N * H; ++i) s.h_mid.data()[i] += s.o_out.data()[i];
    s.m = tensor({N, H});
    s.r2.resize(static_cast<std::size_t>(N));
    cpu::rms_norm_forward(s.h_mid.matrix(), lw.post_attention_layernorm.data(), eps, s.m.matrix(), s.r2.data());
    s.gate = linear(observer, {module_id::gate_proj, l}, lw.gate_proj, s.m);
    s.up = linear(observer, {module_id::up_proj, l}, lw.up_proj, s.m);
    s.act = tensor({N, I});
    cpu::swiglu_forward(s.gate.matrix(), s.up.matrix(), s.act.matrix());
    s.down_out = linear(observer, {module_id::down_proj, l}, lw.down_proj, s.act);
    h = s.h_mid;
    for (std::int64_t i = 0; i < N * H; ++i) h.data()[i] += s.down_out.data()[i];
    if (l < static_cast<std::int64_t>(visual.deepstack.size()) && visual.deepstack[static_cast<std::size_t>(l)] != nullptr) {
      const tensor& ds = *visual.deepstack[static_cast<std::size_t>(l)];
      if (ds.matrix().rows != static_cast<std::int64_t>(visual_rows.size()) || ds.matrix().cols != H) {
        throw error("qwen3_vl text batch: deepstack " + std::to_string(l) + " has shape " + shape_string(ds.shape()) +
                    ", expected [" + std::to_string(visual_rows.size()) + ", " + std::to_string(H) + "]");
      }
      for (std::size_t r = 0; r < visual_rows.size(); ++r) {
        float* row = h.data() + visual_rows[r] * H;
        const float* add = ds.data() + static_cast<std::int64_t>(r) * H;
        for (std::int64_t c = 0; c < H; ++c) row[c] += add[c];
      }
    }
  }

  const tensor h_final = h;
  tensor hn({N, H});
  std::vector<float> rf(static_cast<std::size_t>(N));
  cpu::rms_norm_forward(h_final.matrix(), w_.norm.data(), eps, hn.matrix(), rf.data());
  const tensor& lm = w_.lm_head_weight();
  text_result result;
  result.logits = linear(observer, {module_id::lm_head}, lm, hn);
  if (!with_loss) return result;

  tensor dlogits({N, V});
  matrix_view dl = dlogits.matrix();
  const cpu::lm_loss loss = cpu::causal_lm_loss(result.logits.matrix(), batch.labels, B, T, options.backward ? &dl : nullptr);
  result.loss = loss.loss;
  result.targets = loss.targets;
  if (!options.backward) return result;

  // Backward: g is dL/d(residual stream) at the current point.
  tensor dhn({N, H});
  linear_backward(observer, {module_id::lm_head}, lm, hn, result.logits, dlogits, dhn);
  dlogits = tensor();
  tensor g({N, H});
  cpu::rms_norm_backward(h_final.matrix(), w_.norm.data(), rf.data(), dhn.matrix(), g.matrix());
  result.deepstack_grads.resize(visual.deepstack.size());

  tensor d_act({N, I}), d_gate({N, I}), d_up({N, I}), d_m({N, H}), d_attn({N, nh * hd});
  tensor dq({N, nh * hd}), dk({N, nkv * hd}), dv({N, nkv * hd}), dq_raw({N, nh * hd}), dk_raw({N, nkv * hd});
  for (std::int64_t l = t.num_hidden_layers - 1; l >= 0; --l) {
    const text_layer_weights& lw = w_.layers[static_cast<std::size_t>(l)];
    layer_state& s = saved[static_cast<std::size_t>(l)];
    if (l < static_cast<std::int64_t>(visual.deepstack.size()) && visual.deepstack[static_cast<std::size_t>(l)] != nullptr) {
      tensor& dds = result.deepstack_grads[static_cast<std::size_t>(l)];
      dds = tensor({static_cast<std::int64_t>(visual_rows.size()), H});
      for (std::size_t r = 0; r < visual_rows.size(); ++r) {
        std::copy_n(g.data() + visual_rows[r] * H, H, dds.data() + static_cast<std::int64_t>(r) * H);
      }
    }
    // MLP
    linear_backward(observer, {module_id::down_proj, l}, lw.down_proj, s.act, s.down_out, g, d_act);
    cpu::swiglu_backward(s.gate.matrix(), s.up.matrix(), d_act.matrix(), d_gate.matrix(), d_up.matrix());
    linear_backward(observer, {module_id::gate_proj, l}, lw.gate_proj, s.m, s.gate, d_gate, d_m);
    linear_backward(observer, {module_id::up_proj, l}, lw.up_proj, s.m, s.up, d_up, d_m, true);
    cpu::rms_norm_backward(s.h_mid.matrix(), lw.post_attention_layernorm.data(), s.r2.data(), d_m.matrix(), g.matrix(),
                           true);
    // Attention
    linear_backward(observer, {module_id::o_proj, l}, lw.o_proj, s.attn, s.o_out, g, d_attn);
    cpu::attention_backward(ac, segments, s.q_rot.matrix(), s.k_rot.matrix(), s.v.matrix(), s.attn.matrix(),
                            s.lse.data(), d_attn.matrix(), dq.matrix(), dk.matrix(), dv.matrix());
    cpu::rope_backward(dq.matrix(), nh, cos, sin);
    cpu::rope_backward(dk.matrix(), nkv, cos, sin);
    cpu::rms_norm_backward(per_head(s.q_raw, hd), lw.q_norm.data(), s.rq.data(), per_head(dq, hd),
                           per_head(dq_raw, hd));
    cpu::rms_norm_backward(per_head(s.k_raw, hd), lw.k_norm.data(), s.rk.data(), per_head(dk, hd),
                           per_head(dk_raw, hd));
    linear_backward(observer, {module_id::q_proj, l}, lw.q_proj, s.a, s.q_raw, dq_raw, d_m);
    linear_backward(observer, {module_id::k_proj, l}, lw.k_proj, s.a, s.k_raw, dk_raw, d_m, true);
    linear_backward(observer, {module_id::v_proj, l}, lw.v_proj, s.a, s.v, dv, d_m, true);
    cpu::rms_norm_backward(s.h_in.matrix(), lw.input_layernorm.data(), s.r1.data(), d_m.matrix(), g.matrix(), true);
    s = layer_state();  // release this layer's activations
  }
  result.inputs_embeds_grad = std::move(g);
  return result;
}

}  // namespace aq::qwen3_vl
