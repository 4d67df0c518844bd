// The GPU Qwen3-VL text decoder and gradient scorer against the CPU model and engine, on the
// built-in default model (2 layers, real vocabulary) with bf16-valued weights: logits, loss and
// every linear's dL/dY within relative error 1e-2 (‖gpu − cpu‖ / ‖cpu‖; the GPU keeps bf16
// activations for its GEMMs), gradient scores with Spearman ≥ 0.99 per recipe, same chosen recipes.
#include "aq/backend/cpu/qwen3_vl/model_runner.hpp"
#include "aq/backend/cpu/qwen3_vl/text_model.hpp"
#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/engine/engine.hpp"
#include "aq/model/quantizable_modules.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/search/scope.hpp"
#include "aq/search/search_space.hpp"

#include "cli/default_model.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/kernel_profile.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text_weights.cuh"
#include "aq/backend/cuda/model/qwen3_vl_vision.cuh"
#include "aq/backend/cuda/scoring/cuda_scoring_backend.cuh"
#include "cuda_test_util.cuh"

namespace test_qwen3_vl_cuda {

namespace {

using aq::bf16;
using aq::tensor;
namespace qwen3_vl = aq::qwen3_vl;
namespace autoquant = aq::autoquant;
namespace io = aq::io;
namespace cpu = aq::cpu;
namespace acu = aq::cuda;
using aq_test::expect;
using aq_test::expect_close;
using aq_test::spearman;

// The pipeline on the CPU backend (the reference) and on the CUDA backend (its stats into `stats`).
autoquant::autoquant_result run_cpu(const autoquant::search_space& space, const autoquant::model_runner& runner,
                                    const autoquant::engine_options& e) {
  autoquant::cpu_scoring_backend backend(space, runner);
  return autoquant::run_autoquant(space, backend, e);
}

autoquant::autoquant_result run_gpu(const autoquant::search_space& space, acu::qwen3_vl_text_model& model,
                                    const std::vector<qwen3_vl::text_batch>& text, const autoquant::engine_options& e,
                                    const acu::cuda_scoring_options& options = {},
                                    acu::cuda_scoring_stats* stats = nullptr) {
  acu::cuda_scoring_backend backend(space, model, text, {}, options);
  autoquant::autoquant_result result = autoquant::run_autoquant(space, backend, e);
  if (stats != nullptr) *stats = backend.stats();
  return result;
}

// ‖a − b‖₂ / ‖b‖₂ in fp64.
double norm_rel(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::nan("");
  double d = 0.0, n = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double e = static_cast<double>(a[i]) - b[i];
    d += e * e;
    n += static_cast<double>(b[i]) * b[i];
  }
  return n > 0.0 ? std::sqrt(d / n) : std::sqrt(d);
}

// Largest relative difference of `other`'s raw scores from `ref`'s (0 where equal).
double max_rel_score_diff(const autoquant::autoquant_result& ref, const autoquant::autoquant_result& other) {
  double worst = 0.0;
  for (std::size_t g = 0; g < ref.raw_scores.size(); ++g) {
    for (std::size_t r = 0; r < ref.raw_scores[g].size(); ++r) {
      const double x = ref.raw_scores[g][r], y = other.raw_scores[g][r];
      worst = std::max(worst, x == y ? 0.0 : std::abs(x - y) / std::max(std::abs(x), 1e-300));
    }
  }
  return worst;
}

// Largest relative error of `other`'s quantizer state (amax) against `ref`'s, entry by entry.
double max_rel_state_diff(const autoquant::autoquant_result& ref, const autoquant::autoquant_result& other) {
  double worst = 0.0;
  for (std::size_t i = 0; i < ref.state.size() && i < other.state.size(); ++i) {
    worst = std::max(worst, aq_test::rel_err(other.state[i].values, ref.state[i].values));
  }
  return worst;
}

void round_to_bf16(tensor& t) {
  for (float& x : t.storage()) x = aq::round_to_bf16(x);
}

// Left-padded random batches (labels = ids, -100 on padding), as the caption batches look.
// Row r of batch c is left-padded with min_pad + (5r + 3c) mod ((seq − min_pad) / 2) tokens.
std::vector<io::calib_batch> make_batches(std::int64_t count, std::int64_t batch, std::int64_t seq, std::uint32_t seed,
                                          std::int64_t min_pad = 0) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> token(0, 151642);
  std::vector<io::calib_batch> out;
  for (std::int64_t c = 0; c < count; ++c) {
    io::calib_batch b;
    b.batch_size = batch;
    b.seq_len = seq;
    for (std::int64_t r = 0; r < batch; ++r) {
      const std::int64_t pad = min_pad + (r * 5 + c * 3) % ((seq - min_pad) / 2);
      for (std::int64_t s = 0; s < seq; ++s) {
        const bool valid = s >= pad;
        const std::int32_t id = valid ? token(rng) : 151643;
        b.input_ids.push_back(id);
        b.attention_mask.push_back(valid ? 1 : 0);
        b.labels.push_back(valid ? id : -100);
      }
    }
    out.push_back(std::move(b));
  }
  return out;
}

