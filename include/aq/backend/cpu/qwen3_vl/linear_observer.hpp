// The hook through which scorers see every quantizable linear module of a model run: on the
// forward its input X and output Y (which an observer may replace), on the backward also dL/dY.
// rerun_linear() recomputes a module's output from the same X with a modified weight or input.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include "aq/backend/cpu/gemm.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/schema.hpp"

namespace aq::qwen3_vl {

// Views are valid only during the callback; copy what must outlive it.
struct linear_call {
  std::string_view name;           // checkpoint module path, e.g. model.language_model.layers.3.mlp.up_proj
  const_matrix_view weight;        // W [out, in]
  const float* bias = nullptr;     // [out] or nullptr
  const_matrix_view input;         // X [tokens, in]
  const_matrix_view output;        // Y [tokens, out] = X·Wᵀ + b
  const_matrix_view grad_output;   // dL/dY [tokens, out]; empty (rows 0) in on_forward
};

class linear_observer {
 public:
  virtual ~linear_observer() = default;
  virtual void on_forward(const linear_call& /*call*/) {}
  // Forward only, right after on_forward and before the model reads Y. `output` is Y itself
  // (the buffer call.output views), writable: values written there are what the rest of the run
  // uses, the backward included (on_backward then shows them as call.output). The one sanctioned
  // way to change a module's output, e.g. to put a quantized module's output in place; observers
  // that only watch keep the default, which leaves Y alone.
  virtual void replace_output(const linear_call& /*call*/, matrix_view /*output*/) {}
  virtual void on_backward(const linear_call& /*call*/) {}
};

// How the CPU models report a linear of `module` (no observer: nothing): on the backward with
// dL/dY; on the forward once Y is computed, where the observer watches and then may replace Y
// (so Y must be writable: a matrix_view).
template <class Y>
void notify_linear(linear_observer* observer, bool backward, const schema::module_ref& module,
                   const const_matrix_view& w, const float* bias, const const_matrix_view& x, const Y& y,
                   const const_matrix_view& grad = {}) {
  if (observer == nullptr) return;
  const std::string name = schema::module_path(module);
  const linear_call call{name, w, bias, x, const_matrix_view(y), grad};
  if (backward) {
    observer->on_backward(call);
  } else if constexpr (std::is_same_v<Y, matrix_view>) {
    observer->on_forward(call);
    observer->replace_output(call, y);
  } else {
    throw error("qwen3_vl model: forward notification of " + name + " without a writable output");
  }
}

// Y' = X'·W'ᵀ + b for the module of `call`, e.g. with a fake-quantized W' or X'.
inline tensor rerun_linear(const linear_call& call, const const_matrix_view& weight, const const_matrix_view& input) {
  tensor y({input.rows, weight.rows});
  cpu::linear_forward(input, weight, y.matrix(), call.bias);
  return y;
}

}  // namespace aq::qwen3_vl
