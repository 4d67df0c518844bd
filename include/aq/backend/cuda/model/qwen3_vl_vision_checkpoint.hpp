// Loads the Qwen3-VL vision tower's GPU weights straight from a safetensors checkpoint (bf16
// tensors copied byte for byte, others converted; the position grid to the host in fp32).
// Host-side IO only, like qwen3_vl_text_checkpoint.hpp.
#pragma once

#include <cuda_runtime.h>

#include <span>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text_checkpoint.hpp"
#include "aq/backend/cuda/model/qwen3_vl_text_weights.cuh"
#include "aq/backend/cuda/model/qwen3_vl_vision_weights.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/dtype.hpp"
#include "aq/core/tensor.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/schema.hpp"

namespace aq::cuda {

inline qwen3_vl_vision_device_weights load_vision_weights(const qwen3_vl::config& cfg, const safetensors_checkpoint& ck) {
  detail::bf16_tensor_upload upload;  // run before returning
  const auto bf = [&](const qwen3_vl::schema::tensor_ref&, const std::string& name, const std::vector<std::int64_t>& shape) {
    return upload.add(detail::checked_view(ck, name, shape));
  };
  const auto f32 = [&](const qwen3_vl::schema::tensor_ref&, const std::string& name, const std::vector<std::int64_t>& shape) {
    return detail::upload_as_f32(detail::checked_view(ck, name, shape));
  };
  const auto host = [&](const qwen3_vl::schema::tensor_ref&, const std::string& name, const std::vector<std::int64_t>& shape) {
    const tensor_view& v = detail::checked_view(ck, name, shape);
    require_finite(v);
    tensor t(shape);
    convert_tensor(v, std::span<float>(t.storage()));
    return t;
  };
  qwen3_vl_vision_device_weights weights = detail::bind_vision_weights(cfg, bf, f32, host);
  upload.run();
  return weights;
}

}  // namespace aq::cuda
