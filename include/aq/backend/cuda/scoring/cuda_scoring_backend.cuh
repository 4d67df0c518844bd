// The GPU scoring backend: max calibration and gradient scores with qwen3_vl_text_model (+ the
// vision tower for image batches) and device_calibration/device_gradient_scorer, KL-div scores
// through kl_div_group_scores, behind the pipeline's scoring_backend interface
// (autoquant::run_autoquant drives it; budget, clamp, search and reports are the pipeline's).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/backend/cuda/model/qwen3_vl_text.cuh"
#include "aq/backend/cuda/model/qwen3_vl_vision.cuh"
#include "aq/backend/cuda/scoring/gradient_scorer.cuh"
#include "aq/backend/cuda/scoring/kl_div_scorer.cuh"
#include "aq/backend/cuda/scoring/mix_evaluator.cuh"
#include "aq/core/error.hpp"
#include "aq/core/progress.hpp"
#include "aq/model/qwen3_vl/batch.hpp"
#include "aq/model/qwen3_vl/text_batch_pack.hpp"
#include "aq/model/qwen3_vl/text_batch_padding.hpp"
#include "aq/model/qwen3_vl/text_batch_split.hpp"
#include "aq/model/qwen3_vl/vl_batch_pack.hpp"
#include "aq/score/mix_metrics.hpp"
#include "aq/score/scoring_backend.hpp"
#include "aq/search/search_space.hpp"

namespace aq::cuda {

// What the GPU passes measured besides the pipeline's result.
struct cuda_scoring_stats {
  double calibration_gemm_flops = 0.0;
  double scoring_gemm_flops = 0.0;  // model forward + recompute + backward + recipe GEMMs
  std::size_t peak_device_bytes = 0;  // high-water mark of used device memory seen at stage ends
  std::size_t weight_cache_bytes = 0;  // quantized weights the scorer kept across batches
  std::int64_t batch_tokens = 0;  // tokens in the calibration and score batches (each pass counted)
  std::int64_t run_tokens = 0;    // tokens the passes ran after dropping shared padding
  std::int64_t passes = 0;        // device passes (model runs) of both stages
  std::size_t code_products = 0;  // recipe products (module, recipe, call) that ran on codes
};

// How the GPU passes run (the pipeline's options say what they compute).
struct cuda_scoring_options {
  std::size_t weight_cache_bytes = 0;            // budget for cached Q_w(W) per (module, recipe)
  // Y_r of fp8_e4m3 / int8_w8a8-like recipes on bf16 fake-quantized operands or on their codes
  // (tensor-core e4m3 / int8).
  recipe_gemm recipe_gemms = recipe_gemm::bf16;
  kernel_profile* calibration_profile = nullptr;  // GPU time per kernel class of each stage
  kernel_profile* scoring_profile = nullptr;
  // Sequences per device pass (0: whole batches). Smaller passes hold less memory; the scores
  // are the whole batch's (same dL/dY, sums in another order).
  std::int64_t micro_batch_rows = 0;
  // Text batches lose the leading padding columns that cannot change a score
  // (qwen3_vl::trim_padding; SDPA masking only): the same scores up to fp32 summation order.
  bool trim_padding = true;
  // With trim_padding: the trimmed sequences of a stage are packed into passes of up to this many
  // tokens (qwen3_vl::pack_text_batches; each row keeps its batch's loss denominator), image rows
  // with their images (qwen3_vl::pack_vl_batches). 0: one batch (or micro-batch) per pass.
  std::int64_t max_pass_tokens = 0;
  // With images and packing: vision patches a pass may hold (the tower's activations grow with
  // them). 0: image batches are not packed.
  std::int64_t max_pass_patches = 0;
  // Image batches: images[b] holds batch b's pixels and grids (no grids: text only), run through
  // `vision` (tower and decoder share the model's stream). Unpacked image batches run whole.
  const std::vector<qwen3_vl::image_batch>* images = nullptr;
  qwen3_vl_vision_model* vision = nullptr;
  // Held-out text batches (with labels) that measure_mixes evaluates on.
  const std::vector<qwen3_vl::text_batch>* held_out = nullptr;
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

// The model, the batches, the images and vision tower the options name, and the search space
// must outlive the backend. The device calibration state is built when calibration starts.
class cuda_scoring_backend final : public autoquant::scoring_backend {
 public:
  cuda_scoring_backend(const autoquant::search_space& space, qwen3_vl_text_model& model,
                       const std::vector<qwen3_vl::text_batch>& batches, const text_run_options& run_options = {},
                       const cuda_scoring_options& options = {})
      : cuda_scoring_backend(space, model, batches, make_device_recipes(space), run_options, options) {}
  // Recipes of another compile-time list: make_device_recipes<List>(space).
  cuda_scoring_backend(const autoquant::search_space& space, qwen3_vl_text_model& model,
                       const std::vector<qwen3_vl::text_batch>& batches, std::vector<device_recipe> recipes,
                       const text_run_options& run_options = {}, const cuda_scoring_options& options = {})
      : space_(space),
        model_(model),
        batches_(batches),
        recipes_(std::move(recipes)),
        run_options_(run_options),
        options_(options),
        trim_(options.trim_padding && run_options.masked_rows == masked_row_policy::zero),
        pack_(trim_ && options.max_pass_tokens > 0 && (options.images == nullptr || options.max_pass_patches > 0)) {}

