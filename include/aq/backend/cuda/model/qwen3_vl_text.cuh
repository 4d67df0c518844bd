// The Qwen3-VL text decoder on the GPU: bf16 weights uploaded once, bf16 GEMMs with fp32
// accumulation, fp32 norms/softmax/residual stream; forward to the next-token loss (vocabulary in
// chunks) and the input-gradient backward, reporting every quantizable linear to a
// device_linear_observer. The GPU twin of qwen3_vl::text_model, used by calibration and scoring.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/attention.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/cross_entropy.cuh"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/elementwise.cuh"
#include "aq/backend/cuda/kernels/embedding.cuh"
#include "aq/backend/cuda/kernels/gemm_cublaslt.cuh"
#include "aq/backend/cuda/kernels/kernel_profile.cuh"
#include "aq/backend/cuda/kernels/qk_norm_rope.cuh"
#include "aq/backend/cuda/kernels/rms_norm.cuh"
#include "aq/backend/cuda/kernels/rope.cuh"
#include "aq/backend/cuda/kernels/swiglu.cuh"
#include "aq/backend/cuda/model/linear_observer.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text_weights.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/model/qwen3_vl/batch.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/rope_index.hpp"
#include "aq/model/qwen3_vl/schema.hpp"
#include "aq/model/qwen3_vl/text_weights.hpp"
#include "aq/model/rope_frequencies.hpp"

namespace aq::cuda {

namespace detail {

// h(rows[r], c) = e(r, c) (scatter), += e(r, c) (add), or e(r, c) = h(rows[r], c) (gather).
enum class row_move { scatter, add, gather };
template <row_move Move>
struct visual_rows_op {
  const std::int64_t* rows;
  device_matrix<float> h;
  device_matrix<float> e;
  __device__ void operator()(std::int64_t r, std::int64_t c) const {
    float& dst = h(rows[r], c);
    if constexpr (Move == row_move::scatter) {
      dst = e(r, c);
    } else if constexpr (Move == row_move::add) {
      dst += e(r, c);
    } else {
      e(r, c) = dst;
    }
  }
};

}  // namespace detail

// One layer's activations: what its backward reads (saved per layer, or recomputed into one set).
struct text_layer_activations {
  device_buffer<bf16> a, attn, m, act, qb, kb, vb;
  device_buffer<float> q_raw, k_raw, v, qr, kr, attn_f, o_out, h_mid, gate, up, down_out, r1, r2, rq, rk, lse;
};

struct text_run_options {
  masked_row_policy masked_rows = masked_row_policy::zero;  // sdpa; attend_all = eager
  bool backward = true;  // with labels: the input-gradient backward after the loss
  // Attention may run on the registered fused library (set_fused_attention_library) where it
  // takes the batch; false keeps aq's kernels (a shape not worth the library's plan).
  bool fused_attention = true;
  bool logits = false;   // also download the full fp32 logits (tests; [tokens, vocab] on the host)
  // Also hand the fp32 logits to the caller on the device, one vocabulary chunk [tokens, ≤ chunk]
  // at a time in vocabulary order (v0: its first id), without a [tokens, vocab] buffer. Called on
  // the host; work on the chunk goes on the model's stream, and the view is overwritten after.
  std::function<void(device_matrix<const float> logits, std::int64_t v0)> logits_chunk;
  // Denominator of the mean loss (and so of dL/dlogits); 0: this batch's own target count. A
  // micro-batch passes its whole batch's count so that its gradients are the whole batch's.
  std::int64_t loss_targets = 0;
  // Per sequence instead (qwen3_vl::pack_text_batches): row b's dL/dlogits use its own batch's
  // target count; the pass then has no single mean, and text_run_result::loss is NaN.
  std::vector<std::int64_t> row_loss_targets;
};

// The options of a forward pass whose logits go to logits_chunk: no backward, no loss denominators.
inline text_run_options forward_only(text_run_options o) {
  o.backward = false;
  o.logits = false;
  o.loss_targets = 0;
  o.row_loss_targets.clear();
  return o;
}

// Image features entering the decoder (the vision tower's outputs) and where the backward puts
// their gradients. rows: the token rows (b·seq + s) of the image placeholders, in order; embeds
// replace their embeddings, deepstack[l] is added to them after decoder layer l.
struct text_visual_inputs {
  std::vector<std::int64_t> rows;
  device_matrix<const float> embeds;                   // [rows, H]
  std::vector<device_matrix<const float>> deepstack;  // each [rows, H]
  float* d_embeds = nullptr;                           // [rows, H], written by the backward
  std::vector<float*> d_deepstack;                     // one per deepstack entry
};

struct text_run_result {
  double loss = 0.0;  // NaN without labels
  std::int64_t targets = 0;
  std::vector<float> logits;  // [batch·seq, vocab] when asked for
};

// One decoder sized for batches of up to max_tokens rows. Memory: the residual stream entering
// every layer (fp32) is saved in the forward; by default the backward recomputes each layer's
// activations from it (one layer's worth of buffers: L·tokens·H·4 bytes plus one layer); with
// set_saved_layers(k) the first k layers keep their own (activation_bytes_per_layer() each) and
// the backward skips their recompute (set_saved_activations(true): all of them).
class qwen3_vl_text_model {
 public:
  qwen3_vl_text_model(const qwen3_vl::config& cfg, const qwen3_vl_text_device_weights& weights, std::int64_t max_tokens,
                      std::int64_t vocab_chunk = 8192)
      : cfg_(cfg), w_(weights), max_tokens_(max_tokens), chunk_(std::min(vocab_chunk, cfg.text.vocab_size)) {
    const qwen3_vl::text_config& t = cfg_.text;
    if (static_cast<std::int64_t>(w_.layers.size()) != t.num_hidden_layers) {
      throw error("cuda qwen3_vl text model: weights have " + std::to_string(w_.layers.size()) + " layers, config " +
                  std::to_string(t.num_hidden_layers));
    }
    if (t.num_attention_heads % t.num_key_value_heads != 0) {
      throw error("cuda qwen3_vl text model: num_attention_heads " + std::to_string(t.num_attention_heads) +
                  " is not a multiple of num_key_value_heads " + std::to_string(t.num_key_value_heads));
    }
    if (max_tokens <= 0) throw error("cuda qwen3_vl text model: max_tokens must be positive");
    // A blocking stream: setup copies and frees on the legacy stream stay ordered with it.
    AQ_CUDA_CHECK(cudaStreamCreate(&stream_));
    const std::size_t N = static_cast<std::size_t>(max_tokens);
    const std::size_t H = static_cast<std::size_t>(t.hidden_size), I = static_cast<std::size_t>(t.intermediate_size);
    const std::size_t qd = static_cast<std::size_t>(t.num_attention_heads * t.head_dim);
    const std::size_t kvd = static_cast<std::size_t>(t.num_key_value_heads * t.head_dim);
    const std::size_t nh = static_cast<std::size_t>(t.num_attention_heads);
    saved_h_ = device_buffer<float>(static_cast<std::size_t>(t.num_hidden_layers) * N * H);
    pos_ = device_buffer<std::int64_t>(3 * N);
    mask_ = device_buffer<std::uint8_t>(N);
    targets_ = device_buffer<std::int64_t>(N);
    inv_freq_ = device_buffer<float>(rope_inv_freq(t.head_dim, t.rope_theta));
    logits_chunk_ = device_buffer<float>(N * static_cast<std::size_t>(chunk_));
    dlogits_chunk_ = device_buffer<bf16>(N * static_cast<std::size_t>(chunk_));
    rf_ = device_buffer<float>(N);
    for (auto* b : {&cos_, &sin_}) b->grow_to(N * static_cast<std::size_t>(t.head_dim));
    // The residual stream and, for the backward, its gradient and the layer scratch.
    for (auto* b : {&h_, &g_, &d_m_}) b->grow_to(N * H);
    delta_ = device_buffer<float>(N * nh);
    for (auto* b : {&hn_, &gb_}) b->grow_to(N * H);
    for (auto* b : {&d_act_, &d_gate_, &d_up_}) b->grow_to(N * I);
    for (auto* b : {&dvb_, &dk_raw_}) b->grow_to(N * kvd);
    dq_raw_ = device_buffer<bf16>(N * qd);
  }

