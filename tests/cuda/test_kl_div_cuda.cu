// KL-div scoring on the GPU (kl_div.cuh, kl_div_scorer.cuh):
// (a) the chunked reduction −Σ_rows Σ_v softmax(p)·log_softmax(q) against a float64 host reference
//     of the CPU's formula on random logits, all-equal rows, large magnitudes and a real-sized
//     vocabulary: relative error ≤ 1e-6 (everything after the fp32 logits is fp64 on both sides);
// (b) kl_div_group_scores on the tiny_tied checkpoint (13 groups, two batches with padding):
//     - against the CPU model run with the GPU's bf16 GEMM operands (every linear's X, Q(X) and
//       Q(W) rounded to bf16, calibrated on the rounded X; the score formula of the CPU engine):
//       Spearman ≥ 0.999 per recipe over groups and the KL part of every score (score − H(p))
//       within 1e-2 relative. Neighbouring KLs there are ≥ 1.3% apart, while the GPU computes that
//       arithmetic to ~1e-7 (the fixtures' bf16-operand reference);
//     - against the CPU engine's kl_div_scores (fp32 model) on the same batches: every score within
//       5e-2 relative (H(p) dominates: 2e-4 expected) and Spearman ≥ 0.95 per recipe. Not 0.999:
//       the bf16 operands alone move the KLs of this random model by up to 10% (fp8_e4m3) and 44%
//       (int8_w8a8) while neighbouring KLs are 0.5% apart, so the bf16-operand CPU run itself
//       ranks at Spearman 0.978 / 0.984 against the fp32 engine;
//     - against the float64 cross-entropy of the GPU's own downloaded logits of every pass within
//       1e-5 (the same forwards; only the LM-head GEMM's shape differs); a batch split into parts
//       for a smaller model within 1e-3;
// (c) NONE as the recipe (fake quant off: Y replaced by the very same GEMM) scores every group the
//     same (1e-9), at the float64 entropy H(p) of the downloaded logits (1e-6): KL 0; a quantizing
//     recipe never scores below it.
#include "aq/backend/cpu/qwen3_vl/model_runner.hpp"
#include "aq/backend/cpu/qwen3_vl/text_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/backend/cpu/score/kl_div_scorer.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/model/quantizable_modules.hpp"
#include "aq/model/qwen3_vl/checkpoint_source.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/model/qwen3_vl/text_weights.hpp"
#include "aq/search/scope.hpp"
#include "aq/search/search_space.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/kl_div.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text_checkpoint.hpp"
#include "aq/backend/cuda/model/qwen3_vl_text_weights.cuh"
#include "aq/backend/cuda/scoring/gradient_scorer.cuh"
#include "aq/backend/cuda/scoring/kl_div_scorer.cuh"
#include "cuda_test_util.cuh"

