// Closed-loop evaluation on the GPU (mix_metrics.cuh, mix_evaluator.cuh):
// (a) the chunked reduction (KL(p‖q), −log q(label), argmax agreement over labelled rows) against
//     the host's float64 score::token_metrics on random logits, near-equal logits, tied argmaxes and
//     a real-sized vocabulary: KL and NLL within 1e-6 relative, agreements exact;
// (b) measure_mixes on the tiny_tied checkpoint for the unquantized mix, each recipe uniformly and a
//     mixed selection: against float64 metrics of the GPU's own downloaded logits of the same passes
//     (1e-5 relative), KL exactly 0 and full agreement for the unquantized mix, the backend's packed
//     held-out passes equal to whole batches (1e-4), and perplexity within 2e-2 of the CPU engine's
//     fp32 model (bf16 weights and GEMMs on the GPU).
#include "aq/backend/cpu/qwen3_vl/model_runner.hpp"
#include "aq/backend/cpu/qwen3_vl/text_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/engine/evaluation.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/model/causal_lm_targets.hpp"
#include "aq/model/qwen3_vl/checkpoint_source.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/model/qwen3_vl/text_weights.hpp"
#include "aq/score/mix_metrics.hpp"
#include "aq/search/scope.hpp"
#include "aq/search/search_space.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/mix_metrics.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text_checkpoint.hpp"
#include "aq/backend/cuda/model/qwen3_vl_text_weights.cuh"
#include "aq/backend/cuda/scoring/cuda_scoring_backend.cuh"
#include "aq/backend/cuda/scoring/mix_evaluator.cuh"
#include "cuda_test_util.cuh"