  const cuda_scoring_stats& stats() const { return stats_; }

  std::size_t num_batches() const override { return batches_.size(); }

  // Forward only, no labels; the stage ends with the stream synchronised.
  void calibrate(std::size_t steps, const autoquant::progress_callback& progress) override {
    std::vector<bool> active(space_.modules.size(), false);
    for (std::size_t m = 0; m < space_.modules.size(); ++m) active[m] = space_.configurable(space_.module_group[m]);
    calibration_.emplace(recipes_, space_.modules, std::move(active));
    input_amax_.reset();
    const double flops0 = model_.gemm_flops();
    device_calibration_observer observer(*calibration_, model_.stream(), options_.calibration_profile);
    model_.set_profile(options_.calibration_profile);
    text_run_options o = run_options_;
    o.backward = false;
    o.logits = false;
    run_stage("calibration", steps, false, o, &observer, progress);
    AQ_CUDA_CHECK(cudaStreamSynchronize(model_.stream()));
    model_.set_profile(nullptr);
    stats_.calibration_gemm_flops = model_.gemm_flops() - flops0;
  }

  // Forward, loss, backward with the scorer: [module][candidate].
  std::vector<std::vector<double>> gradient_module_scores(std::size_t steps,
                                                          const autoquant::progress_callback& progress) override {
    device_calibration& calibration = calibrated();
    const double flops0 = model_.gemm_flops();
    std::vector<double> flat;
    double scorer_flops = 0.0;
    {
      device_gradient_scorer scorer(calibration, model_.gemm(), model_.stream(), score_difference::fp32,
                                    options_.weight_cache_bytes, options_.scoring_profile, options_.recipe_gemms);
      model_.set_profile(options_.scoring_profile);
      text_run_options o = run_options_;
      o.backward = true;
      o.logits = false;
      run_stage("scoring", steps, true, o, &scorer, progress);
      flat = scorer.scores();
      scorer_flops = scorer.gemm_flops();
      stats_.weight_cache_bytes = scorer.weight_cache_bytes();
      stats_.code_products = scorer.code_products();
      probe();
      model_.set_profile(nullptr);
    }
    stats_.scoring_gemm_flops = model_.gemm_flops() - flops0 + scorer_flops;
    const std::size_t R = calibration.num_recipes();
    std::vector<std::vector<double>> scores(space_.modules.size());
    for (std::size_t m = 0; m < scores.size(); ++m) scores[m].assign(flat.begin() + m * R, flat.begin() + (m + 1) * R);
    return scores;
  }

  std::vector<std::vector<double>> kl_div_group_scores(std::size_t steps,
                                                       const autoquant::progress_callback& progress) override {
    if (options_.images != nullptr) throw error("--method kl_div on the GPU: text batches only, no image-caption data");
    return cuda::kl_div_group_scores(space_, model_, calibrated(), batches_, steps, run_options_, progress);
  }

  std::vector<score::mix_metrics> measure_mixes(const std::vector<score::module_mix>& mixes,
                                                const autoquant::progress_callback& progress) override {
    if (options_.held_out == nullptr) throw error("evaluation: the GPU backend was given no held-out batches");
    if (options_.images != nullptr) {
      throw error("evaluation on the GPU: text batches only (evaluate image-caption data with --device cpu)");
    }
    return cuda::measure_mixes(model_, calibrated(), held_out_passes(), mixes, run_options_, progress);
  }

  bool module_ran(std::size_t module) const override {
    return calibration_.has_value() && calibration_->has_input_amax(module);
  }
  autoquant::weight_amax weight_amax_of(std::size_t module, std::size_t candidate) const override {
    if (!calibration_) return {};
    std::vector<float> values = calibration_->weight_amax_host(module, candidate);
    if (values.empty()) return {};
    return {calibration_->weight_amax_shape(module, candidate), std::move(values)};
  }
  // One download of every input amax (after calibration the stream is synchronised).
  float input_amax(std::size_t module) const override {
    if (!input_amax_) input_amax_ = calibrated().input_amax_host();
    return input_amax_->at(module);
  }