namespace test_kl_div_cuda {

namespace {

namespace fs = std::filesystem;
namespace acu = aq::cuda;
namespace qwen3_vl = aq::qwen3_vl;
namespace autoquant = aq::autoquant;
using aq_test::expect;
using aq_test::expect_close;
using aq_test::spearman;

const fs::path fixture_dir = fs::path(AQ_TEST_FIXTURES) / "qwen3_vl";

// −Σ_r Σ_v softmax(p_r)_v · log_softmax(q_r)_v in float64, two passes per row (max, then Σ exp),
// exactly the formula of score::cross_entropy_sum.
double host_cross_entropy(const std::vector<float>& p, const std::vector<float>& q, std::int64_t rows,
                          std::int64_t vocab) {
  const auto lse = [&](const float* z) {
    double hi = -INFINITY;
    for (std::int64_t v = 0; v < vocab; ++v) hi = std::max(hi, static_cast<double>(z[v]));
    double s = 0.0;
    for (std::int64_t v = 0; v < vocab; ++v) s += std::exp(static_cast<double>(z[v]) - hi);
    return hi + std::log(s);
  };
  double total = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* pr = p.data() + r * vocab;
    const float* qr = q.data() + r * vocab;
    const double lp = lse(pr), lq = lse(qr);
    double sum = 0.0;
    for (std::int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(pr[v]) - lp) * (static_cast<double>(qr[v]) - lq);
    total -= sum;
  }
  return total;
}

double rel(double got, double ref) { return std::abs(got - ref) / std::max(std::abs(ref), 1e-300); }

// The device reduction over chunks of `chunk` columns (views into row-major [rows, vocab] logits,
// so ld > cols), accumulated `passes` times into one total.
double device_cross_entropy(const std::vector<float>& p, const std::vector<float>& q, std::int64_t rows,
                            std::int64_t vocab, std::int64_t chunk, int passes = 1) {
  const acu::device_buffer<float> pd(p), qd(q);
  const cudaStream_t stream = nullptr;
  acu::device_reference_distribution ref;
  ref.begin(rows, vocab);
  for (std::int64_t v0 = 0; v0 < vocab; v0 += chunk) {
    ref.store({pd.data() + v0, rows, std::min(chunk, vocab - v0), vocab}, v0, stream);
  }
  ref.finalize(stream);
  acu::device_buffer<double> total(1);
  total.fill_bytes(0, stream);
  acu::device_cross_entropy_sum ce;
  for (int i = 0; i < passes; ++i) {
    ce.begin(ref, stream);
    for (std::int64_t v0 = 0; v0 < vocab; v0 += chunk) {
      ce.update({qd.data() + v0, rows, std::min(chunk, vocab - v0), vocab}, v0, stream);
    }
    ce.finalize(total.data(), stream);
  }
  AQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  return total.to_host()[0];
}

void check_reduction(const std::string& what, const std::vector<float>& p, const std::vector<float>& q,
                     std::int64_t rows, std::int64_t vocab, std::int64_t chunk) {
  const double ref = host_cross_entropy(p, q, rows, vocab);
  const double got = device_cross_entropy(p, q, rows, vocab, chunk);
  char buf[200];
  std::snprintf(buf, sizeof(buf), "%s: %lld x %lld in chunks of %lld: %.9g vs float64 %.9g", what.c_str(),
                static_cast<long long>(rows), static_cast<long long>(vocab), static_cast<long long>(chunk), got, ref);
  expect_close(rel(got, ref), 1e-6, buf);
}

void test_reduction() {
  std::printf("  (a) chunked cross-entropy reduction vs float64\n");
  const std::int64_t rows = 37, vocab = 1000;
  const std::size_t n = static_cast<std::size_t>(rows * vocab);
  const std::vector<float> p = aq_test::random_floats(n, 1, 2.0f);
  std::vector<float> q = aq_test::random_floats(n, 2, 0.1f);
  for (std::size_t i = 0; i < n; ++i) q[i] += p[i];  // a slightly perturbed p
  for (const std::int64_t chunk : {std::int64_t{128}, std::int64_t{1000}, std::int64_t{7}}) {
    check_reduction("random logits, q near p", p, q, rows, vocab, chunk);
  }
  check_reduction("q = p (the entropy H(p))", p, p, rows, vocab, 128);
  check_reduction("independent p and q", p, aq_test::random_floats(n, 3, 2.0f), rows, vocab, 128);
  // Rows of one value each (uniform distributions: log V per row), against each other and random.
  std::vector<float> flat_p(n), flat_q(n);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::fill_n(flat_p.begin() + r * vocab, vocab, 0.25f * static_cast<float>(r) - 3.0f);
    std::fill_n(flat_q.begin() + r * vocab, vocab, -0.5f * static_cast<float>(r) + 1.0f);
  }
  check_reduction("all-equal rows (log V each)", flat_p, flat_q, rows, vocab, 128);
  expect_close(rel(host_cross_entropy(flat_p, flat_q, rows, vocab), static_cast<double>(rows) * std::log(1000.0)), 1e-12,
               "all-equal rows: the float64 reference is rows·log V");
  check_reduction("random p, all-equal q", p, flat_q, rows, vocab, 128);
  check_reduction("all-equal p, random q", flat_p, q, rows, vocab, 128);
  // Large magnitudes: peaked distributions around a large offset (fp32 logits ~1e4 ± 1e3).
  check_reduction("large magnitudes", aq_test::random_floats(n, 4, 1000.0f, 10000.0f),
                  aq_test::random_floats(n, 5, 1000.0f, -10000.0f), rows, vocab, 128);
  std::vector<float> big_p = aq_test::random_floats(n, 6, 30.0f, 5000.0f), big_q = big_p;
  for (std::size_t i = 0; i < n; i += 3) big_q[i] += 1.0f;
  check_reduction("large magnitudes, q near p", big_p, big_q, rows, vocab, 128);
  // A real vocabulary (Qwen3-VL's 151936) in the model's default chunks of 8192.
  const std::int64_t big_vocab = 151936, few = 3;
  const std::vector<float> vp = aq_test::random_floats(static_cast<std::size_t>(few * big_vocab), 7, 3.0f);
  const std::vector<float> vq = aq_test::random_floats(static_cast<std::size_t>(few * big_vocab), 8, 3.0f);
  check_reduction("vocabulary 151936", vp, vq, few, big_vocab, 8192);
  // finalize adds to the total: two passes give twice one.
  const double once = device_cross_entropy(p, q, rows, vocab, 128, 1);
  const double twice = device_cross_entropy(p, q, rows, vocab, 128, 2);
  expect_close(rel(twice, 2.0 * once), 1e-12, "two passes accumulate into one total");
}

