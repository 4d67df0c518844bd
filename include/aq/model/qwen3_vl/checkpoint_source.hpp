// A weight_source over a safetensors checkpoint: tensors converted to fp32 (from bf16/f16/f32)
// after their shape is checked against what the model expects and their values found finite.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/model/qwen3_vl/text_weights.hpp"

namespace aq::qwen3_vl {

// The checkpoint must outlive the returned source.
inline weight_source checkpoint_weight_source(const safetensors_checkpoint& checkpoint) {
  weight_source source;
  source.contains = [&checkpoint](const std::string& name) { return checkpoint.find(name) != nullptr; };
  source.load = [&checkpoint](const std::string& name, const std::vector<std::int64_t>& shape) {
    const tensor_view& view = checkpoint.at(name);
    if (!std::equal(view.shape.begin(), view.shape.end(), shape.begin(), shape.end())) {
      throw error(checkpoint.path().string() + ": tensor " + name + ": shape " + shape_string(view.shape) +
                  ", expected " + shape_string(shape));
    }
    require_finite(view);  // a NaN weight would surface later as an anonymous amax error
    tensor out(shape);
    convert_tensor(view, std::span<float>(out.storage()));
    return out;
  };
  return source;
}

}  // namespace aq::qwen3_vl