struct cpu_recorder : qwen3_vl::linear_observer {
  std::map<std::string, std::vector<float>> grad;
  void on_backward(const qwen3_vl::linear_call& c) override {
    std::vector<float>& g = grad[std::string(c.name)];
    for (std::int64_t r = 0; r < c.grad_output.rows; ++r) g.insert(g.end(), c.grad_output.row(r), c.grad_output.row(r) + c.grad_output.cols);
  }
};

struct gpu_recorder : acu::device_linear_observer {
  std::map<std::string, std::vector<float>> grad;
  void on_backward(const acu::device_linear_call& c) override {
    const std::int64_t rows = c.grad_output.rows, cols = c.grad_output.cols, ld = c.grad_output.ld;
    std::vector<bf16> host(static_cast<std::size_t>(rows * ld));
    AQ_CUDA_CHECK(cudaDeviceSynchronize());
    AQ_CUDA_CHECK(cudaMemcpy(host.data(), c.grad_output.data, host.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    std::vector<float>& g = grad[std::string(c.name)];
    if (g.empty()) g.assign(static_cast<std::size_t>(rows * c.weight_rows), 0.0f);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t k = 0; k < cols; ++k) {
        g[static_cast<std::size_t>(r * c.weight_rows + c.row0 + k)] = aq::bf16_to_float(host[static_cast<std::size_t>(r * ld + k)]);
      }
    }
  }
};

// A fused library that records the shapes it is offered and takes none (aq's kernels run).
class recording_library final : public acu::fused_attention_library {
 public:
  std::vector<acu::fused_attention_shape> offered;
  const char* name() const override { return "recorder"; }
  std::string describe() override { return "recorder"; }
  std::int64_t calls() override { return 0; }
  bool accepts(const acu::fused_attention_shape& s) override {
    offered.push_back(s);
    return false;
  }
  void forward(const acu::fused_attention_shape&, const void*, const void*, const void*, void*, float*,
               cudaStream_t) override {}
  void backward(const acu::fused_attention_shape&, const void*, const void*, const void*, const void*, const float*,
                const void*, void*, void*, void*, cudaStream_t) override {}
};

// The shape a caller plans ahead (qwen3_vl_text_model::fused_attention_shape_of) is the one the
// model offers the library in its forward and backward; a pass with fused_attention off offers none.
void test_fused_attention_shape(const qwen3_vl::config& cfg, const acu::qwen3_vl_text_device_weights& dev) {
  const std::int64_t B = 2, T = 24;
  qwen3_vl::text_batch batch;
  batch.batch = B;
  batch.seq = T;
  for (std::int64_t i = 0; i < B * T; ++i) batch.input_ids.push_back((i * 7 + 3) % 1000);
  batch.attention_mask.assign(static_cast<std::size_t>(B * T), 1);
  batch.labels = batch.input_ids;
  acu::qwen3_vl_text_model model(cfg, dev, B * T, 4096);
  model.set_tensor_core_attention(true);
  model.set_fused_attention_library(true, 12345);
  model.set_saved_activations(true);  // no recompute: one forward and one backward call a layer
  recording_library recorder;
  acu::fused_attention_library*& slot = acu::registered_fused_attention_library();
  acu::fused_attention_library* const registered = slot;
  slot = &recorder;
  (void)model.run(batch, {}, nullptr);
  const std::size_t offered = recorder.offered.size();
  acu::text_run_options off;
  off.fused_attention = false;
  (void)model.run(batch, off, nullptr);
  slot = registered;
  const acu::fused_attention_shape want = acu::qwen3_vl_text_model::fused_attention_shape_of(cfg, B, T);
  bool same = offered == 2 * static_cast<std::size_t>(cfg.text.num_hidden_layers);
  for (const acu::fused_attention_shape& s : recorder.offered) {
    same = same && s.batch == want.batch && s.seq == want.seq && s.heads == want.heads && s.kv_heads == want.kv_heads &&
           s.head_dim == want.head_dim && s.ld_q == want.ld_q && s.ld_kv == want.ld_kv && s.scale == want.scale &&
           s.causal == want.causal && s.workspace_limit == 12345;
  }
  expect(same, "every forward and backward offers the library the planned-ahead shape (" + std::to_string(offered) +
                   " offers)");
  expect(recorder.offered.size() == offered, "fused_attention off: no shape offered");
}