// The fixture's text case (2 × 11, left padding) and a random 3 × 9 batch (row 1 left-padded by 2)
// of token ids that are not vision placeholders.
std::vector<qwen3_vl::text_batch> fixture_batches(const qwen3_vl::config& cfg) {
  const aq::safetensors_file ref(fixture_dir / "tiny_tied.reference.safetensors", aq::readable_dtypes);
  const auto i64 = [&](const std::string& name) { return aq::to_int64_vector(ref.at(name)); };
  qwen3_vl::text_batch a;
  a.batch = ref.at("text.input_ids").shape[0];
  a.seq = ref.at("text.input_ids").shape[1];
  a.input_ids = i64("text.input_ids");
  for (const std::int64_t m : i64("text.attention_mask")) a.attention_mask.push_back(static_cast<std::uint8_t>(m));
  a.labels = i64("text.labels");
  qwen3_vl::text_batch b;
  b.batch = 3;
  b.seq = 9;
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::int64_t> token(0, cfg.text.vocab_size - 1);
  for (std::int64_t r = 0; r < b.batch; ++r) {
    for (std::int64_t s = 0; s < b.seq; ++s) {
      std::int64_t id = token(rng);
      while (id == cfg.image_token_id || id == cfg.vision_start_token_id) id = token(rng);
      const bool valid = r != 1 || s >= 2;
      b.input_ids.push_back(valid ? id : 0);
      b.attention_mask.push_back(valid ? 1 : 0);
      b.labels.push_back(valid ? id : -100);
    }
  }
  return {a, b};
}

// Forward-only GPU calibration of every batch (no padding trimmed, as the CPU runner below).
void calibrate_gpu(acu::qwen3_vl_text_model& model, acu::device_calibration& calibration,
                   const std::vector<qwen3_vl::text_batch>& batches) {
  acu::device_calibration_observer observer(calibration, model.stream());
  acu::text_run_options o;
  o.backward = false;
  for (qwen3_vl::text_batch b : batches) {
    b.labels.clear();
    (void)model.run(b, o, &observer);
  }
  AQ_CUDA_CHECK(cudaStreamSynchronize(model.stream()));
}