  // bf16 tensor-core attention (FlashAttention-2 style: bf16 q/k/v/o/dO, bf16 P and dS, fp32
  // accumulation) instead of fp32 storage on the CUDA cores: ~3x faster, dL/dY of k_proj moves by
  // ~1e-2 relative (tests/cuda/test_qwen3_vl_cuda.cu states both tolerances).
  void set_tensor_core_attention(bool on) { tc_attention_ = on; }
  // With tensor-core attention: hand batches without padding to the registered fused-attention
  // library (cuDNN) where it takes them (kernels/fused_attention_library.hpp).
  // workspace_limit: device bytes it may hold (0: no limit; the memory plan counts them).
  // The shape run() asks the fused library for on a pass of `rows` unpadded sequences of `seq`
  // tokens (operands [tokens, heads·dim] as the model holds them; no workspace limit): a caller
  // may plan it ahead (fused_attention_library::prepare).
  static fused_attention_shape fused_attention_shape_of(const qwen3_vl::config& cfg, std::int64_t rows,
                                                        std::int64_t seq) {
    const qwen3_vl::text_config& t = cfg.text;
    return {static_cast<int>(rows), static_cast<int>(seq), static_cast<int>(t.num_attention_heads),
            static_cast<int>(t.num_key_value_heads), static_cast<int>(t.head_dim), t.num_attention_heads * t.head_dim,
            t.num_key_value_heads * t.head_dim, attention_scale(t), true, 0};
  }
  void set_fused_attention_library(bool on, std::int64_t workspace_limit = 0) {
    fused_library_ = on;
    fused_workspace_limit_ = workspace_limit;
  }
  // Keep every layer's activations from the forward for the backward (no recompute).
  void set_saved_activations(bool on) { saved_layers_ = on ? cfg_.text.num_hidden_layers : 0; }
  bool saved_activations() const { return saved_layers_ == cfg_.text.num_hidden_layers; }
  // Keep the activations of the first `layers` layers (0 … num_hidden_layers, clamped); the rest
  // share one set and are recomputed in the backward. A memory budget picks the count.
  void set_saved_layers(std::int64_t layers) { saved_layers_ = std::clamp<std::int64_t>(layers, 0, cfg_.text.num_hidden_layers); }
  std::int64_t saved_layers() const { return saved_layers_; }
  // Device bytes of one layer's activations at max_tokens in the current attention mode.
  std::size_t activation_bytes_per_layer() const {
    text_layer_activations none;  // only enumerated: empty buffers allocate nothing
    std::size_t bytes = 0;
    for_each_activation(none, [&]<class T>(device_buffer<T>&, std::size_t n) { bytes += n * sizeof(T); });
    return bytes;
  }
  // Allocates what the current modes need (run() does it too): one set per saved layer plus one
  // shared set for the recomputed layers; the backward's attention scratch in bf16 with tensor
  // cores, in fp32 without.
  void allocate_activations() {
    const qwen3_vl::text_config& t = cfg_.text;
    acts_.resize(static_cast<std::size_t>(saved_layers_ + (saved_layers_ < t.num_hidden_layers ? 1 : 0)));
    for (text_layer_activations& A : acts_) {
      for_each_activation(A, []<class T>(device_buffer<T>& b, std::size_t n) {
        if (n > 0) {
          b.grow_to(n);
        } else {
          b = device_buffer<T>();
        }
      });
    }
    const std::size_t N = static_cast<std::size_t>(max_tokens_);
    const std::size_t qd = static_cast<std::size_t>(t.num_attention_heads * t.head_dim);
    const std::size_t kvd = static_cast<std::size_t>(t.num_key_value_heads * t.head_dim);
    if (tc_attention_) {
      d_attn_b_.grow_to(N * qd);
      dqb_.grow_to(N * qd);
      dkb_.grow_to(N * kvd);
    } else {
      for (auto* b : {&d_attn_, &dq_}) b->grow_to(N * qd);
      for (auto* b : {&dk_, &dv_}) b->grow_to(N * kvd);
    }
  }
  // GPU time per kernel class of later runs (nullptr: none); the profile must outlive the runs.
  void set_profile(kernel_profile* profile) { profile_ = profile; }
  kernel_profile* profile() const { return profile_; }
  qwen3_vl_text_model(const qwen3_vl_text_model&) = delete;
  qwen3_vl_text_model& operator=(const qwen3_vl_text_model&) = delete;
  ~qwen3_vl_text_model() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  cudaStream_t stream() const { return stream_; }
  cublaslt_gemm& gemm() { return gemm_; }
  const qwen3_vl::config& model_config() const { return cfg_; }
  std::int64_t max_tokens() const { return max_tokens_; }
  std::int64_t vocab_chunk() const { return chunk_; }
  // Multiply-adds ×2 of every GEMM this model ran (the scorer's GEMMs are counted by the scorer).
  double gemm_flops() const { return gemm_flops_; }
  // dL/d(inputs_embeds) [tokens, H] (fp32) after a run with backward.
  device_matrix<const float> inputs_embeds_grad(std::int64_t tokens) const { return cview(g_, tokens, cfg_.text.hidden_size); }