// Tolerances: fp32 attention storage 1e-2 on logits, loss and every dL/dY; bf16 tensor-core
// attention (bf16 q/k/v/o/dO, P and dS) 1e-2 on logits and loss, 3e-2 on dL/dY (k_proj's dL/dY
// passes through dS, rounded to bf16 twice).
void test_forward_backward(const qwen3_vl::config& cfg, const qwen3_vl::text_weights& host,
                           const acu::qwen3_vl_text_device_weights& dev, const io::calib_batch& cb,
                           bool tensor_cores) {
  std::printf("    attention: %s\n", tensor_cores ? "bf16 tensor cores" : "fp32 storage");
  const qwen3_vl::text_batch batch = autoquant::to_text_batch(cb);
  const std::int64_t N = batch.batch * batch.seq;
  const qwen3_vl::text_model cpu_model(cfg, host);
  qwen3_vl::run_options co;
  co.masked_rows = cpu::masked_row_policy::zero;
  cpu_recorder cpu_rec;
  const qwen3_vl::text_result ref = cpu_model.run(batch, co, &cpu_rec);

  acu::qwen3_vl_text_model model(cfg, dev, N, 4096);
  model.set_tensor_core_attention(tensor_cores);
  acu::text_run_options go;
  go.logits = true;
  gpu_recorder gpu_rec;
  const acu::text_run_result got = model.run(batch, go, &gpu_rec);

  expect_close(std::abs(got.loss - ref.loss) / std::abs(ref.loss), 1e-2, "loss " + std::to_string(got.loss) + " vs " + std::to_string(ref.loss));
  expect(got.targets == ref.targets, "same number of loss targets (" + std::to_string(got.targets) + ")");
  expect_close(norm_rel(got.logits, ref.logits.storage()), 1e-2, "logits [" + std::to_string(N) + ", vocab]");
  expect(gpu_rec.grad.size() == cpu_rec.grad.size(), "dL/dY reported for every linear (" + std::to_string(cpu_rec.grad.size()) + ")");
  double worst = 0.0;
  std::string worst_name;
  for (const auto& [name, g] : cpu_rec.grad) {
    const auto it = gpu_rec.grad.find(name);
    const double e = it == gpu_rec.grad.end() ? std::nan("") : norm_rel(it->second, g);
    if (!(e <= worst)) {
      worst = e;
      worst_name = name;
    }
  }
  expect_close(worst, tensor_cores ? 3e-2 : 1e-2, "dL/dY of every linear (worst: " + worst_name + ")");
  // Determinism: a second run gives bit-identical logits.
  const acu::text_run_result again = model.run(batch, go, nullptr);
  expect(again.logits == got.logits && again.loss == got.loss, "second run bit-identical");
  // Saved activations (no recompute in the backward) compute the same numbers bit for bit.
  model.set_saved_activations(true);
  gpu_recorder saved_rec;
  const acu::text_run_result saved = model.run(batch, go, &saved_rec);
  expect(saved.logits == got.logits && saved.loss == got.loss && saved_rec.grad == gpu_rec.grad,
         "saved activations: logits, loss and every dL/dY bit-identical to the recompute");
  // Some layers saved, the rest recomputed from the shared set (what a memory budget plans).
  for (std::int64_t k = 1; k < cfg.text.num_hidden_layers; ++k) {
    model.set_saved_layers(k);
    gpu_recorder part_rec;
    const acu::text_run_result part = model.run(batch, go, &part_rec);
    expect(part.logits == got.logits && part.loss == got.loss && part_rec.grad == gpu_rec.grad,
           std::to_string(k) + " of " + std::to_string(cfg.text.num_hidden_layers) +
               " layers saved: logits, loss and every dL/dY bit-identical to the recompute");
  }
}

