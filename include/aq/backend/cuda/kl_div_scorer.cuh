// KL-div scores on the GPU (placeholder: the declaration the CUDA scoring backend calls).
#pragma once

#include <cstddef>
#include <vector>

#include "aq/autoquant/progress.hpp"
#include "aq/autoquant/search_space.hpp"
#include "aq/backend/cuda/gradient_scorer.cuh"
#include "aq/backend/cuda/qwen3_vl_text.cuh"
#include "aq/core/error.hpp"
#include "aq/model/qwen3_vl/text_model.hpp"

namespace aq::cuda {

// Raw KL-div scores per group and quantizing candidate (NONE excluded; non-configurable groups empty):
// the contract of the CPU engine's kl_div_scores, over the first `steps` batches (text batches only).
inline std::vector<std::vector<double>> kl_div_group_scores(const autoquant::search_space&, qwen3_vl_text_model&,
                                                            device_calibration&, const std::vector<qwen3_vl::text_batch>&,
                                                            std::size_t, const text_run_options&,
                                                            const autoquant::progress_callback&) {
  throw error("--method kl_div: not yet on the GPU");
}

}  // namespace aq::cuda