  // Text-only batch (no image tokens). Synchronises the stream at the end.
  // `visual` (optional): image features for the placeholder rows (see text_visual_inputs).
  text_run_result run(const qwen3_vl::text_batch& batch, const text_run_options& options = {},
                      device_linear_observer* observer = nullptr, const text_visual_inputs* visual = nullptr);

 private:
  // f(buffer, elements) for every buffer of one layer's activation set at max_tokens; 0 elements
  // for those the current attention mode does not use (bf16 operands without tensor cores, fp32
  // ones with them).
  template <class F>
  void for_each_activation(text_layer_activations& A, F&& f) const {
    const qwen3_vl::text_config& t = cfg_.text;
    const std::size_t N = static_cast<std::size_t>(max_tokens_);
    const std::size_t H = static_cast<std::size_t>(t.hidden_size), I = static_cast<std::size_t>(t.intermediate_size);
    const std::size_t qd = static_cast<std::size_t>(t.num_attention_heads * t.head_dim);
    const std::size_t kvd = static_cast<std::size_t>(t.num_key_value_heads * t.head_dim);
    const std::size_t nh = static_cast<std::size_t>(t.num_attention_heads);
    const std::size_t nkv = static_cast<std::size_t>(t.num_key_value_heads);
    const std::size_t tc = tc_attention_ ? 1 : 0, fp32 = 1 - tc;
    for (auto* b : {&A.a, &A.m}) f(*b, N * H);
    f(A.attn, N * qd);
    f(A.act, N * I);
    f(A.qb, tc * N * qd);
    for (auto* b : {&A.kb, &A.vb}) f(*b, tc * N * kvd);
    f(A.q_raw, N * qd);
    for (auto* b : {&A.k_raw, &A.v}) f(*b, N * kvd);
    for (auto* b : {&A.o_out, &A.h_mid, &A.down_out}) f(*b, N * H);
    for (auto* b : {&A.gate, &A.up}) f(*b, N * I);
    for (auto* b : {&A.r1, &A.r2}) f(*b, N);
    for (auto* b : {&A.rq, &A.lse}) f(*b, N * nh);
    f(A.rk, N * nkv);
    for (auto* b : {&A.qr, &A.attn_f}) f(*b, fp32 * N * qd);
    f(A.kr, fp32 * N * kvd);
  }

