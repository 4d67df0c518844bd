// The GPU counterpart of qwen3_vl::linear_observer: the hook through which calibration and the
// scorers see every quantizable linear of a GPU model run, as device views (X and dL/dY in bf16,
// Y in fp32), without any copy to the host; the KL-div scorer also replaces Y through it.
#pragma once

#include <cstdint>
#include <string_view>

#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/bf16.hpp"

namespace aq::cuda {

// Views are valid only during the callback, on the stream the model runs on. The LM head is
// reported in vocabulary chunks: `weight` then holds rows [row0, row0 + weight.rows) of a weight
// with `weight_rows` rows in all, and output/grad_output the matching columns.
struct device_linear_call {
  std::string_view name;                    // checkpoint module path
  device_matrix<const bf16> weight;         // W rows [row0, row0 + rows) of [weight_rows, in]
  std::int64_t row0 = 0;
  std::int64_t weight_rows = 0;
  device_matrix<const bf16> input;          // X [tokens, in]
  device_matrix<const float> output;        // Y [tokens, weight.rows]; rows 0 when not computed
  device_matrix<const bf16> grad_output;    // dL/dY [tokens, weight.rows]; rows 0 in on_forward
  // X is the very tensor of the previous call, unchanged (k/v_proj after q_proj, up_proj after
  // gate_proj, LM-head chunks after the first): what was derived from it may be reused.
  bool same_input_as_previous = false;
  // The linear's bias (device fp32, [weight.rows], offset like the rows), already in `output`;
  // nullptr: none. A recipe output Q(X)·Q(W)ᵀ adds it too, so that Y_r − Y is the quantization error.
  const float* bias = nullptr;
};

class device_linear_observer {
 public:
  virtual ~device_linear_observer() = default;
  virtual void on_forward(const device_linear_call& /*call*/) {}
  // Forward only, right after on_forward and before the model reads Y: `output` is Y itself
  // (the buffer call.output views), writable; what is written there is what the rest of the
  // forward uses (e.g. a quantized module's output, for the KL-div score). Called by the text
  // decoder (qwen3_vl_text_model), not yet by the vision tower. The LM head is offered only
  // where the forward produces logits: whole for text_run_options::logits, per vocabulary chunk
  // (like on_backward) for logits_chunk. Meant for forward-only runs: a loss pass's backward
  // recomputes activations without it. Observers that only watch keep this no-op.
  virtual void replace_output(const device_linear_call& /*call*/, device_matrix<float> /*output*/) {}
  virtual void on_backward(const device_linear_call& /*call*/) {}
};

}  // namespace aq::cuda