// The GPU's own passes with the logits downloaded (the full LM head in one GEMM): Σ over batches of
// the float64 −Σ p·log q of the group-quantized pass against the unquantized one.
double downloaded_score(acu::qwen3_vl_text_model& model, acu::device_calibration& calibration,
                        const std::vector<qwen3_vl::text_batch>& batches, const std::vector<bool>& in_group,
                        std::size_t recipe) {
  acu::device_quantized_mix_forward observer(calibration, model.gemm(), model.stream());
  std::vector<std::size_t> members;
  for (std::size_t m = 0; m < in_group.size(); ++m) {
    if (in_group[m]) members.push_back(m);
  }
  observer.select_group(members, recipe);
  acu::text_run_options o;
  o.backward = false;
  o.logits = true;
  const std::int64_t V = model.model_config().text.vocab_size;
  double total = 0.0;
  for (qwen3_vl::text_batch b : batches) {
    b.labels.clear();
    const acu::text_run_result p = model.run(b, o, nullptr);
    const acu::text_run_result q = model.run(b, o, &observer);
    total += host_cross_entropy(p.logits, q.logits, b.batch * b.seq, V);
  }
  return total;
}

// Σ over batches of the float64 entropy H(p) of the GPU's unquantized logits.
double downloaded_entropy(acu::qwen3_vl_text_model& model, const std::vector<qwen3_vl::text_batch>& batches) {
  acu::text_run_options o;
  o.backward = false;
  o.logits = true;
  double total = 0.0;
  for (qwen3_vl::text_batch b : batches) {
    b.labels.clear();
    const acu::text_run_result p = model.run(b, o, nullptr);
    total += host_cross_entropy(p.logits, p.logits, b.batch * b.seq, model.model_config().text.vocab_size);
  }
  return total;
}

// Σ over batches of the CPU engine's H(p) (its own formula with q = p).
double cpu_entropy(const autoquant::model_runner& runner, const std::vector<qwen3_vl::text_batch>& batches) {
  double total = 0.0;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const aq::score::reference_distribution p(runner.run(b, autoquant::model_pass::logits, nullptr).logits);
    total += aq::score::cross_entropy_sum(p, p.logits.matrix());
  }
  return total;
}

std::vector<acu::device_recipe> device_recipes(const autoquant::search_space& space) {
  std::vector<acu::device_recipe> out;
  for (std::size_t c = 0; c + 1 < space.candidates.size(); ++c) out.push_back(acu::make_device_recipe(*space.candidates[c].recipe));
  return out;
}

std::vector<bool> active_modules(const autoquant::search_space& space) {
  std::vector<bool> active(space.modules.size(), false);
  for (std::size_t m = 0; m < space.modules.size(); ++m) active[m] = space.configurable(space.module_group[m]);
  return active;
}

std::vector<bool> members(const autoquant::search_space& space, std::size_t g) {
  std::vector<bool> in(space.modules.size(), false);
  for (const std::size_t m : space.groups[g].members) in[m] = true;
  return in;
}

// The CPU model with the GPU's bf16 GEMM operands: every linear's Y recomputed from bf16(X) (the
// model's W is bf16-valued already); the selected group's members from bf16(Q(bf16 X)) and
// bf16(Q(W)) as device_quantized_mix_forward forms them. In calibration mode it records the amax
// of bf16(X) and the weight amax instead.
class bf16_operand_forward : public qwen3_vl::linear_observer {
 public:
  explicit bf16_operand_forward(aq::score::calibrated_recipes& calibration) : calib_(calibration) {}
  void calibrate(bool on) { calibrating_ = on; }
  void select(std::vector<bool> in_group, std::size_t recipe) {
    in_group_ = std::move(in_group);
    recipe_ = recipe;
  }
  void on_forward(const qwen3_vl::linear_call& call) override {
    if (!calibrating_) return;
    const auto m = calib_.module_index(call.name);
    if (!m || !calib_.active(*m)) return;
    calib_.observe_input(*m, rounded(call.input).matrix());
    for (std::size_t r = 0; r < calib_.num_recipes(); ++r) (void)calib_.weight(*m, r, call.weight);
  }
  void replace_output(const qwen3_vl::linear_call& call, aq::matrix_view output) override {
    aq::tensor x = rounded(call.input);
    aq::tensor y({output.rows, output.cols});
    const auto m = calib_.module_index(call.name);
    if (!calibrating_ && m && *m < in_group_.size() && in_group_[*m]) {
      const aq::score::recipe_kernels& k = calib_.recipe(recipe_);
      const aq::tensor w = rounded(calib_.weight(*m, recipe_, call.weight).values.matrix());
      if (k.input_enabled) {
        aq::tensor xq({x.matrix().rows, x.matrix().cols});
        k.quantize_input(x.matrix(), std::span<float>(xq.storage()), calib_.input_amax(*m));
        x = rounded(xq.matrix());
      }
      aq::cpu::linear_forward(x.matrix(), w.matrix(), y.matrix(), call.bias);
    } else {
      aq::cpu::linear_forward(x.matrix(), call.weight, y.matrix(), call.bias);
    }
    for (std::int64_t r = 0; r < output.rows; ++r) std::copy_n(y.data() + r * output.cols, output.cols, output.row(r));
  }