void test_scores(const qwen3_vl::config& cfg, const qwen3_vl::text_weights& host_text,
                 const qwen3_vl::vision_weights& host_vision, const acu::qwen3_vl_text_device_weights& dev,
                 const std::vector<io::calib_batch>& batches) {
  const std::vector<std::string> formats{"fp8_e4m3", "int8_w8a8"};
  const autoquant::search_space space = autoquant::make_search_space(
      qwen3_vl::text_quantizable_modules(cfg), formats, autoquant::scope_patterns(autoquant::scope_preset::lm));
  autoquant::engine_options e;
  e.num_calib_steps = static_cast<std::int64_t>(batches.size());
  e.num_score_steps = static_cast<std::int64_t>(batches.size());
  e.effective_bits = 8.0;
  const qwen3_vl::vl_model vl(cfg, host_text, host_vision);
  const autoquant::model_runner runner = autoquant::make_model_runner(vl, batches, cpu::masked_row_policy::zero);
  const autoquant::autoquant_result ref = run_cpu(space, runner, e);

  std::vector<qwen3_vl::text_batch> text;
  for (const io::calib_batch& b : batches) text.push_back(autoquant::to_text_batch(b));
  acu::qwen3_vl_text_model model(cfg, dev, batches[0].batch_size * batches[0].seq_len, 8192);
  const autoquant::autoquant_result got = run_gpu(space, model, text, e);

  // Cached quantized weights (formed once, reused by the second batch) and the kernel profile
  // change nothing: bit-identical raw scores; the profile saw every kernel class of each stage.
  {
    acu::kernel_profile pc, ps;
    acu::cuda_scoring_options co;
    co.weight_cache_bytes = std::size_t{1} << 30;
    co.calibration_profile = &pc;
    co.scoring_profile = &ps;
    acu::cuda_scoring_stats st;
    const autoquant::autoquant_result cached = run_gpu(space, model, text, e, co, &st);
    expect(cached.raw_scores == got.raw_scores, "weight cache + profile: bit-identical raw scores");
    expect(st.weight_cache_bytes > 0, "weight cache used (" + std::to_string(st.weight_cache_bytes) + " bytes)");
    using kc = acu::kernel_class;
    for (const kc c : {kc::gemm, kc::attention, kc::norm_rope, kc::elementwise, kc::loss, kc::fake_quant, kc::score_gemm,
                       kc::score}) {
      expect(ps.calls(c) > 0 && ps.ms(c) > 0.0, std::string("score profile has ") + acu::kernel_class_name(c));
    }
    expect(pc.calls(kc::amax) > 0 && pc.calls(kc::score_gemm) == 0, "calibration profile: amax, no recipe GEMMs");
  }
  // fp8_e4m3 and int8_w8a8 products on their codes (opt-in) against bf16 operands (`got`, the
  // default): every product of theirs took the code path, reruns are bit-identical, and both
  // agree with the CPU engine; the distance of each to it is printed (the codes skip the
  // operands' bf16 rounding, which the CPU engine's fp32 fake quantization has not either).
  {
    acu::cuda_scoring_options co;
    co.recipe_gemms = acu::recipe_gemm::codes;
    acu::cuda_scoring_stats st16, stc;
    const autoquant::autoquant_result codes = run_gpu(space, model, text, e, co, &stc);
    const autoquant::autoquant_result again = run_gpu(space, model, text, e, co);
    (void)run_gpu(space, model, text, e, {}, &st16);
    expect(again.raw_scores == codes.raw_scores, "codes: rerun gives bit-identical raw scores");
    acu::cuda_scoring_options cached_codes = co;  // weight codes cached instead of formed per call
    cached_codes.weight_cache_bytes = std::size_t{1} << 30;
    expect(run_gpu(space, model, text, e, cached_codes).raw_scores == codes.raw_scores,
           "codes: cached weight codes give bit-identical raw scores");
    expect(stc.code_products > 0 && st16.code_products == 0,
           "codes: " + std::to_string(stc.code_products) + " recipe products on codes, none by default");
    std::printf("      raw scores vs the CPU engine (max relative): codes %.3e, bf16 operands %.3e\n",
                max_rel_score_diff(ref, codes), max_rel_score_diff(ref, got));
    for (std::size_t r = 0; r + 1 < space.candidates.size(); ++r) {
      std::vector<double> a, b;
      for (std::size_t g = 0; g < space.groups.size(); ++g) {
        if (!space.configurable(g)) continue;
        a.push_back(codes.raw_scores[g][r]);
        b.push_back(ref.raw_scores[g][r]);
      }
      expect(spearman(a, b) >= 0.99, "codes vs the CPU engine: " + std::string(space.candidates[r].recipe->name) +
                                         " Spearman " + std::to_string(spearman(a, b)));
    }
    expect(codes.chosen == ref.chosen, "codes vs the CPU engine: same chosen recipes");
  }
  // Q(X) reused across calls that share X (q/k/v, gate/up, LM-head chunks) vs formed for every
  // call (an observer that hides the sharing): bit-identical module scores.
  {
    struct hide_sharing : acu::device_linear_observer {
      acu::device_linear_observer* inner;
      explicit hide_sharing(acu::device_linear_observer* o) : inner(o) {}
      void on_forward(const acu::device_linear_call& c) override { inner->on_forward(c); }
      void on_backward(const acu::device_linear_call& c) override {
        acu::device_linear_call copy = c;
        copy.same_input_as_previous = false;
        inner->on_backward(copy);
      }
    };
    std::vector<bool> active(space.modules.size(), false);
    for (std::size_t m = 0; m < space.modules.size(); ++m) active[m] = space.configurable(space.module_group[m]);
    acu::device_calibration calibration(acu::make_device_recipes(space), space.modules, active);
    {
      acu::device_calibration_observer obs(calibration, model.stream());
      acu::text_run_options o;
      o.backward = false;
      for (qwen3_vl::text_batch b : text) {
        b.labels.clear();
        (void)model.run(b, o, &obs);
      }
    }
    std::vector<double> scores[2];
    acu::kernel_profile prof[2];
    for (int hide = 0; hide < 2; ++hide) {
      acu::device_gradient_scorer scorer(calibration, model.gemm(), model.stream(), acu::score_difference::fp32, 0,
                                         &prof[hide]);
      hide_sharing hidden(&scorer);
      model.set_profile(&prof[hide]);
      for (const qwen3_vl::text_batch& b : text) (void)model.run(b, {}, hide ? static_cast<acu::device_linear_observer*>(&hidden) : &scorer);
      model.set_profile(nullptr);
      scores[hide] = scorer.scores();
    }
    expect(scores[0] == scores[1], "Q(X) shared across q/k/v, gate/up and LM-head chunks: bit-identical module scores");
    expect(prof[0].calls(acu::kernel_class::fake_quant) < prof[1].calls(acu::kernel_class::fake_quant),
           "Q(X) shared: fewer fake-quant launches (" + std::to_string(prof[0].calls(acu::kernel_class::fake_quant)) +
               " vs " + std::to_string(prof[1].calls(acu::kernel_class::fake_quant)) + ")");
  }
  // Micro-batches of one sequence (what a memory budget may choose): the same dL/dY (the loss
  // mean over the whole batch), so the same scores up to fp32 summation order, the same choices.
  {
    acu::qwen3_vl_text_model small(cfg, dev, batches[0].seq_len, 8192);
    acu::cuda_scoring_options co;
    co.micro_batch_rows = 1;
    const autoquant::autoquant_result micro = run_gpu(space, small, text, e, co);
    // (GEMMs of another height may take another cuBLASLt algorithm: fp32 rounding differs, and a
    // rare element can cross a quantizer rounding boundary; hence 1e-2, not bit identity.)
    expect_close(max_rel_score_diff(got, micro), 1e-2, "micro-batches of 1 sequence: raw scores vs whole batches (max relative)");
    expect(micro.chosen == got.chosen, "micro-batches of 1 sequence: same chosen recipes");
    expect(micro.state.size() == got.state.size(), "micro-batches: same quantizer state entries");
    expect_close(max_rel_state_diff(got, micro), 1e-3, "micro-batches: calibrated amax");
  }

  // Leading padding dropped (the default) vs kept, on batches that are mostly padding: the same
  // scores up to GEMM heights and fp32 sums (1e-2 as for micro-batches), the same choices and
  // amax; and the trimmed GPU run against the CPU engine on the full batches.
  {
    const std::vector<io::calib_batch> padded_io = make_batches(2, 4, 32, 11, 22);
    std::vector<qwen3_vl::text_batch> padded;
    for (const io::calib_batch& b : padded_io) padded.push_back(autoquant::to_text_batch(b));
    acu::cuda_scoring_options keep;
    keep.trim_padding = false;
    acu::cuda_scoring_stats st_trim, st_keep;
    const autoquant::autoquant_result trimmed = run_gpu(space, model, padded, e, {}, &st_trim);
    const autoquant::autoquant_result kept = run_gpu(space, model, padded, e, keep, &st_keep);
    expect(st_keep.run_tokens == st_keep.batch_tokens && 2 * st_trim.run_tokens < st_trim.batch_tokens &&
               st_trim.batch_tokens == st_keep.batch_tokens,
           "padding dropped: " + std::to_string(st_trim.run_tokens) + " of " + std::to_string(st_trim.batch_tokens) +
               " tokens run (kept: " + std::to_string(st_keep.run_tokens) + ")");
    expect_close(max_rel_score_diff(kept, trimmed), 1e-2, "padding dropped vs kept: raw scores (max relative)");
    expect(trimmed.chosen == kept.chosen, "padding dropped vs kept: same chosen recipes");
    expect(kept.state.size() == trimmed.state.size(), "padding dropped vs kept: same quantizer state entries");
    expect_close(max_rel_state_diff(kept, trimmed), 1e-3, "padding dropped vs kept: calibrated amax");
    // Both batches' trimmed rows packed into one pass, each row with its own batch's loss
    // denominator: the same scores, choices and amax again.
    acu::cuda_scoring_options packed_options;
    packed_options.max_pass_tokens = model.max_tokens();
    acu::cuda_scoring_stats st_pack;
    const autoquant::autoquant_result packed = run_gpu(space, model, padded, e, packed_options, &st_pack);
    expect(st_pack.passes == 2 && st_trim.passes == 4,
           "one packed pass per stage (" + std::to_string(st_pack.passes) + "), one per batch unpacked (" +
               std::to_string(st_trim.passes) + ")");
    expect_close(max_rel_score_diff(kept, packed), 1e-2, "packed trimmed passes vs full batches: raw scores (max relative)");
    expect(packed.chosen == kept.chosen && packed.state.size() == kept.state.size(),
           "packed trimmed passes vs full batches: same choices and state entries");
    expect_close(max_rel_state_diff(kept, packed), 1e-3, "packed trimmed passes vs full batches: calibrated amax");
    const autoquant::autoquant_result cpu_full =
        run_cpu(space, autoquant::make_model_runner(vl, padded_io, cpu::masked_row_policy::zero, false), e);
    for (std::size_t r = 0; r + 1 < space.candidates.size(); ++r) {
      std::vector<double> a, b;
      for (std::size_t g = 0; g < space.groups.size(); ++g) {
        if (!space.configurable(g)) continue;
        a.push_back(trimmed.raw_scores[g][r]);
        b.push_back(cpu_full.raw_scores[g][r]);
      }
      expect(spearman(a, b) >= 0.99, "padding dropped on the GPU vs full batches on the CPU: " +
                                         std::string(space.candidates[r].recipe->name) + " Spearman " +
                                         std::to_string(spearman(a, b)));
    }
    expect(trimmed.chosen == cpu_full.chosen, "padding dropped on the GPU vs full batches on the CPU: same choices");
  }

  std::size_t configurable = 0, same = 0;
  for (std::size_t r = 0; r + 1 < space.candidates.size(); ++r) {
    std::vector<double> a, b;
    for (std::size_t g = 0; g < space.groups.size(); ++g) {
      if (!space.configurable(g)) continue;
      a.push_back(got.raw_scores[g][r]);
      b.push_back(ref.raw_scores[g][r]);
    }
    const double rho = spearman(a, b);
    char buf[200];
    std::snprintf(buf, sizeof(buf), "%s scores: Spearman %.4f over %zu groups (>= 0.99)",
                  std::string(space.candidates[r].recipe->name).c_str(), rho, a.size());
    expect(rho >= 0.99, buf);
    double worst = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / std::abs(b[i]));
    std::printf("      max relative score difference %.3e\n", worst);
  }
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (!space.configurable(g)) continue;
    ++configurable;
    same += got.chosen[g] == ref.chosen[g] ? 1 : 0;
  }
  expect(same == configurable, "same chosen recipe in " + std::to_string(same) + " of " + std::to_string(configurable) +
                                   " configurable groups");
  expect(got.allocation.effective_bits == ref.allocation.effective_bits, "same effective bits " + std::to_string(got.allocation.effective_bits));
  expect(!got.state.empty() && got.state.size() == ref.state.size(), "quantizer state has " + std::to_string(ref.state.size()) + " entries");
  // Input amax from bf16 activations vs fp32 ones: within bf16 rounding of the largest |x|.
  double amax_err = 0.0;
  for (std::size_t i = 0; i < std::min(got.state.size(), ref.state.size()); ++i) {
    for (std::size_t k = 0; k < std::min(got.state[i].values.size(), ref.state[i].values.size()); ++k) {
      amax_err = std::max(amax_err, std::abs(static_cast<double>(got.state[i].values[k]) - ref.state[i].values[k]) /
                                        std::abs(static_cast<double>(ref.state[i].values[k])));
    }
  }
  expect_close(amax_err, 1e-2, "calibrated amax (weights and inputs)");
}

