// AutoQuant (gradient method, text decoder + lm_head) with calibration and scoring on the GPU:
// the same search space, clamp, allocation, report and quantizer state as autoquant::run_autoquant,
// with the model passes replaced by qwen3_vl_text_model + device_calibration/device_gradient_scorer.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#pragma nv_diag_suppress 20012  // Eigen through the CPU engine headers
#include "aq/autoquant/engine.hpp"
#pragma nv_diag_default 20012
#include "aq/autoquant/progress.hpp"
#include "aq/autoquant/search_space.hpp"
#include "aq/backend/cuda/gradient_scorer.cuh"
#include "aq/backend/cuda/qwen3_vl_text.cuh"
#include "aq/backend/cuda/qwen3_vl_vision.cuh"
#include "aq/model/qwen3_vl/text_batch_pack.hpp"
#include "aq/model/qwen3_vl/text_batch_padding.hpp"
#include "aq/model/qwen3_vl/text_batch_split.hpp"
#include "aq/core/error.hpp"
#include "aq/model/qwen3_vl/text_model.hpp"
#include "aq/score/monotone_clamp.hpp"
#include "aq/search/pareto.hpp"

namespace aq::cuda {

// What the GPU run measured besides the engine's result.
struct autoquant_cuda_stats {
  double calibration_gemm_flops = 0.0;
  double scoring_gemm_flops = 0.0;  // model forward + recompute + backward + recipe GEMMs
  std::size_t peak_device_bytes = 0;  // high-water mark of used device memory seen at stage ends
  std::size_t weight_cache_bytes = 0;  // quantized weights the scorer kept across batches
  std::int64_t batch_tokens = 0;  // tokens in the calibration and score batches (each pass counted)
  std::int64_t run_tokens = 0;    // tokens the passes ran after dropping shared padding
  std::int64_t passes = 0;        // device passes (model runs) of both stages
};

// How the GPU passes run (the engine's options say what they compute).
struct autoquant_cuda_options {
  std::size_t weight_cache_bytes = 0;            // budget for cached Q_w(W) per (module, recipe)
  kernel_profile* calibration_profile = nullptr;  // GPU time per kernel class of each stage
  kernel_profile* scoring_profile = nullptr;
  // Sequences per device pass (0: whole batches). Smaller passes hold less memory; the scores
  // are the whole batch's (same dL/dY, sums in another order).
  std::int64_t micro_batch_rows = 0;
  // Text batches lose the leading padding columns that cannot change a score
  // (qwen3_vl::trim_padding; SDPA masking only): the same scores up to fp32 summation order.
  bool trim_padding = true;
  // With trim_padding and text-only data: the trimmed sequences of a stage are packed into passes
  // of up to this many tokens (qwen3_vl::pack_text_batches; each row keeps its batch's loss
  // denominator). 0: one batch (or micro-batch) per pass.
  std::int64_t max_pass_tokens = 0;
  // Image batches: images[b] holds batch b's pixels and grids (no grids: text only), run through
  // `vision` (tower and decoder share the model's stream). Image batches are never split.
  const std::vector<qwen3_vl::image_batch>* images = nullptr;
  qwen3_vl_vision_model* vision = nullptr;
};

// Device memory in use now (cudaMemGetInfo: total − free).
inline std::size_t device_bytes_in_use() {
  std::size_t free_bytes = 0, total_bytes = 0;
  AQ_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return total_bytes - free_bytes;
}

template <class List = recipes::all_recipes>
std::vector<device_recipe> make_device_recipes(const autoquant::search_space& space) {
  std::vector<device_recipe> out;
  for (std::size_t c = 0; c + 1 < space.candidates.size(); ++c) out.push_back(make_device_recipe<List>(*space.candidates[c].recipe));
  return out;
}

// The whole gradient-method run on text batches. `memory_probe` (optional) is called at points
// where the device holds the most (after each stage's first batch) to track the peak.
template <class List = recipes::all_recipes>
autoquant::autoquant_result run_autoquant_cuda(const autoquant::search_space& space, qwen3_vl_text_model& model,
                                               const std::vector<qwen3_vl::text_batch>& batches,
                                               const autoquant::engine_options& options,
                                               const text_run_options& run_options = {},
                                               const autoquant::progress_callback& progress = {},
                                               autoquant_cuda_stats* stats = nullptr,
                                               const autoquant_cuda_options& cuda_options = {}) {
  using clock = std::chrono::steady_clock;
  const auto seconds_since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
  if (options.method != autoquant::score_method::gradient) {
    throw error("aq-autoquant-cuda: only --method gradient runs on the GPU");
  }
  autoquant::autoquant_result result;
  result.budget_bits = options.adjust_budget ? autoquant::adjusted_budget_bits(options.effective_bits, space.total_params,
                                                                              space.disabled_params)
                                             : options.effective_bits;
  autoquant::check_budget(space, result.budget_bits, options.effective_bits);
  if (options.num_calib_steps < 1 || options.num_score_steps < 1) {
    throw error("autoquant: num_calib_steps and num_score_steps must be >= 1");
  }
  if (batches.empty()) throw error("autoquant: no calibration batches");
  const auto nb = static_cast<std::int64_t>(batches.size());
  result.num_calib_steps = std::min(options.num_calib_steps, nb);
  result.num_score_steps = std::min(options.num_score_steps, nb);
  autoquant_cuda_stats local;
  autoquant_cuda_stats& st = stats != nullptr ? *stats : local;
  const auto probe = [&] { st.peak_device_bytes = std::max(st.peak_device_bytes, device_bytes_in_use()); };
  const auto report = [&](std::string_view stage, std::size_t done, std::size_t total) {
    if (progress) progress(stage, done, total);
  };
  const auto image_of = [&](std::size_t b) -> const qwen3_vl::image_batch* {
    if (cuda_options.images == nullptr || b >= cuda_options.images->size() || (*cuda_options.images)[b].grids.empty()) {
      return nullptr;
    }
    return &(*cuda_options.images)[b];
  };
  const bool trim = cuda_options.trim_padding && run_options.masked_rows == masked_row_policy::zero;
  // The device passes of the text batches `indices`: packed trimmed sequences, or each (trimmed)
  // batch whole or in micro-batches with the whole batch's loss denominator.
  const bool pack = trim && cuda_options.max_pass_tokens > 0 && cuda_options.images == nullptr;
  struct device_pass {
    qwen3_vl::text_batch batch;
    std::int64_t loss_targets = 0;
    std::vector<std::int64_t> row_targets;
  };
  const auto text_passes = [&](const std::vector<std::size_t>& indices, bool labels) {
    std::vector<qwen3_vl::text_batch> stage;
    for (const std::size_t b : indices) {
      qwen3_vl::text_batch whole = batches[b];
      if (!labels) whole.labels.clear();
      if (labels && whole.labels.empty()) throw error("autoquant: batch " + std::to_string(b) + " has no labels");
      st.batch_tokens += whole.batch * whole.seq;
      stage.push_back(trim ? qwen3_vl::trim_padding(whole) : std::move(whole));
    }
    std::vector<device_pass> passes;
    if (pack) {
      for (qwen3_vl::packed_text_batch& p : qwen3_vl::pack_text_batches(stage, cuda_options.max_pass_tokens)) {
        passes.push_back({std::move(p.batch), 0, labels ? std::move(p.row_targets) : std::vector<std::int64_t>{}});
      }
    } else {
      for (const qwen3_vl::text_batch& b : stage) {
        const std::int64_t count =
            labels ? causal_lm_targets(b.labels, b.batch, b.seq, model.model_config().text.vocab_size).count : 0;
        const std::int64_t rows = cuda_options.micro_batch_rows > 0 ? cuda_options.micro_batch_rows : b.batch;
        if (rows >= b.batch) {
          passes.push_back({b, count, {}});
        } else {
          for (qwen3_vl::text_batch& part : qwen3_vl::split_text_batch(b, rows)) passes.push_back({std::move(part), count, {}});
        }
      }
    }
    for (const device_pass& p : passes) st.run_tokens += p.batch.batch * p.batch.seq;
    return passes;
  };
  // One stage over the first n batches: image batches one by one through the vision tower, text
  // batches as text_passes (all together when packing); the memory probe follows the first pass.
  const auto run_stage = [&](std::string_view stage, std::size_t n, bool labels, text_run_options o,
                             device_linear_observer* observer) {
    std::vector<std::size_t> text_indices;
    std::size_t done = 0, total = 0;
    for (std::size_t b = 0; b < n; ++b) {
      if (image_of(b) == nullptr) text_indices.push_back(b);
    }
    const auto run_text = [&](const std::vector<std::size_t>& indices) {
      for (const device_pass& p : text_passes(indices, labels)) {
        o.loss_targets = p.loss_targets;
        o.row_loss_targets = p.row_targets;
        (void)model.run(p.batch, o, observer);
        ++st.passes;
        if (done++ == 0) probe();
      }
    };
    if (pack) {
      total = 1;
      report(stage, 0, total);
      run_text(text_indices);
      report(stage, total, total);
      return;
    }
    total = n;
    report(stage, 0, total);
    for (std::size_t b = 0; b < n; ++b) {
      if (const qwen3_vl::image_batch* img = image_of(b)) {
        qwen3_vl::text_batch batch = batches[b];
        if (!labels) batch.labels.clear();
        o.loss_targets = 0;
        o.row_loss_targets.clear();
        st.batch_tokens += batch.batch * batch.seq;  // image batches run whole
        st.run_tokens += batch.batch * batch.seq;
        (void)run_vl_batch(model.model_config(), model, cuda_options.vision, batch, img, o, observer);
        ++st.passes;
        if (done++ == 0) probe();
      } else {
        run_text({b});
      }
      report(stage, b + 1, total);
    }
  };

  std::vector<bool> active(space.modules.size(), false);
  for (std::size_t m = 0; m < space.modules.size(); ++m) active[m] = space.configurable(space.module_group[m]);
  device_calibration calibration(make_device_recipes<List>(space), space.modules, std::move(active));

  // Calibration: forward only, no labels.
  auto start = clock::now();
  double flops0 = model.gemm_flops();
  {
    device_calibration_observer observer(calibration, model.stream(), cuda_options.calibration_profile);
    model.set_profile(cuda_options.calibration_profile);
    text_run_options o = run_options;
    o.backward = false;
    o.logits = false;
    run_stage("calibration", static_cast<std::size_t>(result.num_calib_steps), false, o, &observer);
    AQ_CUDA_CHECK(cudaStreamSynchronize(model.stream()));
    model.set_profile(nullptr);
  }
  result.timings.calibration = seconds_since(start);
  st.calibration_gemm_flops = model.gemm_flops() - flops0;

  // Scoring: forward, loss, backward with the scorer.
  start = clock::now();
  flops0 = model.gemm_flops();
  std::vector<double> module_scores;
  double scorer_flops = 0.0;
  {
    device_gradient_scorer scorer(calibration, model.gemm(), model.stream(), score_difference::fp32,
                                  cuda_options.weight_cache_bytes, cuda_options.scoring_profile);
    model.set_profile(cuda_options.scoring_profile);
    text_run_options o = run_options;
    o.backward = true;
    o.logits = false;
    run_stage("scoring", static_cast<std::size_t>(result.num_score_steps), true, o, &scorer);
    module_scores = scorer.scores();
    scorer_flops = scorer.gemm_flops();
    st.weight_cache_bytes = scorer.weight_cache_bytes();
    probe();
    model.set_profile(nullptr);
  }
  result.timings.scoring = seconds_since(start);
  st.scoring_gemm_flops = model.gemm_flops() - flops0 + scorer_flops;

  // Group sums in module order, then the engine's clamp, search and report.
  start = clock::now();
  const std::size_t R = calibration.num_recipes();
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    std::vector<double> raw;
    if (space.configurable(g)) {
      raw.assign(R, 0.0);
      for (std::size_t r = 0; r < R; ++r) {
        for (const std::size_t m : space.groups[g].members) raw[r] += module_scores[m * R + r];
      }
    }
    result.choices.push_back(space.choices(g));
    raw.push_back(0.0);  // NONE
    result.scores.push_back(score::monotone_clamp(raw, options.clamp));
    result.raw_scores.push_back(std::move(raw));
  }
  const search::allocation_problem problem = autoquant::cost_problem(space, result.scores);
  const search::pareto_front front(problem);
  result.allocation = front.at_bits(result.budget_bits);
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    result.chosen.push_back(result.choices[g][result.allocation.selection[g]]);
  }
  result.report = autoquant::build_report(space, options, result.budget_bits, result.choices, result.scores,
                                          result.allocation, front);
  result.timings.search = seconds_since(start);

  // Quantizer state of the chosen recipes (modules never run have none, as in ModelOpt).
  const std::vector<float> input_amax = calibration.input_amax_host();
  for (std::size_t m = 0; m < space.modules.size(); ++m) {
    const std::size_t c = result.chosen[space.module_group[m]];
    if (c == space.none_index() || !calibration.has_input_amax(m)) continue;
    const std::string& name = space.module_names[m];
    std::vector<float> w = calibration.weight_amax_host(m, c);
    if (!w.empty()) result.state.push_back({name + ".weight_quantizer._amax", calibration.weight_amax_shape(m, c), std::move(w)});
    if (calibration.recipe(c).input_enabled) result.state.push_back({name + ".input_quantizer._amax", {}, {input_amax[m]}});
  }
  return result;
}

}  // namespace aq::cuda
