// Closed-loop evaluation on the GPU: per held-out pass one unquantized forward keeps the
// reference logits on the device, then every mix runs the pass with its modules quantized
// (device_quantized_mix_forward, the calibration's scales) and adds its KL, NLL and agreements
// over the labelled rows (mix_metrics.cuh); a mix that quantizes nothing is measured on the
// reference logits without a forward. Device twin of score::measure_mixes.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/mix_metrics.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text.cuh"
#include "aq/backend/cuda/scoring/gradient_scorer.cuh"
#include "aq/backend/cuda/scoring/kl_div_scorer.cuh"
#include "aq/core/error.hpp"
#include "aq/core/progress.hpp"
#include "aq/model/causal_lm_targets.hpp"
#include "aq/model/qwen3_vl/batch.hpp"
#include "aq/score/mix_metrics.hpp"

namespace aq::cuda {

// passes: labelled text batches the model can hold. Device memory beyond the model: the reference
// logits of the largest pass (tokens × vocab × 4 bytes), ~90 bytes a token and the scratch of one
// module's Q(X) and Q(W). Progress: stage "evaluation", one step per pass and mix.
inline std::vector<score::mix_metrics> measure_mixes(qwen3_vl_text_model& model, device_calibration& calibration,
                                                     const std::vector<qwen3_vl::text_batch>& passes,
                                                     const std::vector<score::module_mix>& mixes,
                                                     const text_run_options& run_options,
                                                     const autoquant::progress_callback& progress) {
  if (passes.empty()) throw error("evaluation: no held-out batches");
  const cudaStream_t stream = model.stream();
  const std::int64_t vocab = model.model_config().text.vocab_size;
  device_buffer<double> totals(std::max<std::size_t>(1, mixes.size() * 3));  // [mix, (kl, nll, agree)]
  totals.fill_bytes(0, stream);
  device_quantized_mix_forward observer(calibration, model.gemm(), stream);
  device_eval_reference reference;
  device_mix_metrics metrics;
  text_run_options o = forward_only(run_options);

  std::int64_t tokens = 0;
  std::size_t done = 0;
  const std::size_t total = passes.size() * mixes.size();
  if (progress) progress("evaluation", 0, total);
  for (const qwen3_vl::text_batch& labelled : passes) {
    const lm_targets targets = attended_targets(
        aq::causal_lm_targets(labelled.labels, labelled.batch, labelled.seq, vocab, "evaluation batch"),
        labelled.attention_mask);
    tokens += targets.count;
    qwen3_vl::text_batch pass = labelled;
    pass.labels.clear();
    reference.begin(pass.batch * pass.seq, vocab, targets.target, stream);
    o.logits_chunk = [&](device_matrix<const float> z, std::int64_t v0) { reference.store(z, v0, stream); };
    (void)model.run(pass, o, nullptr);
    reference.finalize(stream);
    o.logits_chunk = [&](device_matrix<const float> z, std::int64_t v0) { metrics.update(z, v0, stream); };
    for (std::size_t i = 0; i < mixes.size(); ++i) {
      metrics.begin(reference, stream);
      if (score::quantizes_nothing(mixes[i], calibration.num_recipes())) {
        metrics.update(reference.logits(), 0, stream);  // its logits are the reference's
      } else {
        observer.select(mixes[i]);
        (void)model.run(pass, o, &observer);
      }
      metrics.finalize(totals.data() + 3 * i, stream);
      if (progress) progress("evaluation", ++done, total);
    }
  }
  AQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<double> host = totals.to_host();
  std::vector<score::mix_metrics> out(mixes.size());
  for (std::size_t i = 0; i < mixes.size(); ++i) {
    out[i].kl_sum = host[3 * i];
    out[i].nll_sum = host[3 * i + 1];
    out[i].agreements = static_cast<std::int64_t>(host[3 * i + 2]);
    out[i].tokens = tokens;
  }
  return out;
}

}  // namespace aq::cuda