// Image+caption batches (one image each, 2×2-merged grid (1, gh, gw)), built by hand: text ids
// around <|vision_start|> <|image_pad|>×n <|vision_end|>, pixels in [-1, 1] rounded to bf16.
// left_pad > 0: batch i starts with left_pad + 3·i padding tokens (mask 0, label ignored).
std::vector<io::calib_batch> make_image_batches(const qwen3_vl::config& cfg, std::uint32_t seed, std::int64_t left_pad = 0) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> token(0, 151642);
  std::uniform_real_distribution<float> pixel(-1.0f, 1.0f);
  const qwen3_vl::vision_config& v = cfg.vision;
  std::vector<io::calib_batch> out;
  for (const auto& grid : {std::array<std::int64_t, 3>{1, 4, 6}, std::array<std::int64_t, 3>{1, 6, 4}}) {
    const std::int64_t n_vis = grid[1] * grid[2] / (v.spatial_merge_size * v.spatial_merge_size);
    io::calib_batch b;
    b.batch_size = 1;
    std::vector<std::int32_t> ids;
    const std::int64_t pads = left_pad > 0 ? left_pad + 3 * static_cast<std::int64_t>(out.size()) : 0;
    ids.assign(static_cast<std::size_t>(pads), 151643);
    for (int i = 0; i < 5; ++i) ids.push_back(token(rng));
    ids.push_back(static_cast<std::int32_t>(cfg.vision_start_token_id));
    for (std::int64_t i = 0; i < n_vis; ++i) ids.push_back(static_cast<std::int32_t>(cfg.image_token_id));
    ids.push_back(static_cast<std::int32_t>(cfg.vision_end_token_id));
    for (int i = 0; i < 7; ++i) ids.push_back(token(rng));
    b.seq_len = static_cast<std::int64_t>(ids.size());
    b.input_ids = ids;
    b.attention_mask.assign(ids.size(), 1);
    b.labels = ids;
    for (std::int64_t i = 0; i < pads; ++i) {
      b.attention_mask[static_cast<std::size_t>(i)] = 0;
      b.labels[static_cast<std::size_t>(i)] = -100;
    }
    b.vision.cols = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size;
    b.vision.rows = grid[0] * grid[1] * grid[2];
    for (std::int64_t i = 0; i < b.vision.rows * b.vision.cols; ++i) b.vision.pixel_values.push_back(aq::round_to_bf16(pixel(rng)));
    b.vision.grid_thw.push_back(grid);
    out.push_back(std::move(b));
  }
  return out;
}