 private:
  struct device_pass {
    qwen3_vl::text_batch batch;
    std::int64_t loss_targets = 0;
    std::vector<std::int64_t> row_targets;
    qwen3_vl::image_batch images;  // no grids: text only
  };

  device_calibration& calibrated() {
    if (!calibration_) throw error("cuda_scoring_backend: scores asked for before calibration");
    return *calibration_;
  }
  const device_calibration& calibrated() const {
    if (!calibration_) throw error("cuda_scoring_backend: state asked for before calibration");
    return *calibration_;
  }

  // Tracks the peak at points where the device holds the most (each stage's first pass, its end).
  void probe() { stats_.peak_device_bytes = std::max(stats_.peak_device_bytes, device_bytes_in_use()); }

  static void report(const autoquant::progress_callback& progress, std::string_view stage, std::size_t done,
                     std::size_t total) {
    if (progress) progress(stage, done, total);
  }

  const qwen3_vl::image_batch* image_of(std::size_t b) const {
    if (options_.images == nullptr || b >= options_.images->size() || (*options_.images)[b].grids.empty()) {
      return nullptr;
    }
    return &(*options_.images)[b];
  }

  // The device passes of the text batches `indices`: packed trimmed sequences, or each (trimmed)
  // batch whole or in micro-batches with the whole batch's loss denominator.
  std::vector<device_pass> text_passes(const std::vector<std::size_t>& indices, bool labels) {
    std::vector<qwen3_vl::text_batch> stage;
    for (const std::size_t b : indices) {
      qwen3_vl::text_batch whole = batches_[b];
      if (!labels) whole.labels.clear();
      if (labels && whole.labels.empty()) throw error("autoquant: batch " + std::to_string(b) + " has no labels");
      stats_.batch_tokens += whole.batch * whole.seq;
      if (pack_ && options_.images != nullptr) {
        stage.push_back(qwen3_vl::positioned_batch(std::move(whole), image_of(b), vl_ids(), true));
      } else {
        stage.push_back(trim_ ? qwen3_vl::trim_padding(whole) : std::move(whole));
      }
    }
    std::vector<device_pass> passes;
    if (pack_ && options_.images != nullptr) {
      passes = image_passes(indices, stage, labels);
    } else if (pack_) {
      for (qwen3_vl::packed_text_batch& p : qwen3_vl::pack_text_batches(stage, options_.max_pass_tokens)) {
        passes.push_back({std::move(p.batch), 0, labels ? std::move(p.row_targets) : std::vector<std::int64_t>{}, {}});
      }
    } else {
      for (const qwen3_vl::text_batch& b : stage) {
        const std::int64_t count =
            labels ? causal_lm_targets(b.labels, b.batch, b.seq, model_.model_config().text.vocab_size).count : 0;
        const std::int64_t rows = options_.micro_batch_rows > 0 ? options_.micro_batch_rows : b.batch;
        if (rows >= b.batch) {
          passes.push_back({b, count, {}, {}});
        } else {
          for (qwen3_vl::text_batch& part : qwen3_vl::split_text_batch(b, rows)) passes.push_back({std::move(part), count, {}, {}});
        }
      }
    }
    for (const device_pass& p : passes) stats_.run_tokens += p.batch.batch * p.batch.seq;
    return passes;
  }

  qwen3_vl::vl_pack_ids vl_ids() const {
    const qwen3_vl::config& cfg = model_.model_config();
    return {cfg.image_token_id, cfg.vision.spatial_merge_size};
  }

  // Packed passes of the trimmed, positioned batches `stage` (text_passes' `indices`), each row
  // with its own images. The images are viewed in place where the indices are a prefix of the
  // options' list (every packed stage), so the pixels are copied once, into the passes.
  std::vector<device_pass> image_passes(const std::vector<std::size_t>& indices,
                                        std::span<const qwen3_vl::text_batch> stage, bool labels) const {
    const std::vector<qwen3_vl::image_batch>& all = *options_.images;
    bool prefix = indices.size() <= all.size();
    for (std::size_t i = 0; prefix && i < indices.size(); ++i) prefix = indices[i] == i;
    std::vector<qwen3_vl::image_batch> copies;
    if (!prefix) {
      for (const std::size_t b : indices) copies.push_back(image_of(b) != nullptr ? *image_of(b) : qwen3_vl::image_batch{});
    }
    const std::span<const qwen3_vl::image_batch> images =
        prefix ? std::span<const qwen3_vl::image_batch>(all).first(indices.size()) : std::span<const qwen3_vl::image_batch>(copies);
    std::vector<device_pass> passes;
    for (qwen3_vl::packed_vl_batch& p :
         qwen3_vl::pack_vl_batches(stage, images, options_.max_pass_tokens, options_.max_pass_patches, vl_ids())) {
      passes.push_back({std::move(p.text.batch), 0, labels ? std::move(p.text.row_targets) : std::vector<std::int64_t>{},
                        std::move(p.images)});
    }
    return passes;
  }