  template <class F>
  void timed(kernel_class c, F&& f) {
    profiled(profile_, c, stream_, f);
  }
  template <class Out>
  void linear(device_matrix<const bf16> x, const bf16* w, std::int64_t out, device_matrix<Out> y) {
    timed(kernel_class::gemm, [&] {
      gemm_.linear_forward(x, device_matrix<const bf16>{w, out, x.cols, x.cols}, y, nullptr, false, stream_);
      gemm_flops_ += 2.0 * static_cast<double>(x.rows) * static_cast<double>(out) * static_cast<double>(x.cols);
    });
  }
  template <class Out>
  void linear_back(device_matrix<const bf16> dy, const bf16* w, std::int64_t in, device_matrix<Out> dx, bool acc) {
    timed(kernel_class::gemm, [&] {
      gemm_.linear_backward_input(dy, device_matrix<const bf16>{w, dy.cols, in, in}, dx, acc, stream_);
      gemm_flops_ += 2.0 * static_cast<double>(dy.rows) * static_cast<double>(dy.cols) * static_cast<double>(in);
    });
  }
  void add(device_matrix<const float> a, device_matrix<const float> b, device_matrix<float> y) {
    const detail::add_op op{a, b, y};
    launch_elementwise(y.rows, y.cols, op, stream_);
  }
  template <class In, class Out>
  void convert(device_matrix<const In> x, device_matrix<Out> y) {
    const detail::convert_op<In, Out> op{x, y};
    timed(kernel_class::elementwise, [&] { launch_elementwise(x.rows, x.cols, op, stream_); });
  }
  // Moves rows between the image features e [n_visual, H] and h [N, H] (the residual stream h_ or
  // its gradient g_) at the uploaded visual rows; e is written only by the gather (gradient outputs).
  template <detail::row_move Move>
  void move_visual_rows(device_buffer<float>& h, std::int64_t N, const float* e, std::int64_t n_visual) {
    const std::int64_t H = cfg_.text.hidden_size;
    const device_matrix<float> em{const_cast<float*>(e), n_visual, H, H};
    timed(kernel_class::elementwise, [&] {
      launch_elementwise(n_visual, H, detail::visual_rows_op<Move>{visual_rows_.data(), mview(h, N, H), em}, stream_);
    });
  }
  using module_id = qwen3_vl::schema::module_id;
  void notify(device_linear_observer* obs, bool backward, const std::string& name, const bf16* w, std::int64_t out,
              device_matrix<const bf16> x, device_matrix<const float> y, device_matrix<const bf16> g,
              bool same_input_as_previous = false) const {
    if (obs == nullptr) return;
    device_linear_call call{name, {w, out, x.cols, x.cols}, 0, out, x, y, g, same_input_as_previous};
    if (backward) {
      obs->on_backward(call);
    } else {
      obs->on_forward(call);
      // Y is this model's own fp32 buffer, read only after this call: the observer may replace it.
      if (y.rows > 0) obs->replace_output(call, {const_cast<float*>(y.data), y.rows, y.cols, y.ld});
    }
  }

  void layer_forward(std::int64_t l, std::int64_t N, const float* h_in, float* h_out, device_linear_observer* obs);
  void layer_backward(std::int64_t l, std::int64_t N, const float* h_in, device_linear_observer* obs);

