// Loads the Qwen3-VL text decoder's GPU weights straight from a safetensors checkpoint (bf16
// tensors copied byte for byte, others converted). Host-side IO only: kept apart from the kernel
// headers so that a translation unit reading checkpoints needs no device code.
#pragma once

#include <cuda_runtime.h>

#include <deque>
#include <span>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/pinned_upload.hpp"
#include "aq/backend/cuda/model/qwen3_vl_text_weights.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/dtype.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/schema.hpp"

namespace aq::cuda {

namespace detail {

// Device bf16 copies of checkpoint tensors queued on one parallel pinned uploader: bf16 tensors
// as stored, others converted on the host first and kept until run() has copied them. Every value
// must be finite (the error names the file, tensor and element), as on the CPU.
class bf16_tensor_upload {
 public:
  device_buffer<bf16> add(const tensor_view& v) {
    device_buffer<bf16> out(static_cast<std::size_t>(v.numel()));
    if (v.dtype == dtype_bf16) {  // checked for NaN/Inf as each chunk is staged (a second pass costs seconds at 4B)
      uploader_.add(out.data(), v.bytes.data(), out.bytes(),
                    [&v](std::size_t offset, std::span<const std::byte> staged) { require_finite(v, offset, staged); });
    } else {
      require_finite(v);
      converted_.push_back(to_bf16_vector(v));
      uploader_.add(out.data(), converted_.back().data(), out.bytes());
    }
    return out;
  }
  void run() { uploader_.run(); }

 private:
  pinned_uploader uploader_;
  std::deque<std::vector<bf16>> converted_;
};

// The checkpoint's tensor `name`, its shape checked against the schema's.
inline const tensor_view& checked_view(const safetensors_checkpoint& ck, const std::string& name,
                                       const std::vector<std::int64_t>& shape) {
  const tensor_view& v = ck.at(name);
  check_shape(name, v.shape, shape, ck.path().string());
  return v;
}

// A checkpoint tensor converted to fp32 (every value finite) and uploaded.
inline device_buffer<float> upload_as_f32(const tensor_view& v) {
  require_finite(v);
  std::vector<float> host(static_cast<std::size_t>(v.numel()));
  convert_tensor(v, std::span<float>(host));
  return device_buffer<float>(host);
}

}  // namespace detail

// Straight from a safetensors checkpoint: bf16 tensors are copied byte for byte, others converted.
inline qwen3_vl_text_device_weights load_text_weights(const qwen3_vl::config& cfg, const safetensors_checkpoint& ck) {
  detail::bf16_tensor_upload upload;  // run before returning
  const auto bf = [&](const qwen3_vl::schema::tensor_ref&, const std::string& name, const std::vector<std::int64_t>& shape) {
    return upload.add(detail::checked_view(ck, name, shape));
  };
  const auto f32 = [&](const qwen3_vl::schema::tensor_ref&, const std::string& name, const std::vector<std::int64_t>& shape) {
    return detail::upload_as_f32(detail::checked_view(ck, name, shape));
  };
  qwen3_vl_text_device_weights weights = detail::bind_text_weights(
      cfg, ck.find(qwen3_vl::schema::tensor_name(qwen3_vl::schema::module_id::lm_head)) != nullptr, bf, f32);
  upload.run();
  return weights;
}

}  // namespace aq::cuda