namespace test_mix_evaluation_cuda {

namespace {

namespace fs = std::filesystem;
namespace acu = aq::cuda;
namespace qwen3_vl = aq::qwen3_vl;
namespace autoquant = aq::autoquant;
using aq_test::expect;
using aq_test::expect_close;

const fs::path fixture_dir = fs::path(AQ_TEST_FIXTURES) / "qwen3_vl";

double rel(double got, double ref) { return std::abs(got - ref) / std::max(std::abs(ref), 1e-300); }

// Host float64 metrics of row-major logits over the labelled rows.
aq::score::mix_metrics host_metrics(const std::vector<float>& p, const std::vector<float>& q,
                                    const std::vector<std::int64_t>& labels, std::int64_t vocab) {
  aq::score::mix_metrics sum;
  for (std::size_t r = 0; r < labels.size(); ++r) {
    if (labels[r] < 0) continue;
    const float* pr = p.data() + r * vocab;
    sum += aq::score::token_metrics(pr, aq::score::summarize_row(pr, vocab), q.data() + r * vocab, vocab, labels[r]);
  }
  return sum;
}

aq::score::mix_metrics device_metrics(const std::vector<float>& p, const std::vector<float>& q,
                                      const std::vector<std::int64_t>& labels, std::int64_t vocab, std::int64_t chunk) {
  const auto rows = static_cast<std::int64_t>(labels.size());
  const acu::device_buffer<float> pd(p), qd(q);
  const cudaStream_t stream = nullptr;
  acu::device_eval_reference ref;
  ref.begin(rows, vocab, labels, stream);
  for (std::int64_t v0 = 0; v0 < vocab; v0 += chunk) ref.store({pd.data() + v0, rows, std::min(chunk, vocab - v0), vocab}, v0, stream);
  ref.finalize(stream);
  acu::device_buffer<double> totals(3);
  totals.fill_bytes(0, stream);
  acu::device_mix_metrics m;
  m.begin(ref, stream);
  for (std::int64_t v0 = 0; v0 < vocab; v0 += chunk) m.update({qd.data() + v0, rows, std::min(chunk, vocab - v0), vocab}, v0, stream);
  m.finalize(totals.data(), stream);
  AQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<double> t = totals.to_host();
  aq::score::mix_metrics out;
  out.kl_sum = t[0];
  out.nll_sum = t[1];
  out.agreements = static_cast<std::int64_t>(t[2]);
  for (const std::int64_t y : labels) out.tokens += y >= 0 ? 1 : 0;
  return out;
}

void check_metrics(const std::string& what, const aq::score::mix_metrics& got, const aq::score::mix_metrics& ref,
                   double tol) {
  const double kl_err = ref.kl_sum == 0.0 ? std::abs(got.kl_sum) : rel(got.kl_sum, ref.kl_sum);
  expect_close(kl_err, tol, what + ": Σ KL " + std::to_string(got.kl_sum) + " vs float64 " + std::to_string(ref.kl_sum));
  expect_close(rel(got.nll_sum, ref.nll_sum), tol, what + ": Σ NLL");
  expect(got.agreements == ref.agreements && got.tokens == ref.tokens,
         what + ": agreements " + std::to_string(got.agreements) + " of " + std::to_string(got.tokens) + " (host " +
             std::to_string(ref.agreements) + " of " + std::to_string(ref.tokens) + ")");
}

void check_reduction(const std::string& what, const std::vector<float>& p, const std::vector<float>& q,
                     const std::vector<std::int64_t>& labels, std::int64_t vocab, std::int64_t chunk) {
  check_metrics(what + " (chunks of " + std::to_string(chunk) + ")", device_metrics(p, q, labels, vocab, chunk),
                host_metrics(p, q, labels, vocab), 1e-6);
}

void test_reduction() {
  std::printf("  (a) chunked evaluation reduction vs float64\n");
  const std::int64_t rows = 41, vocab = 1000;
  const std::size_t n = static_cast<std::size_t>(rows * vocab);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(rows));
  std::mt19937 rng(5);
  for (std::size_t r = 0; r < labels.size(); ++r) labels[r] = r % 5 == 0 ? -100 : static_cast<std::int64_t>(rng() % vocab);
  const std::vector<float> p = aq_test::random_floats(n, 1, 2.0f);
  std::vector<float> q = aq_test::random_floats(n, 2, 0.1f);
  for (std::size_t i = 0; i < n; ++i) q[i] += p[i];
  for (const std::int64_t chunk : {std::int64_t{128}, std::int64_t{1000}, std::int64_t{7}}) check_reduction("q near p", p, q, labels, vocab, chunk);
  check_reduction("independent p and q", p, aq_test::random_floats(n, 3, 2.0f), labels, vocab, 128);
  const aq::score::mix_metrics same = device_metrics(p, p, labels, vocab, 128);
  expect(std::abs(same.kl_sum) < 1e-9 && same.agreements == same.tokens, "q = p: KL 0 and every argmax agrees");
  // Ties: rows of one value (argmax 0 on both sides), and a tie across chunks (first index wins).
  std::vector<float> flat(n, 0.5f), tied = flat;
  for (std::int64_t r = 0; r < rows; ++r) {
    tied[static_cast<std::size_t>(r * vocab + 3)] = 2.0f;
    tied[static_cast<std::size_t>(r * vocab + 900)] = 2.0f;
  }
  check_reduction("all-equal rows", flat, flat, labels, vocab, 128);
  check_reduction("a tie across chunks", tied, flat, labels, vocab, 128);
  check_reduction("a tie across chunks, q", flat, tied, labels, vocab, 128);
  const std::int64_t big_vocab = 151936, few = 3;
  const std::vector<std::int64_t> few_labels{17, -100, 151935};
  check_reduction("vocabulary 151936", aq_test::random_floats(static_cast<std::size_t>(few * big_vocab), 7, 3.0f),
                  aq_test::random_floats(static_cast<std::size_t>(few * big_vocab), 8, 3.0f), few_labels, big_vocab, 8192);
}

std::vector<qwen3_vl::text_batch> held_out_batches(const qwen3_vl::config& cfg) {
  std::vector<qwen3_vl::text_batch> out;
  std::mt19937 rng(23);
  std::uniform_int_distribution<std::int64_t> token(0, cfg.text.vocab_size - 1);
  for (const auto& [rows, seq] : {std::pair<std::int64_t, std::int64_t>{3, 9}, {2, 12}}) {
    qwen3_vl::text_batch b;
    b.batch = rows;
    b.seq = seq;
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t s = 0; s < seq; ++s) {
        std::int64_t id = token(rng);
        while (id == cfg.image_token_id || id == cfg.vision_start_token_id) id = token(rng);
        const bool valid = s >= r * 2;  // row r left-padded by 2r
        b.input_ids.push_back(valid ? id : 0);
        b.attention_mask.push_back(valid ? 1 : 0);
        b.labels.push_back(valid ? id : -100);
      }
    }
    out.push_back(std::move(b));
  }
  return out;
}

