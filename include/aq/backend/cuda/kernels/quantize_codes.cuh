// Quantized operands as the tensor cores read them: 1-byte codes (e4m3 bits, int8) plus the
// factor that maps a code back to the model's range, for the statically scaled per-tensor and
// per-channel quantizers. The codes are exactly those of the fake quantizer (fake_quant.cuh):
// fake_quantize(x) = dequantize(code) = code · factor, so a GEMM on codes with the factors applied
// after it is the fake-quantized product without the bf16 rounding of its operands.
#pragma once

#include <cuda_runtime.h>
#include <library_types.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/fake_quant.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/config.hpp"
#include "aq/formats/e4m3.hpp"
#include "aq/formats/int8.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/quantizer.hpp"
#include "aq/quant/scaling.hpp"

namespace aq::cuda {

// The cuBLASLt type of a format's codes, for the formats the tensor cores multiply.
template <class F>
inline constexpr cudaDataType_t code_data_type = CUDA_R_16BF;  // none
template <>
inline constexpr cudaDataType_t code_data_type<formats::e4m3> = CUDA_R_8F_E4M3;
template <>
inline constexpr cudaDataType_t code_data_type<formats::int8> = CUDA_R_8I;

// Whether quantizer Q's output can be carried as codes and one factor per tensor or per row.
template <quant::quantizer_spec Q>
inline constexpr bool codes_representable =
    Q::enabled && code_data_type<typename Q::format_type> != CUDA_R_16BF &&
    std::is_same_v<typename Q::scaling_type, quant::static_amax> &&
    (std::is_same_v<typename Q::granularity_type, quant::per_tensor> ||
     std::is_same_v<typename Q::granularity_type, quant::per_channel>);

// A recipe whose product runs on codes: both sides in the same tensor-core format, the input
// per tensor (its factor then scales the whole product), the weight per tensor or per row.
template <quant::quantizer_spec W, quant::quantizer_spec I>
inline constexpr bool code_gemm_recipe = codes_representable<W> && codes_representable<I> &&
                                         std::is_same_v<typename W::format_type, typename I::format_type> &&
                                         std::is_same_v<typename I::granularity_type, quant::per_tensor>;

namespace detail {

// The factor of a code under scale s: e4m3 dequantizes as q·(1/s), integers as q/s; 1/s here
// (the product is then within an ulp of the integer's fake quantization). A zero scale (amax at
// or below the format's threshold) gives code 0 and factor 0.
AQ_HD inline float code_factor(float scale) { return scale == 0.0f ? 0.0f : 1.0f / scale; }

// Packs of V elements of one row per step over a bounded grid (fake_quant.cuh's layout): the
// scale is made once per thread (per tensor) or per row change (per channel), never per element.
template <quant::quantizer_spec Q, int V>
__global__ void __launch_bounds__(fake_quant_block)
    quantize_codes_kernel(const bf16* in, std::uint8_t* codes, std::int64_t rows, std::int64_t cols, const float* amax,
                          float* factors) {
  using F = typename Q::format_type;
  using G = typename Q::granularity_type;
  constexpr bool per_tensor = std::is_same_v<G, quant::per_tensor>;
  const std::int64_t packs = rows * cols / V;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  std::int64_t slot = per_tensor ? 0 : -1;
  // The fake quantizer's scale (max_bound / amax, rounded once: scale_rounding::divide).
  float scale = per_tensor ? quant::scale_from_amax<F>(amax[0]) : 0.0f;
  for (std::int64_t p = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs; p += stride) {
    bool first_of_slot = p == 0;
    if constexpr (!per_tensor) {
      const std::int64_t row = p * V / cols;
      const std::int64_t s = G::amax_index(row, p * V - row * cols, cols);
      first_of_slot = p * V == row * cols;
      if (s != slot) {
        slot = s;
        scale = quant::scale_from_amax<F>(amax[s]);
      }
    }
    const element_pack<bf16, V> x = reinterpret_cast<const element_pack<bf16, V>*>(in)[p];
    element_pack<std::uint8_t, V> c;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      c.v[j] = scale == 0.0f ? F::encode(0.0f) : F::encode(F::quantize(to_float(x.v[j]), scale, Q::narrow_range));
    }
    reinterpret_cast<element_pack<std::uint8_t, V>*>(codes)[p] = c;
    if (first_of_slot) factors[slot] = code_factor(scale);
  }
}

// y[i] = (float) acc[i] · input_factor · weight_factor[col or 0], in place over the int32 (or
// unscaled fp32) GEMM output.
template <class Acc>
__global__ void dequantize_product_kernel(Acc* acc, float* y, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                          const float* input_factor, const float* weight_factors, bool per_column) {
  const std::int64_t n = rows * cols;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const float xf = *input_factor;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const std::int64_t r = i / cols, c = i % cols;
    const float wf = weight_factors[per_column ? c : 0];
    y[r * ld + c] = static_cast<float>(acc[r * ld + c]) * (xf * wf);
  }
}

}  // namespace detail

// Codes of a row-major bf16 [rows × cols] matrix under Q and its calibrated amax (Q's slots), and
// the factor of each slot (1 per tensor, rows per channel) into factors.
template <quant::quantizer_spec Q>
  requires codes_representable<Q>
cudaError_t quantize_codes(const bf16* in, std::uint8_t* codes, std::int64_t rows, std::int64_t cols, const float* amax,
                           float* factors, cudaStream_t stream) {
  if (rows * cols == 0) return cudaSuccess;
  constexpr int V = 8;  // 16 bytes of bf16 in, 8 bytes of codes out
  const bool packed = cols % V == 0 && reinterpret_cast<std::uintptr_t>(in) % sizeof(element_pack<bf16, V>) == 0 &&
                      reinterpret_cast<std::uintptr_t>(codes) % sizeof(element_pack<std::uint8_t, V>) == 0;
  const std::int64_t steps = packed ? rows * cols / V : rows * cols;
  const auto blocks = static_cast<unsigned>(std::clamp<std::int64_t>(
      (steps + detail::fake_quant_block - 1) / detail::fake_quant_block, 1, detail::fake_quant_max_blocks));
  if (packed) {
    detail::quantize_codes_kernel<Q, V><<<blocks, detail::fake_quant_block, 0, stream>>>(in, codes, rows, cols, amax,
                                                                                        factors);
  } else {
    detail::quantize_codes_kernel<Q, 1><<<blocks, detail::fake_quant_block, 0, stream>>>(in, codes, rows, cols, amax,
                                                                                        factors);
  }
  return cudaGetLastError();
}

// Scales a GEMM's output on codes in place (y aliases acc: an int32 or fp32 [rows × cols] view
// with ld): y = acc · input_factor · weight_factors[column] (per_column) or [0].
template <class Acc>
void dequantize_product(device_matrix<Acc> acc, const float* input_factor, const float* weight_factors, bool per_column,
                        cudaStream_t stream) {
  static_assert(sizeof(Acc) == sizeof(float), "the product is scaled in place into fp32");
  if (acc.rows * acc.cols == 0) return;
  constexpr unsigned block = 256;
  detail::dequantize_product_kernel<Acc><<<grid_for(acc.rows * acc.cols, block), block, 0, stream>>>(
      acc.data, reinterpret_cast<float*>(acc.data), acc.rows, acc.cols, acc.ld, input_factor, weight_factors,
      per_column);
  AQ_CUDA_CHECK_LAUNCH();
}

}  // namespace aq::cuda