  qwen3_vl::config cfg_;
  const qwen3_vl_text_device_weights& w_;
  std::int64_t max_tokens_;
  std::int64_t chunk_;
  cudaStream_t stream_ = nullptr;
  cublaslt_gemm gemm_;
  double gemm_flops_ = 0.0;
  attention_config attn_cfg_{};
  bool tc_attention_ = false;
  static float attention_scale(const qwen3_vl::text_config& t) { return 1.0f / std::sqrt(static_cast<float>(t.head_dim)); }
  bool fused_library_ = false;
  std::int64_t fused_workspace_limit_ = 0;
  kernel_profile* profile_ = nullptr;
  std::int64_t saved_layers_ = 0;
  std::vector<text_layer_activations> acts_;
  // Layer l's activation set: its own when saved, else the shared recompute set (the last one).
  text_layer_activations& layer_activations(std::int64_t l) {
    return acts_.at(static_cast<std::size_t>(std::min(l, saved_layers_)));
  }
  device_buffer<bf16> d_attn_b_, dqb_, dkb_;
  attention_segments segs_{};
  device_buffer<int> cu_seqlens_;
  device_buffer<std::int64_t> ids_;
  device_buffer<float> saved_h_, h_;
  device_buffer<bf16> hn_;
  device_buffer<float> rf_, cos_, sin_, inv_freq_, logits_chunk_, row_inv_count_;
  device_buffer<bf16> dlogits_chunk_;
  device_buffer<std::int64_t> pos_, targets_, visual_rows_;
  device_buffer<std::uint8_t> mask_;
  device_buffer<float> g_, d_m_, delta_, d_attn_, dq_, dk_, dv_;
  device_buffer<bf16> gb_, d_act_, d_gate_, d_up_, dvb_, dq_raw_, dk_raw_;
};

inline void qwen3_vl_text_model::layer_forward(std::int64_t l, std::int64_t N, const float* h_in, float* h_out,
                                               device_linear_observer* obs) {
  const qwen3_vl::text_config& t = cfg_.text;
  const qwen3_vl_text_layer_weights& lw = w_.layers[static_cast<std::size_t>(l)];
  const std::int64_t H = t.hidden_size, I = t.intermediate_size, hd = t.head_dim;
  const std::int64_t nh = t.num_attention_heads, nkv = t.num_key_value_heads, qd = nh * hd, kvd = nkv * hd;
  const auto eps = static_cast<float>(t.rms_norm_eps);
  const auto name = [l](module_id m) { return qwen3_vl::schema::module_path(m, l); };
  const device_matrix<const float> hin{h_in, N, H, H};
  text_layer_activations& A = layer_activations(l);
  const device_matrix<const float> cos{cos_.data(), N, hd, hd}, sin{sin_.data(), N, hd, hd};

  timed(kernel_class::norm_rope, [&] { rms_norm_forward(hin, lw.input_layernorm.data(), eps, mview(A.a, N, H), A.r1.data(), stream_); });
  const auto a = cview(A.a, N, H);
  linear(a, lw.q_proj.data(), qd, mview(A.q_raw, N, qd));
  linear(a, lw.k_proj.data(), kvd, mview(A.k_raw, N, kvd));
  linear(a, lw.v_proj.data(), kvd, mview(A.v, N, kvd));
  notify(obs, false, name(module_id::q_proj), lw.q_proj.data(), qd, a, cview(A.q_raw, N, qd), {});
  notify(obs, false, name(module_id::k_proj), lw.k_proj.data(), kvd, a, cview(A.k_raw, N, kvd), {});
  notify(obs, false, name(module_id::v_proj), lw.v_proj.data(), kvd, a, cview(A.v, N, kvd), {});
  // Attention in fp32 storage (fp32 arithmetic throughout); only its output is rounded to bf16,
  // the o_proj GEMM operand. bf16 q/k/v/dO cost ~1% on dL/dY of k_proj.
  if (tc_attention_) {
    // q/k norm + RoPE straight into the bf16 attention operands (no fp32 intermediates).
    timed(kernel_class::norm_rope, [&] {
      qk_norm_rope_forward(cview(A.q_raw, N * nh, hd), nh, lw.q_norm.data(), eps, cos, sin, mview(A.qb, N * nh, hd),
                           A.rq.data(), stream_);
      qk_norm_rope_forward(cview(A.k_raw, N * nkv, hd), nkv, lw.k_norm.data(), eps, cos, sin, mview(A.kb, N * nkv, hd),
                           A.rk.data(), stream_);
    });
    convert(cview(A.v, N, kvd), mview(A.vb, N, kvd));
    timed(kernel_class::attention, [&] {
      attention_forward<bf16>(attn_cfg_, segs_, cview(A.qb, N, qd), cview(A.kb, N, kvd), cview(A.vb, N, kvd),
                              mview(A.attn, N, qd), A.lse.data(), stream_);
    });
  } else {
    timed(kernel_class::norm_rope, [&] {
      rms_norm_forward(cview(A.q_raw, N * nh, hd), lw.q_norm.data(), eps, mview(A.qr, N * nh, hd), A.rq.data(), stream_);
      rms_norm_forward(cview(A.k_raw, N * nkv, hd), lw.k_norm.data(), eps, mview(A.kr, N * nkv, hd), A.rk.data(), stream_);
      rope_forward(mview(A.qr, N, qd), nh, cos, sin, stream_);
      rope_forward(mview(A.kr, N, kvd), nkv, cos, sin, stream_);
    });
    timed(kernel_class::attention, [&] {
      attention_forward<float>(attn_cfg_, segs_, cview(A.qr, N, qd), cview(A.kr, N, kvd), cview(A.v, N, kvd),
                               mview(A.attn_f, N, qd), A.lse.data(), stream_);
    });
    convert(cview(A.attn_f, N, qd), mview(A.attn, N, qd));
  }
  const auto attn = cview(A.attn, N, qd);
  linear(attn, lw.o_proj.data(), H, mview(A.o_out, N, H));
  notify(obs, false, name(module_id::o_proj), lw.o_proj.data(), H, attn, cview(A.o_out, N, H), {});
  timed(kernel_class::elementwise, [&] { add(hin, cview(A.o_out, N, H), mview(A.h_mid, N, H)); });
  timed(kernel_class::norm_rope, [&] {
    rms_norm_forward(cview(A.h_mid, N, H), lw.post_attention_layernorm.data(), eps, mview(A.m, N, H), A.r2.data(), stream_);
  });
  const auto m = cview(A.m, N, H);
  linear(m, lw.gate_proj.data(), I, mview(A.gate, N, I));
  linear(m, lw.up_proj.data(), I, mview(A.up, N, I));
  notify(obs, false, name(module_id::gate_proj), lw.gate_proj.data(), I, m, cview(A.gate, N, I), {});
  notify(obs, false, name(module_id::up_proj), lw.up_proj.data(), I, m, cview(A.up, N, I), {});
  timed(kernel_class::elementwise, [&] { swiglu_forward(cview(A.gate, N, I), cview(A.up, N, I), mview(A.act, N, I), stream_); });
  const auto act = cview(A.act, N, I);
  linear(act, lw.down_proj.data(), H, mview(A.down_out, N, H));
  notify(obs, false, name(module_id::down_proj), lw.down_proj.data(), H, act, cview(A.down_out, N, H), {});
  if (h_out != nullptr) {
    timed(kernel_class::elementwise, [&] { add(cview(A.h_mid, N, H), cview(A.down_out, N, H), {h_out, N, H, H}); });
  }
}

// g_ holds dL/d(layer output) on entry and dL/d(layer input) on exit; the layer's activations
// are recomputed from its saved input first.
inline void qwen3_vl_text_model::layer_backward(std::int64_t l, std::int64_t N, const float* h_in,
                                                device_linear_observer* obs) {
  if (l >= saved_layers_) layer_forward(l, N, h_in, nullptr, nullptr);
  text_layer_activations& A = layer_activations(l);
  const qwen3_vl::text_config& t = cfg_.text;
  const qwen3_vl_text_layer_weights& lw = w_.layers[static_cast<std::size_t>(l)];
  const std::int64_t H = t.hidden_size, I = t.intermediate_size, hd = t.head_dim;
  const std::int64_t nh = t.num_attention_heads, nkv = t.num_key_value_heads, qd = nh * hd, kvd = nkv * hd;
  const auto name = [l](module_id m) { return qwen3_vl::schema::module_path(m, l); };
  const device_matrix<const float> cos{cos_.data(), N, hd, hd}, sin{sin_.data(), N, hd, hd};

  // MLP
  convert(cview(g_, N, H), mview(gb_, N, H));
  notify(obs, true, name(module_id::down_proj), lw.down_proj.data(), H, cview(A.act, N, I), cview(A.down_out, N, H),
         cview(gb_, N, H));
  linear_back(cview(gb_, N, H), lw.down_proj.data(), I, mview(d_act_, N, I), false);
  timed(kernel_class::elementwise, [&] {
    swiglu_backward(cview(A.gate, N, I), cview(A.up, N, I), cview(d_act_, N, I), mview(d_gate_, N, I), mview(d_up_, N, I),
                    stream_);
  });
  notify(obs, true, name(module_id::gate_proj), lw.gate_proj.data(), I, cview(A.m, N, H), cview(A.gate, N, I),
         cview(d_gate_, N, I));
  notify(obs, true, name(module_id::up_proj), lw.up_proj.data(), I, cview(A.m, N, H), cview(A.up, N, I), cview(d_up_, N, I),
         true);
  linear_back(cview(d_gate_, N, I), lw.gate_proj.data(), H, mview(d_m_, N, H), false);
  linear_back(cview(d_up_, N, I), lw.up_proj.data(), H, mview(d_m_, N, H), true);
  timed(kernel_class::norm_rope, [&] {
    rms_norm_backward(cview(A.h_mid, N, H), lw.post_attention_layernorm.data(), A.r2.data(), cview(d_m_, N, H),
                      mview(g_, N, H), true, stream_);
  });
  // Attention
  convert(cview(g_, N, H), mview(gb_, N, H));
  notify(obs, true, name(module_id::o_proj), lw.o_proj.data(), H, cview(A.attn, N, qd), cview(A.o_out, N, H),
         cview(gb_, N, H));
  if (tc_attention_) {
    linear_back(cview(gb_, N, H), lw.o_proj.data(), qd, mview(d_attn_b_, N, qd), false);
    timed(kernel_class::attention, [&] {
      attention_backward<bf16>(attn_cfg_, segs_, cview(A.qb, N, qd), cview(A.kb, N, kvd), cview(A.vb, N, kvd),
                               cview(A.attn, N, qd), A.lse.data(), cview(d_attn_b_, N, qd), mview(dqb_, N, qd),
                               mview(dkb_, N, kvd), mview(dvb_, N, kvd), delta_.data(), stream_);
    });
    // The bf16 attention gradients straight through RoPE and the q/k norms (no fp32 copies).
    timed(kernel_class::norm_rope, [&] {
      qk_rope_norm_backward(cview(dqb_, N * nh, hd), nh, cview(A.q_raw, N * nh, hd), lw.q_norm.data(), A.rq.data(),
                            cos, sin, mview(dq_raw_, N * nh, hd), stream_);
      qk_rope_norm_backward(cview(dkb_, N * nkv, hd), nkv, cview(A.k_raw, N * nkv, hd), lw.k_norm.data(),
                            A.rk.data(), cos, sin, mview(dk_raw_, N * nkv, hd), stream_);
    });
  } else {
    linear_back(cview(gb_, N, H), lw.o_proj.data(), qd, mview(d_attn_, N, qd), false);
    timed(kernel_class::attention, [&] {
      attention_backward<float>(attn_cfg_, segs_, cview(A.qr, N, qd), cview(A.kr, N, kvd), cview(A.v, N, kvd),
                                cview(A.attn_f, N, qd), A.lse.data(), cview(d_attn_, N, qd), mview(dq_, N, qd),
                                mview(dk_, N, kvd), mview(dv_, N, kvd), delta_.data(), stream_);
    });
    convert(cview(dv_, N, kvd), mview(dvb_, N, kvd));
    timed(kernel_class::norm_rope, [&] {
      rope_backward(mview(dq_, N, qd), nh, cos, sin, stream_);
      rope_backward(mview(dk_, N, kvd), nkv, cos, sin, stream_);
      rms_norm_backward(cview(A.q_raw, N * nh, hd), lw.q_norm.data(), A.rq.data(), cview(dq_, N * nh, hd),
                        mview(dq_raw_, N * nh, hd), false, stream_);
      rms_norm_backward(cview(A.k_raw, N * nkv, hd), lw.k_norm.data(), A.rk.data(), cview(dk_, N * nkv, hd),
                        mview(dk_raw_, N * nkv, hd), false, stream_);
    });
  }
  const auto a = cview(A.a, N, H);
  notify(obs, true, name(module_id::q_proj), lw.q_proj.data(), qd, a, cview(A.q_raw, N, qd), cview(dq_raw_, N, qd));
  notify(obs, true, name(module_id::k_proj), lw.k_proj.data(), kvd, a, cview(A.k_raw, N, kvd), cview(dk_raw_, N, kvd),
         true);
  notify(obs, true, name(module_id::v_proj), lw.v_proj.data(), kvd, a, cview(A.v, N, kvd), cview(dvb_, N, kvd), true);
  linear_back(cview(dq_raw_, N, qd), lw.q_proj.data(), H, mview(d_m_, N, H), false);
  linear_back(cview(dk_raw_, N, kvd), lw.k_proj.data(), H, mview(d_m_, N, H), true);
  linear_back(cview(dvb_, N, kvd), lw.v_proj.data(), H, mview(d_m_, N, H), true);
  timed(kernel_class::norm_rope, [&] {
    rms_norm_backward(device_matrix<const float>{h_in, N, H, H}, lw.input_layernorm.data(), A.r1.data(),
                      cview(d_m_, N, H), mview(g_, N, H), true, stream_);
  });
}

inline text_run_result qwen3_vl_text_model::run(const qwen3_vl::text_batch& batch, const text_run_options& options,
                                                device_linear_observer* observer, const text_visual_inputs* visual) {
  const qwen3_vl::text_config& t = cfg_.text;
  const std::int64_t B = batch.batch, T = batch.seq, N = B * T;
  const std::int64_t H = t.hidden_size, V = t.vocab_size, L = t.num_hidden_layers;
  if (B <= 0 || T <= 0 || static_cast<std::int64_t>(batch.input_ids.size()) != N ||
      static_cast<std::int64_t>(batch.attention_mask.size()) != N) {
    throw error("cuda qwen3_vl text batch: input_ids/attention_mask must hold batch*seq = " + std::to_string(N) +
                " entries");
  }
  if (N > max_tokens_) {
    throw error("cuda qwen3_vl text batch: " + std::to_string(N) + " tokens, the model was sized for " +
                std::to_string(max_tokens_));
  }
  if (T > INT32_MAX / 2) throw error("cuda qwen3_vl text batch: sequence length too large");
  const bool with_loss = !batch.labels.empty();
  std::vector<std::int64_t> positions = batch.position_ids;
  if (positions.empty()) positions = qwen3_vl::rope_position_ids(batch.input_ids, batch.attention_mask, B, T);
  if (static_cast<std::int64_t>(positions.size()) != 3 * N) {
    throw error("cuda qwen3_vl text batch: position_ids must hold 3*batch*seq = " + std::to_string(3 * N) + " entries");
  }

  allocate_activations();
  // Inputs, rotary tables and segments.
  pos_.copy_from_host(positions.data(), positions.size(), stream_);
  mask_.copy_from_host(batch.attention_mask.data(), batch.attention_mask.size(), stream_);
  mrope_tables(pos_.data(), N, inv_freq_.data(), t.head_dim / 2, t.mrope_section, mview(cos_, N, t.head_dim),
               mview(sin_, N, t.head_dim), stream_);
  std::vector<int> cu(static_cast<std::size_t>(B + 1));
  for (std::int64_t b = 0; b <= B; ++b) cu[static_cast<std::size_t>(b)] = static_cast<int>(b * T);
  cu_seqlens_.upload(cu, stream_);
  attn_cfg_.heads = t.num_attention_heads;
  attn_cfg_.kv_heads = t.num_key_value_heads;
  attn_cfg_.head_dim = t.head_dim;
  attn_cfg_.scale = attention_scale(t);
  attn_cfg_.causal = true;
  // A mask of all ones masks nothing: without it the attention kernels skip the per-key checks.
  const bool padded = std::any_of(batch.attention_mask.begin(), batch.attention_mask.end(), [](auto m) { return m == 0; });
  attn_cfg_.key_valid = padded ? mask_.data() : nullptr;
  attn_cfg_.masked_rows = options.masked_rows;
  attn_cfg_.tensor_cores = tc_attention_;
  attn_cfg_.fused_library = tc_attention_ && fused_library_ && options.fused_attention;
  attn_cfg_.fused_workspace_limit = fused_workspace_limit_;
  segs_ = attention_segments{cu_seqlens_.data(), static_cast<int>(B), static_cast<int>(T), true};
  embedding_forward(batch.input_ids, ids_, cview(w_.embed_tokens, V, H), mview(h_, N, H), stream_);
  const std::int64_t n_visual = visual != nullptr ? static_cast<std::int64_t>(visual->rows.size()) : 0;
  if (n_visual > 0) {
    for (const std::int64_t r : visual->rows) {
      if (r < 0 || r >= N) throw error("cuda qwen3_vl text batch: visual row " + std::to_string(r) + " outside the batch");
    }
    if (visual->embeds.rows != n_visual || visual->embeds.cols != H || visual->embeds.ld != H) {
      throw error("cuda qwen3_vl text batch: " + std::to_string(n_visual) + " image placeholders, image features [" +
                  std::to_string(visual->embeds.rows) + ", " + std::to_string(visual->embeds.cols) + "]");
    }
    for (const auto& d : visual->deepstack) {
      if (d.rows != n_visual || d.cols != H || d.ld != H) throw error("cuda qwen3_vl text batch: deepstack features of the wrong shape");
    }
    if (visual->deepstack.size() > static_cast<std::size_t>(L)) throw error("cuda qwen3_vl text batch: more deepstack features than layers");
    visual_rows_.upload(visual->rows, stream_);
    move_visual_rows<detail::row_move::scatter>(h_, N, visual->embeds.data, n_visual);
  }

  // Forward: each layer's input is saved for a backward (a layer may read and write h_ in place:
  // it reads its input before it writes its output); h_ ends as the final residual stream.
  const bool backward = with_loss && options.backward;
  for (std::int64_t l = 0; l < L; ++l) {
    float* input = h_.data();
    if (backward) {
      input = saved_h_.data() + l * N * H;
      AQ_CUDA_CHECK(cudaMemcpyAsync(input, h_.data(), static_cast<std::size_t>(N * H) * sizeof(float),
                                    cudaMemcpyDeviceToDevice, stream_));
    }
    layer_forward(l, N, input, h_.data(), observer);
    if (n_visual > 0 && l < static_cast<std::int64_t>(visual->deepstack.size())) {
      move_visual_rows<detail::row_move::add>(h_, N, visual->deepstack[static_cast<std::size_t>(l)].data, n_visual);
    }
  }
  rms_norm_forward(cview(h_, N, H), w_.norm.data(), static_cast<float>(t.rms_norm_eps), mview(hn_, N, H), rf_.data(),
                   stream_);
  const auto hn = cview(hn_, N, H);
  const bf16* head = w_.lm_head_weight();
  const device_matrix<const bf16> head_all{head, V, H, H};
  const std::string head_name = qwen3_vl::schema::module_path(module_id::lm_head);
  notify(observer, false, head_name, head, V, hn, {}, {});
  // f(head rows, v0, logits) for each vocabulary chunk in order, its logits computed into logits_chunk_.
  const auto for_each_chunk = [&](auto&& f) {
    for (std::int64_t v0 = 0; v0 < V; v0 += chunk_) {
      const device_matrix<const bf16> w{head_all.row(v0), std::min(chunk_, V - v0), H, H};
      const device_matrix<float> z{logits_chunk_.data(), N, w.rows, chunk_};
      linear(hn, w.data, w.rows, z);
      f(w, v0, z);
    }
  };
  // The LM head's forward output (all of it or one chunk) offered for replacement.
  const auto offer_logits = [&](device_matrix<const bf16> w, std::int64_t v0, device_matrix<float> z) {
    if (observer == nullptr) return;
    observer->replace_output(device_linear_call{head_name, w, v0, V, hn, device_matrix<const float>(z), {}, v0 > 0}, z);
  };

  text_run_result result;
  result.loss = std::nan("");
  if (options.logits) {
    device_buffer<float> logits(static_cast<std::size_t>(N * V));
    linear(hn, head, V, mview(logits, N, V));
    offer_logits(head_all, 0, mview(logits, N, V));
    result.logits = logits.to_host();
  }
  if (options.logits_chunk) {
    for_each_chunk([&](device_matrix<const bf16> w, std::int64_t v0, device_matrix<float> z) {
      offer_logits(w, v0, z);
      options.logits_chunk(device_matrix<const float>(z), v0);
    });
  }
  if (!with_loss) {
    AQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (profile_ != nullptr) profile_->resolve();
    return result;
  }

  // Loss over vocabulary chunks (online log-sum-exp), then dlogits chunk by chunk.
  const lm_targets targets = causal_lm_targets(batch.labels, B, T, V);
  targets_.copy_from_host(targets.target.data(), targets.target.size(), stream_);
  const bool per_row = !options.row_loss_targets.empty();
  if (per_row) {
    if (static_cast<std::int64_t>(options.row_loss_targets.size()) != B) {
      throw error("cuda qwen3_vl text batch: row_loss_targets holds " + std::to_string(options.row_loss_targets.size()) +
                  " counts for " + std::to_string(B) + " sequences");
    }
    std::vector<float> inv(static_cast<std::size_t>(N));
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t c = options.row_loss_targets[static_cast<std::size_t>(b)];
      std::fill_n(inv.begin() + b * T, T, c > 0 ? 1.0f / static_cast<float>(c) : 0.0f);
    }
    row_inv_count_.upload(inv, stream_);
  }
  cross_entropy_state ce(N);
  ce.reset(stream_);
  for_each_chunk([&](device_matrix<const bf16>, std::int64_t v0, device_matrix<float> z) {
    timed(kernel_class::loss, [&] { ce.update(z, v0, targets_.data(), stream_); });
  });
  ce.finalize(targets_.data(), stream_);
  double total = 0.0;
  ce.total.copy_to_host(&total, 1, stream_);
  AQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (profile_ != nullptr) profile_->resolve();
  result.targets = targets.count;
  const std::int64_t denominator = options.loss_targets > 0 ? options.loss_targets : targets.count;
  result.loss = denominator > 0 && !per_row ? total / static_cast<double>(denominator) : std::nan("");
  if (!options.backward) return result;