 private:
  static aq::tensor rounded(const aq::const_matrix_view& v) {
    aq::tensor t({v.rows, v.cols});
    for (std::int64_t r = 0; r < v.rows; ++r) {
      for (std::int64_t c = 0; c < v.cols; ++c) t.data()[r * v.cols + c] = aq::round_to_bf16(v.row(r)[c]);
    }
    return t;
  }
  aq::score::calibrated_recipes& calib_;
  bool calibrating_ = false;
  std::vector<bool> in_group_;
  std::size_t recipe_ = 0;
};

void test_fixture_scores() {
  std::printf("  (b, c) tiny_tied: GPU kl_div_group_scores vs the CPU engine's kl_div_scores\n");
  const qwen3_vl::config cfg = aq::read_qwen3_vl_config(fixture_dir / "tiny_tied" / "config.json");
  const aq::safetensors_checkpoint ck(fixture_dir / "tiny_tied");
  const qwen3_vl::text_weights host = qwen3_vl::load_text_weights(cfg, qwen3_vl::checkpoint_weight_source(ck));
  const acu::qwen3_vl_text_device_weights dev = acu::load_text_weights(cfg, ck);
  const std::vector<qwen3_vl::text_batch> batches = fixture_batches(cfg);
  const std::vector<std::string> formats{"fp8_e4m3", "int8_w8a8"};
  const autoquant::search_space space =
      autoquant::make_search_space(qwen3_vl::text_quantizable_modules(cfg), formats, autoquant::scope_patterns(autoquant::scope_preset::lm));
  const std::size_t steps = batches.size();

  // CPU engine: fp32 model, every row of every batch (logits passes never trim padding).
  const qwen3_vl::text_model cpu_model(cfg, host);
  autoquant::model_runner runner;
  runner.num_batches = batches.size();
  runner.run = [&](std::size_t i, autoquant::model_pass pass, qwen3_vl::linear_observer* observer) {
    qwen3_vl::text_batch b = batches.at(i);
    if (pass != autoquant::model_pass::gradient) b.labels.clear();
    qwen3_vl::run_options ro;
    ro.masked_rows = aq::cpu::masked_row_policy::zero;
    ro.backward = pass == autoquant::model_pass::gradient;
    return cpu_model.run(b, ro, observer);
  };
  aq::score::calibrated_recipes cpu_calibration = autoquant::make_calibrated_recipes(space);
  autoquant::calibrate(runner, cpu_calibration, static_cast<std::int64_t>(steps));
  const std::vector<std::vector<double>> cpu =
      autoquant::kl_div_scores(space, runner, cpu_calibration, static_cast<std::int64_t>(steps));

  // GPU: bf16 model, LM head in chunks of 64 (211 = 3 × 64 + 19), sdpa masking as the CPU.
  const std::int64_t max_tokens = 27;
  acu::qwen3_vl_text_model model(cfg, dev, max_tokens, 64);
  acu::device_calibration calibration(device_recipes(space), space.modules, active_modules(space));
  calibrate_gpu(model, calibration, batches);
  std::size_t last_done = 0, last_total = 0, calls = 0;
  const autoquant::progress_callback progress = [&](std::string_view stage, std::size_t done, std::size_t total) {
    if (stage == "scoring") ++calls;
    last_done = done;
    last_total = total;
  };
  const acu::text_run_options run_options;
  const std::vector<std::vector<double>> gpu =
      acu::kl_div_group_scores(space, model, calibration, batches, steps, run_options, progress);

  std::size_t configurable = 0;
  for (std::size_t g = 0; g < space.groups.size(); ++g) configurable += space.configurable(g) ? 1 : 0;
  const std::size_t R = formats.size();
  const auto name = [&](std::size_t r) { return std::string(space.candidates[r].recipe->name); };
  bool shapes = gpu.size() == space.groups.size() && cpu.size() == gpu.size();
  for (std::size_t g = 0; shapes && g < gpu.size(); ++g) {
    shapes = gpu[g].size() == (space.configurable(g) ? R : 0) && cpu[g].size() == gpu[g].size();
  }
  expect(shapes && configurable == 13, "scores per group and quantizing recipe, as the CPU engine's (" +
                                           std::to_string(configurable) + " configurable groups)");
  if (!shapes) return;
  expect(calls == 2 * configurable + 1 && last_done == last_total && last_total == 2 * configurable,
         "progress: 0, then one step per batch and group (" + std::to_string(calls) + " calls)");

  // (c) NONE as the recipe: the quantized pass is the unquantized one, so every group scores H(p);
  // recipe 1 of this calibration is candidate 0.
  const std::vector<acu::device_recipe> none_and_first{acu::make_device_recipe(*space.candidates[space.none_index()].recipe),
                                                       acu::make_device_recipe(*space.candidates[0].recipe)};
  acu::device_calibration none_calibration(none_and_first, space.modules, active_modules(space));
  calibrate_gpu(model, none_calibration, batches);
  const std::vector<std::vector<double>> none =
      acu::kl_div_group_scores(space, model, none_calibration, batches, steps, run_options, {});
  // The GPU's H(p), through the very passes and reduction of the scores (KL = score − H(p)).
  const double gpu_entropy = none[space.module_group[0]][0];

  // (b) Against the CPU with the GPU's bf16 operands: scores, and each side's H(p) for the KL part.
  aq::score::calibrated_recipes emu_calibration = autoquant::make_calibrated_recipes(space);
  bf16_operand_forward emu(emu_calibration);
  emu.calibrate(true);
  for (std::size_t b = 0; b < batches.size(); ++b) (void)runner.run(b, autoquant::model_pass::calibrate, &emu);
  emu.calibrate(false);
  emu.select(std::vector<bool>(space.modules.size(), false), 0);
  std::vector<aq::score::reference_distribution> emu_reference;
  double emu_entropy = 0.0;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    emu_reference.emplace_back(runner.run(b, autoquant::model_pass::logits, &emu).logits);
    emu_entropy += aq::score::cross_entropy_sum(emu_reference.back(), emu_reference.back().logits.matrix());
  }
  const double fp32_entropy = cpu_entropy(runner, batches);
  for (std::size_t r = 0; r < R; ++r) {
    std::vector<double> a, b;
    double worst_kl = 0.0;
    for (std::size_t g = 0; g < space.groups.size(); ++g) {
      if (!space.configurable(g)) continue;
      emu.select(members(space, g), r);
      double score = 0.0;
      for (std::size_t i = 0; i < batches.size(); ++i) {
        score += aq::score::cross_entropy_sum(emu_reference[i],
                                              runner.run(i, autoquant::model_pass::logits, &emu).logits.matrix());
      }
      a.push_back(score);
      b.push_back(gpu[g][r]);
      worst_kl = std::max(worst_kl, rel(gpu[g][r] - gpu_entropy, score - emu_entropy));
      std::printf("    %-62s %s KL: GPU %.5g, CPU bf16 operands %.5g, CPU fp32 %.5g\n", space.groups[g].name.c_str(),
                  name(r).c_str(), gpu[g][r] - gpu_entropy, score - emu_entropy, cpu[g][r] - fp32_entropy);
    }
    char buf[200];
    std::snprintf(buf, sizeof(buf), "%s: Spearman of GPU vs CPU-with-bf16-operands scores over %zu groups %.5f (gate 0.999)",
                  name(r).c_str(), a.size(), spearman(a, b));
    expect(spearman(a, b) >= 0.999, buf);
    expect_close(worst_kl, 1e-2, name(r) + ": KL part of every GPU score vs the CPU with bf16 operands");
  }

  // (b) Against the CPU engine (fp32 model).
  double worst = 0.0;
  for (std::size_t r = 0; r < R; ++r) {
    std::vector<double> a, b;
    for (std::size_t g = 0; g < space.groups.size(); ++g) {
      if (!space.configurable(g)) continue;
      a.push_back(cpu[g][r]);
      b.push_back(gpu[g][r]);
      worst = std::max(worst, rel(gpu[g][r], cpu[g][r]));
    }
    const double rho = spearman(a, b);
    char buf[200];
    std::snprintf(buf, sizeof(buf), "%s: Spearman of GPU vs CPU engine (fp32) scores over %zu groups %.5f (gate 0.95)",
                  name(r).c_str(), a.size(), rho);
    expect(rho >= 0.95, buf);
  }
  expect_close(worst, 5e-2, "every GPU score vs the CPU engine's (bf16 vs fp32 model)");

  // The device pipeline against float64 on the GPU's own downloaded logits, every group and recipe.
  double worst_own = 0.0;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (!space.configurable(g)) continue;
    for (std::size_t r = 0; r < R; ++r) {
      worst_own = std::max(worst_own, rel(gpu[g][r], downloaded_score(model, calibration, batches, members(space, g), r)));
    }
  }
  expect_close(worst_own, 1e-5, "every score vs float64 on the GPU's downloaded logits of the same passes");

  // A model sized for 22 tokens runs the 3 × 9 batch as 2 + 1 sequences: the same sums.
  acu::qwen3_vl_text_model small(cfg, dev, 22, 64);
  const std::vector<std::vector<double>> split =
      acu::kl_div_group_scores(space, small, calibration, batches, steps, run_options, {});
  double worst_split = 0.0;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    for (std::size_t r = 0; r < split[g].size(); ++r) worst_split = std::max(worst_split, rel(split[g][r], gpu[g][r]));
  }
  expect_close(worst_split, 1e-3, "a batch larger than the model runs in parts of whole sequences: same scores");
  // steps bounds the batches: the first batch alone gives less than both.
  const std::vector<std::vector<double>> first =
      acu::kl_div_group_scores(space, model, calibration, batches, 1, run_options, {});
  bool smaller = true;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    for (std::size_t r = 0; r < first[g].size(); ++r) smaller = smaller && first[g][r] > 0.0 && first[g][r] < gpu[g][r];
  }
  expect(smaller, "steps = 1 scores the first batch only");

  // (c) NONE as the recipe (computed above): every group the same score, H(p) of the downloaded
  // logits, and the first quantizing recipe never below it.
  const double entropy = downloaded_entropy(model, batches);
  double spread = 0.0, to_entropy = 0.0;
  bool first_above = true;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (!space.configurable(g)) continue;
    spread = std::max(spread, rel(none[g][0], none[space.module_group[0]][0]));
    to_entropy = std::max(to_entropy, rel(none[g][0], entropy));
    first_above = first_above && none[g][1] >= none[g][0] * (1.0 - 1e-12);
  }
  expect_close(spread, 1e-9, "NONE recipe: every group the same score (bit-identical passes give 0)");
  char buf[160];
  std::snprintf(buf, sizeof(buf), "NONE recipe: the score is H(p) = %.9g, KL 0", entropy);
  expect_close(to_entropy, 1e-6, buf);
  expect(first_above, name(0) + " scores never below NONE's (KL ≥ 0)");
}

}  // namespace

AQ_GPU_TEST("kl_div cuda") {
  test_reduction();
  test_fixture_scores();
}

}  // namespace test_kl_div_cuda
