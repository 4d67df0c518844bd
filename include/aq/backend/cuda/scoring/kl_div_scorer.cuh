// ModelOpt's kl_div score on the GPU: per score batch one unquantized forward keeps the next-token
// logits on the device; then for every configurable group and quantizing recipe a forward whose
// group members' outputs are replaced by Q(X)·Q(W)ᵀ (+ b) under the calibrated recipe adds
// −Σ_rows Σ_v p·log q (kl_div.cuh). Device twin of autoquant::kl_div_scores.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/gemm_cublaslt.cuh"
#include "aq/backend/cuda/kernels/kl_div.cuh"
#include "aq/backend/cuda/model/linear_observer.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text.cuh"
#include "aq/backend/cuda/scoring/gradient_scorer.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/core/progress.hpp"
#include "aq/model/qwen3_vl/text_batch_split.hpp"
#include "aq/search/search_space.hpp"

namespace aq::cuda {

// During a forward, replaces the output of every module a mix quantizes by its output under its
// calibrated recipe (the weight and input fake quant of device_calibration, as the gradient
// scorer forms them); every other module runs unquantized. KL-div scoring selects one group
// under one recipe, evaluation whole mixes. Q(X) and Q(W) are formed per call in scratch buffers,
// so nothing is cached: each pass streams the weights of the quantized modules once.
class device_quantized_mix_forward : public device_linear_observer {
 public:
  device_quantized_mix_forward(device_calibration& calibration, cublaslt_gemm& gemm, cudaStream_t stream)
      : calib_(calibration), gemm_(gemm), stream_(stream) {}

  // recipe_of_module[m]: the calibration's recipe index module m runs with; any index at or past
  // num_recipes() (a search space's none_index()) leaves it unquantized.
  void select(std::vector<std::size_t> recipe_of_module) { recipe_of_module_ = std::move(recipe_of_module); }

  // The members of one group under one recipe, every other module unquantized.
  void select_group(const std::vector<std::size_t>& members, std::size_t recipe) {
    if (recipe >= calib_.num_recipes()) throw error("kl_div score: recipe index " + std::to_string(recipe) + " out of range");
    recipe_of_module_.assign(calib_.num_modules(), calib_.num_recipes());
    for (const std::size_t m : members) recipe_of_module_.at(m) = recipe;
  }

  void replace_output(const device_linear_call& call, device_matrix<float> output) override {
    const std::optional<std::size_t> m = calib_.module_index(call.name);
    if (!m || *m >= recipe_of_module_.size() || recipe_of_module_[*m] >= calib_.num_recipes()) return;
    const std::size_t recipe = recipe_of_module_[*m];
    const std::int64_t rows = call.input.rows, in = call.input.cols, out = call.weight.rows;
    if (output.rows != rows || output.cols != out || call.weight.cols != in) {
      throw error("kl_div score: " + std::string(call.name) + ": output [" + std::to_string(output.rows) + ", " +
                  std::to_string(output.cols) + "] does not match X [" + std::to_string(rows) + ", " +
                  std::to_string(in) + "] and W [" + std::to_string(out) + ", " + std::to_string(call.weight.cols) + "]");
    }
    calib_.require_input_amax(*m, call.name, "kl_div score");
    const device_recipe& k = calib_.recipe(recipe);
    device_matrix<const bf16> x = call.input;
    device_matrix<const bf16> w = call.weight;
    if (k.input_enabled) {
      xq_.grow_to(rows * in);
      calib_.quantize_input(*m, recipe, call, xq_.data(), stream_);
      x = {xq_.data(), rows, in, in};
    }
    if (k.weight_enabled) {
      calib_.ensure_weight_amax(*m, call, stream_);  // calibrated already; throws for an unseen LM-head chunk
      wq_.grow_to(out * in);
      calib_.quantize_weight(*m, recipe, call, wq_.data(), stream_);
      w = {wq_.data(), out, in, in};
    }
    gemm_.linear_forward(x, w, output, call.bias, false, stream_);
  }