// --scope all on image batches: GPU scores (vision tower + decoder) vs the CPU engine. packed:
// left-padded batches, trimmed and packed with their images into one pass per stage.
void test_image_scores(const qwen3_vl::config& cfg, const qwen3_vl::text_weights& host_text,
                       const qwen3_vl::vision_weights& host_vision, const acu::qwen3_vl_text_device_weights& dev,
                       bool vision_tensor_cores, bool packed = false) {
  std::printf("  image batches, --scope all, vision attention %s%s\n", vision_tensor_cores ? "bf16 tensor cores" : "fp32",
              packed ? ", left-padded, trimmed and packed" : "");
  const std::vector<io::calib_batch> batches = make_image_batches(cfg, 11, packed ? 6 : 0);
  const std::vector<std::string> formats{"fp8_e4m3", "int8_w8a8"};
  const autoquant::search_space space = autoquant::make_search_space(
      qwen3_vl::quantizable_modules(cfg), formats, autoquant::scope_patterns(autoquant::scope_preset::all));
  autoquant::engine_options e;
  e.num_calib_steps = static_cast<std::int64_t>(batches.size());
  e.num_score_steps = static_cast<std::int64_t>(batches.size());
  e.effective_bits = 8.0;
  const qwen3_vl::vl_model vl(cfg, host_text, host_vision);
  const autoquant::model_runner runner = autoquant::make_model_runner(vl, batches, cpu::masked_row_policy::zero);
  const autoquant::autoquant_result ref = run_cpu(space, runner, e);

  std::vector<qwen3_vl::text_batch> text;
  std::vector<qwen3_vl::image_batch> images;
  std::int64_t max_tokens = 0;
  for (const io::calib_batch& b : batches) {
    text.push_back(autoquant::to_text_batch(b));
    images.push_back(autoquant::to_image_batch(b).value());
    max_tokens = std::max(max_tokens, b.seq_len);
  }
  const acu::qwen3_vl_vision_device_weights vdev = acu::upload_vision_weights(cfg, host_vision);
  acu::qwen3_vl_text_model model(cfg, dev, packed ? 2 * max_tokens : max_tokens, 8192);
  acu::qwen3_vl_vision_model vision(cfg, vdev, model);
  vision.set_tensor_core_attention(vision_tensor_cores);
  acu::cuda_scoring_options co;
  co.images = &images;
  co.vision = &vision;
  if (packed) {
    co.max_pass_tokens = model.max_tokens();
    co.max_pass_patches = 48;  // both images (24 patches each)
  }
  acu::cuda_scoring_stats stats;
  const autoquant::autoquant_result got = run_gpu(space, model, text, e, co, &stats);
  if (packed) {
    expect(stats.passes == 2, "packed image batches: one pass per stage, got " + std::to_string(stats.passes));
    expect(stats.run_tokens < stats.batch_tokens, "packed image batches: padding trimmed (" +
                                                      std::to_string(stats.run_tokens) + " of " +
                                                      std::to_string(stats.batch_tokens) + " tokens run)");
  }

  std::size_t vision_groups = 0, configurable = 0, same = 0;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (!space.configurable(g)) continue;
    ++configurable;
    same += got.chosen[g] == ref.chosen[g] ? 1 : 0;
    if (space.groups[g].name.rfind("model.visual.", 0) == 0) {
      ++vision_groups;
      expect(got.raw_scores[g][0] > 0.0 && got.raw_scores[g][1] > 0.0, "vision group scored on the GPU: " + space.groups[g].name);
    }
  }
  expect(vision_groups == 2 * 4 + 1 + 2 + 2, "every vision group configurable (" + std::to_string(vision_groups) + ")");
  for (std::size_t r = 0; r + 1 < space.candidates.size(); ++r) {
    std::vector<double> a, b;
    double worst = 0.0;
    for (std::size_t g = 0; g < space.groups.size(); ++g) {
      if (!space.configurable(g)) continue;
      a.push_back(got.raw_scores[g][r]);
      b.push_back(ref.raw_scores[g][r]);
      worst = std::max(worst, std::abs(a.back() - b.back()) / std::abs(b.back()));
    }
    const double rho = spearman(a, b);
    char buf[200];
    std::snprintf(buf, sizeof(buf), "image batches, %s scores (decoder and vision): Spearman %.4f over %zu groups (>= 0.99), max rel diff %.2e",
                  std::string(space.candidates[r].recipe->name).c_str(), rho, a.size(), worst);
    expect(rho >= 0.99, buf);
  }
  expect(same == configurable, "image batches: same chosen recipe in " + std::to_string(same) + " of " +
                                   std::to_string(configurable) + " groups");
  expect(got.state.size() == ref.state.size(), "image batches: quantizer state has " + std::to_string(ref.state.size()) + " entries");
}

}  // namespace