void test_tiny_model() {
  std::printf("  (b) tiny_tied: measure_mixes vs float64 on the GPU's logits and vs the CPU engine\n");
  const qwen3_vl::config cfg = aq::read_qwen3_vl_config(fixture_dir / "tiny_tied" / "config.json");
  const aq::safetensors_checkpoint ck(fixture_dir / "tiny_tied");
  const qwen3_vl::text_weights host = qwen3_vl::load_text_weights(cfg, qwen3_vl::checkpoint_weight_source(ck));
  const acu::qwen3_vl_text_device_weights dev = acu::load_text_weights(cfg, ck);
  const std::vector<qwen3_vl::text_batch> batches = held_out_batches(cfg);
  const std::vector<std::string> formats{"fp8_e4m3", "int8_w8a8", "w4a16"};
  const autoquant::search_space space = autoquant::make_search_space(
      qwen3_vl::text_quantizable_modules(cfg), formats, autoquant::scope_patterns(autoquant::scope_preset::lm));
  std::vector<std::vector<std::size_t>> selections;
  for (std::size_t c = space.none_index() + 1; c-- > 0;) {
    std::vector<std::size_t> sel(space.groups.size(), space.none_index());
    for (std::size_t g = 0; g < sel.size(); ++g) sel[g] = space.configurable(g) ? c : space.none_index();
    selections.push_back(sel);
  }
  std::vector<std::size_t> mixed(space.groups.size(), space.none_index());
  for (std::size_t g = 0; g < mixed.size(); ++g) mixed[g] = space.configurable(g) ? g % space.candidates.size() : space.none_index();
  selections.push_back(mixed);
  std::vector<aq::score::module_mix> mixes;
  for (const auto& sel : selections) mixes.push_back(autoquant::module_mix_of(space, sel));

  // Calibration on the held-out batches themselves (what is calibrated does not matter here).
  acu::qwen3_vl_text_model model(cfg, dev, 36, 64);
  const acu::text_run_options run_options;
  acu::cuda_scoring_options options;
  options.held_out = &batches;
  acu::cuda_scoring_backend backend(space, model, batches, run_options, options);
  backend.calibrate(batches.size(), {});
  std::size_t calls = 0;
  const std::vector<aq::score::mix_metrics> packed =
      backend.measure_mixes(mixes, [&](std::string_view stage, std::size_t, std::size_t) { calls += stage == "evaluation"; });
  expect(calls > mixes.size(), "progress: stage evaluation, one step per pass and mix");

  // The same passes unpacked, and float64 metrics of the downloaded logits of each.
  acu::device_calibration calibration(acu::make_device_recipes(space), space.modules,
                                      std::vector<bool>(space.modules.size(), true));
  {
    acu::device_calibration_observer observer(calibration, model.stream(), nullptr);
    acu::text_run_options o;
    o.backward = false;
    for (qwen3_vl::text_batch b : batches) {
      b.labels.clear();
      (void)model.run(b, o, &observer);
    }
  }
  const std::vector<aq::score::mix_metrics> whole = acu::measure_mixes(model, calibration, batches, mixes, run_options, {});
  acu::device_quantized_mix_forward observer(calibration, model.gemm(), model.stream());
  acu::text_run_options o;
  o.backward = false;
  o.logits = true;
  const std::int64_t V = cfg.text.vocab_size;
  for (std::size_t i = 0; i < mixes.size(); ++i) {
    aq::score::mix_metrics ref;
    for (qwen3_vl::text_batch b : batches) {
      const aq::lm_targets t = aq::attended_targets(aq::causal_lm_targets(b.labels, b.batch, b.seq, V), b.attention_mask);
      b.labels.clear();
      const acu::text_run_result p = model.run(b, o, nullptr);
      observer.select(mixes[i]);
      const acu::text_run_result q = model.run(b, o, &observer);
      ref += host_metrics(p.logits, q.logits, t.target, V);
    }
    check_metrics("mix " + std::to_string(i) + " vs float64 on the downloaded logits", whole[i], ref, 1e-5);
    check_metrics("mix " + std::to_string(i) + ": packed held-out passes vs whole batches", packed[i], whole[i], 1e-4);
  }
  expect(whole[0].kl_sum == 0.0 && whole[0].agreements == whole[0].tokens,
         "the unquantized mix: KL exactly 0, every argmax agrees");

  // The CPU engine (fp32 model) on the same batches: perplexities agree to the bf16 model's accuracy.
  const qwen3_vl::text_model cpu_model(cfg, host);
  autoquant::model_runner runner;
  runner.num_batches = batches.size();
  for (const qwen3_vl::text_batch& b : batches) runner.targets.push_back(aq::attended_targets(aq::causal_lm_targets(b.labels, b.batch, b.seq, V), b.attention_mask));
  runner.run = [&](std::size_t i, autoquant::model_pass pass, qwen3_vl::linear_observer* obs) {
    qwen3_vl::text_batch b = batches.at(i);
    b.labels.clear();
    qwen3_vl::run_options ro;
    ro.masked_rows = aq::cpu::masked_row_policy::zero;
    ro.backward = false;
    (void)pass;
    return cpu_model.run(b, ro, obs);
  };
  aq::score::calibrated_recipes cpu_calibration = autoquant::make_calibrated_recipes(space);
  autoquant::calibrate(runner, cpu_calibration, static_cast<std::int64_t>(batches.size()));
  const std::vector<aq::score::mix_metrics> cpu = aq::score::measure_mixes(runner, cpu_calibration, mixes);
  for (std::size_t i = 0; i < mixes.size(); ++i) {
    std::printf("    mix %zu: GPU KL %.5g ppl %.6g top-1 %.4f | CPU KL %.5g ppl %.6g top-1 %.4f\n", i, whole[i].mean_kl(),
                whole[i].perplexity(), whole[i].top1_agreement(), cpu[i].mean_kl(), cpu[i].perplexity(),
                cpu[i].top1_agreement());
    expect_close(rel(whole[i].perplexity(), cpu[i].perplexity()), 2e-2, "mix " + std::to_string(i) + ": perplexity GPU vs CPU");
  }
}

}  // namespace

AQ_GPU_TEST("mix evaluation cuda") {
  test_reduction();
  test_tiny_model();
}

}  // namespace test_mix_evaluation_cuda