 private:
  device_calibration& calib_;
  cublaslt_gemm& gemm_;
  cudaStream_t stream_;
  std::vector<std::size_t> recipe_of_module_;
  device_buffer<bf16> xq_, wq_;
};

namespace detail {

// A batch as the passes the model can hold: whole, or in parts of whole sequences when it has
// more rows than the model was sized for (attention never crosses sequences, and the score is a
// sum over rows). Logits passes keep every row: no labels, no padding trimmed.
inline std::vector<qwen3_vl::text_batch> kl_div_passes(const qwen3_vl::text_batch& batch, std::int64_t max_tokens) {
  qwen3_vl::text_batch whole = batch;
  whole.labels.clear();
  if (whole.batch * whole.seq <= max_tokens) return {std::move(whole)};
  return qwen3_vl::split_text_batch(whole, std::max<std::int64_t>(1, max_tokens / std::max<std::int64_t>(1, whole.seq)));
}

}  // namespace detail

// Raw KL-div scores per group and quantizing candidate (NONE excluded; non-configurable groups empty):
// the contract of the CPU engine's kl_div_scores, over the first `steps` batches (text batches only).
// `calibration` must be calibrated (its module order is space.modules'). Device memory beyond the
// model: the reference logits, tokens × vocab × 4 bytes for the largest pass, plus ~44 bytes a
// token and the scratch of one group member's Q(X) and Q(W). Progress: stage "scoring", one step
// per pass and configurable group.
inline std::vector<std::vector<double>> kl_div_group_scores(const autoquant::search_space& space, qwen3_vl_text_model& model,
                                                            device_calibration& calibration,
                                                            const std::vector<qwen3_vl::text_batch>& batches,
                                                            std::size_t steps, const text_run_options& run_options,
                                                            const autoquant::progress_callback& progress) {
  if (calibration.num_modules() != space.modules.size()) {
    throw error("kl_div score: the calibration holds " + std::to_string(calibration.num_modules()) +
                " modules, the search space " + std::to_string(space.modules.size()));
  }
  const std::size_t n = std::min(steps, batches.size());
  const std::size_t R = calibration.num_recipes();
  std::vector<std::size_t> configurable;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (space.configurable(g)) configurable.push_back(g);
  }
  std::vector<qwen3_vl::text_batch> passes;
  for (std::size_t b = 0; b < n; ++b) {
    for (qwen3_vl::text_batch& p : detail::kl_div_passes(batches[b], model.max_tokens())) passes.push_back(std::move(p));
  }

  const cudaStream_t stream = model.stream();
  const std::int64_t vocab = model.model_config().text.vocab_size;
  device_buffer<double> totals(std::max<std::size_t>(1, space.groups.size() * R));  // [group, recipe]
  totals.fill_bytes(0, stream);
  device_quantized_mix_forward observer(calibration, model.gemm(), stream);
  device_reference_distribution reference;
  device_cross_entropy_sum cross_entropy;
  text_run_options o = forward_only(run_options);

  const std::size_t total = passes.size() * configurable.size();
  std::size_t done = 0;
  if (progress) progress("scoring", 0, total);
  for (const qwen3_vl::text_batch& pass : passes) {
    reference.begin(pass.batch * pass.seq, vocab);
    o.logits_chunk = [&](device_matrix<const float> z, std::int64_t v0) { reference.store(z, v0, stream); };
    (void)model.run(pass, o, nullptr);
    reference.finalize(stream);
    o.logits_chunk = [&](device_matrix<const float> z, std::int64_t v0) { cross_entropy.update(z, v0, stream); };
    for (const std::size_t g : configurable) {
      for (std::size_t r = 0; r < R; ++r) {
        observer.select_group(space.groups[g].members, r);
        cross_entropy.begin(reference, stream);
        (void)model.run(pass, o, &observer);
        cross_entropy.finalize(totals.data() + g * R + r, stream);
      }
      if (progress) progress("scoring", ++done, total);
    }
  }
  AQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<double> host = totals.to_host();
  std::vector<std::vector<double>> raw(space.groups.size());
  for (const std::size_t g : configurable) raw[g].assign(host.begin() + static_cast<std::ptrdiff_t>(g * R),
                                                         host.begin() + static_cast<std::ptrdiff_t>((g + 1) * R));
  return raw;
}

}  // namespace aq::cuda