AQ_GPU_TEST("qwen3_vl cuda") {
  const qwen3_vl::config cfg = autoquant::default_model_config();
  autoquant::generated_model gen = autoquant::make_generated_model(cfg, 0);
  // bf16-valued weights, as a bf16 checkpoint gives both backends.
  round_to_bf16(gen.text.embed_tokens);
  for (qwen3_vl::text_layer_weights& l : gen.text.layers) {
    for (tensor* t : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj, &l.q_norm,
                      &l.k_norm, &l.input_layernorm, &l.post_attention_layernorm}) {
      round_to_bf16(*t);
    }
  }
  round_to_bf16(gen.text.norm);
  const acu::qwen3_vl_text_device_weights dev = acu::upload_text_weights(cfg, gen.text);
  const std::vector<io::calib_batch> batches = make_batches(2, 4, 32, 7);
  test_forward_backward(cfg, gen.text, dev, batches[0], false);
  test_forward_backward(cfg, gen.text, dev, batches[0], true);
  test_fused_attention_shape(cfg, dev);
  test_scores(cfg, gen.text, gen.vision, dev, batches);
  for (tensor* t : {&gen.vision.patch_w, &gen.vision.pos_embed}) round_to_bf16(*t);
  for (qwen3_vl::vision_block_weights& b : gen.vision.blocks) {
    for (tensor* t : {&b.qkv_w, &b.proj_w, &b.fc1_w, &b.fc2_w}) round_to_bf16(*t);
  }
  for (qwen3_vl::merger_weights* m : {&gen.vision.merger}) {
    round_to_bf16(m->fc1_w);
    round_to_bf16(m->fc2_w);
  }
  for (qwen3_vl::merger_weights& m : gen.vision.deepstack) {
    round_to_bf16(m.fc1_w);
    round_to_bf16(m.fc2_w);
  }
  test_image_scores(cfg, gen.text, gen.vision, dev, false);
  test_image_scores(cfg, gen.text, gen.vision, dev, true);
  test_image_scores(cfg, gen.text, gen.vision, dev, true, true);
}

}  // namespace test_qwen3_vl_cuda