  // The held-out batches as passes the model holds, labels kept: trimmed and packed like the
  // scoring passes, or whole batches split by rows.
  std::vector<qwen3_vl::text_batch> held_out_passes() const {
    std::vector<qwen3_vl::text_batch> stage;
    for (const qwen3_vl::text_batch& b : *options_.held_out) stage.push_back(trim_ ? qwen3_vl::trim_padding(b) : b);
    std::vector<qwen3_vl::text_batch> passes;
    if (trim_) {
      for (qwen3_vl::packed_text_batch& p : qwen3_vl::pack_text_batches(stage, model_.max_tokens())) {
        passes.push_back(std::move(p.batch));
      }
      return passes;
    }
    for (const qwen3_vl::text_batch& b : stage) {
      const std::int64_t rows = std::max<std::int64_t>(1, model_.max_tokens() / std::max<std::int64_t>(1, b.seq));
      for (qwen3_vl::text_batch& part : qwen3_vl::split_text_batch(b, rows)) passes.push_back(std::move(part));
    }
    return passes;
  }

  // One stage over the first n batches: when packing, every batch in text_passes (image rows with
  // their images through the vision tower); else image batches whole one by one and text batches
  // as text_passes. A pass whose shape is its stage's odd one out runs aq's attention kernels
  // (qwen3_vl::planned_pass_shapes). The memory probe follows the first pass.
  void run_stage(std::string_view stage, std::size_t n, bool labels, text_run_options o,
                 device_linear_observer* observer, const autoquant::progress_callback& progress) {
    std::vector<std::size_t> text_indices;
    std::size_t done = 0;
    for (std::size_t b = 0; b < n; ++b) {
      if (pack_ || image_of(b) == nullptr) text_indices.push_back(b);
    }
    const auto run_text = [&](const std::vector<std::size_t>& indices) {
      const std::vector<device_pass> passes = text_passes(indices, labels);
      std::vector<qwen3_vl::text_batch> shapes;
      for (const device_pass& p : passes) {
        shapes.emplace_back();
        shapes.back().batch = p.batch.batch;
        shapes.back().seq = p.batch.seq;
      }
      const std::vector<bool> planned = qwen3_vl::planned_pass_shapes(shapes);
      for (std::size_t i = 0; i < passes.size(); ++i) {
        const device_pass& p = passes[i];
        o.fused_attention = planned[i];
        o.loss_targets = p.loss_targets;
        o.row_loss_targets = p.row_targets;
        (void)run_vl_batch(model_.model_config(), model_, options_.vision, p.batch, &p.images, o, observer);
        ++stats_.passes;
        if (done++ == 0) probe();
      }
    };
    if (pack_) {  // one step: every batch in one packed run
      report(progress, stage, 0, 1);
      run_text(text_indices);
      report(progress, stage, 1, 1);
      return;
    }
    report(progress, stage, 0, n);
    for (std::size_t b = 0; b < n; ++b) {
      if (const qwen3_vl::image_batch* img = image_of(b)) {
        qwen3_vl::text_batch batch = batches_[b];
        if (!labels) batch.labels.clear();
        o.loss_targets = 0;
        o.row_loss_targets.clear();
        o.fused_attention = true;
        stats_.batch_tokens += batch.batch * batch.seq;  // image batches run whole
        stats_.run_tokens += batch.batch * batch.seq;
        (void)run_vl_batch(model_.model_config(), model_, options_.vision, batch, img, o, observer);
        ++stats_.passes;
        if (done++ == 0) probe();
      } else {
        run_text({b});
      }
      report(progress, stage, b + 1, n);
    }
  }

  const autoquant::search_space& space_;
  qwen3_vl_text_model& model_;
  const std::vector<qwen3_vl::text_batch>& batches_;
  std::vector<device_recipe> recipes_;
  text_run_options run_options_;
  cuda_scoring_options options_;
  bool trim_ = false;
  bool pack_ = false;
  std::optional<device_calibration> calibration_;
  mutable std::optional<std::vector<float>> input_amax_;
  cuda_scoring_stats stats_;
};

}  // namespace aq::cuda