  // d(hn) accumulates over chunks in d_m_ (fp32), then the final norm's backward seeds g_.
  for_each_chunk([&](device_matrix<const bf16> w, std::int64_t v0, device_matrix<float> z) {
    const device_matrix<bf16> dz{dlogits_chunk_.data(), N, w.rows, chunk_};
    timed(kernel_class::loss, [&] {
      ce.gradient(device_matrix<const float>(z), v0, targets_.data(), denominator, dz, stream_,
                  per_row ? row_inv_count_.data() : nullptr);
    });
    if (observer != nullptr) {
      observer->on_backward(device_linear_call{head_name, w, v0, V, hn, device_matrix<const float>(z),
                                               device_matrix<const bf16>(dz), v0 > 0});
    }
    linear_back(device_matrix<const bf16>(dz), w.data, H, mview(d_m_, N, H), v0 > 0);
  });
  rms_norm_backward(cview(h_, N, H), w_.norm.data(), rf_.data(), cview(d_m_, N, H), mview(g_, N, H), false, stream_);
  // g_ entering layer l's backward is dL/d(layer l's output) = dL/d(deepstack[l]) at the image rows.
  for (std::int64_t l = L - 1; l >= 0; --l) {
    if (n_visual > 0 && l < static_cast<std::int64_t>(visual->d_deepstack.size()) &&
        visual->d_deepstack[static_cast<std::size_t>(l)] != nullptr) {
      move_visual_rows<detail::row_move::gather>(g_, N, visual->d_deepstack[static_cast<std::size_t>(l)], n_visual);
    }
    layer_backward(l, N, saved_h_.data() + l * N * H, observer);
  }
  if (n_visual > 0 && visual->d_embeds != nullptr) {
    move_visual_rows<detail::row_move::gather>(g_, N, visual->d_embeds, n_visual);
  }
  AQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (profile_ != nullptr) profile_->resolve();
  return result;
}

}  // namespace aq::cuda
