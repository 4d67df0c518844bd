// Loads the Qwen3-VL text decoder's GPU weights straight from a safetensors checkpoint (bf16
// tensors copied byte for byte, others converted). Host-side IO only: kept apart from the kernel
// headers so that a translation unit reading checkpoints needs no device code.
#pragma once

#include <cuda_runtime.h>

#include <deque>
#include <string>
#include <vector>

#include "aq/backend/cuda/check.hpp"
#include "aq/backend/cuda/device_buffer.cuh"
#include "aq/backend/cuda/pinned_upload.hpp"
#include "aq/backend/cuda/qwen3_vl_text_weights.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/dtype.hpp"
#include "aq/io/safetensors.hpp"
#include "aq/model/qwen3_vl/config.hpp"

namespace aq::cuda {

// Straight from a safetensors checkpoint: bf16 tensors are copied byte for byte, others converted.
inline qwen3_vl_text_device_weights load_text_weights(const qwen3_vl::config& cfg, const safetensors_checkpoint& ck) {
  const std::string where = ck.path().string();
  // bf16 tensors go through the parallel pinned uploader (run before returning); others are
  // converted on the host first and kept until then.
  pinned_uploader uploader;
  std::deque<std::vector<bf16>> converted;
  const auto bf = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    const tensor_view& v = ck.at(name);
    detail::check_shape(name, v.shape, shape, where);
    device_buffer<bf16> out(static_cast<std::size_t>(v.numel()));
    if (v.dtype == dtype_bf16) {
      uploader.add(out.data(), v.bytes.data(), out.bytes());
    } else {
      converted.push_back(to_bf16_vector(v));
      uploader.add(out.data(), converted.back().data(), out.bytes());
    }
    return out;
  };
  const auto f32 = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    const tensor_view& v = ck.at(name);
    detail::check_shape(name, v.shape, shape, where);
    std::vector<float> host(static_cast<std::size_t>(v.numel()));
    convert_tensor(v, std::span<float>(host));
    return device_buffer<float>(host);
  };
  qwen3_vl_text_device_weights weights = detail::bind_text_weights(cfg, ck.find("lm_head.weight") != nullptr, bf, f32);
  uploader.run();
  return weights;
}

}  // namespace aq::cuda
