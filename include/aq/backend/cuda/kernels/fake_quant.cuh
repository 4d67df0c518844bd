// CUDA fake quantization and amax: kernels templated on the quantizer spec (format, granularity,
// scaling), running the same AQ_HD math as the host (aq/quant/fake_quantize.hpp, scaling.hpp), so
// device results are bit-identical to the host's. Static scaling is elementwise; data-derived
// scales (dynamic, MX, NVFP4) reduce each slot's amax inside the same kernel that quantizes it,
// one lane group per slot, in one pass over X. Compiled only by nvcc (AQ_WITH_CUDA); do not build
// it with --use_fast_math (flushed denormals and approximate division change the results).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/config.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/quantizer.hpp"
#include "aq/quant/scaling.hpp"

namespace aq::cuda {

namespace detail {

inline unsigned grid_size(std::int64_t n, unsigned block) {
  const std::int64_t blocks = (n + block - 1) / block;
  return static_cast<unsigned>(blocks < 65535 * 32 ? (blocks > 0 ? blocks : 1) : 65535 * 32);
}

// Elementwise fake quantization runs a bounded grid of threads that each take many packs: the
// scale is made once per thread (per-tensor) or once per slot change, not once per element.
inline constexpr unsigned fake_quant_block = 256;
inline constexpr std::int64_t fake_quant_max_blocks = 2048;

template <class In, class Out>
inline constexpr int fake_quant_pack = sizeof(In) == 2 && sizeof(Out) == 2 ? 8 : 4;

}  // namespace detail

// Static scaling: out[i] = fake_quantize(in[i]) with the calibrated amax slot of element
// (i / cols, i % cols), V elements of one row per step (cols % V == 0, both pointers aligned to
// V elements). In/Out: float or aq::bf16 (a bf16 Out rounds like output_rounding::bf16). in and
// out may alias.
template <quant::quantizer_spec Q, int V, class In, class Out>
__global__ void __launch_bounds__(detail::fake_quant_block)
    fake_quantize_kernel(const In* in, Out* out, std::int64_t rows, std::int64_t cols, const float* amax,
                         [[maybe_unused]] quant::scale_context context, quant::output_rounding rounding) {
  using F = typename Q::format_type;
  using G = typename Q::granularity_type;
  using S = typename Q::scaling_type;
  using in_pack = element_pack<In, V>;
  using out_pack = element_pack<Out, V>;
  const std::int64_t packs = rows * cols / V;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  // Only 2-D tiles may round their scale as torch does: elsewhere the rule is a compile-time
  // constant, and a per-tensor scale is made once per thread rather than once per element.
  if constexpr (Q::enabled && !requires { G::tile_rows; }) context.rounding = quant::scale_rounding::divide;
  const auto quantized = [&](In x, const auto& scale) {
    return from_float<Out>(quant::round_output(S::template apply<F>(to_float(x), scale, Q::narrow_range), rounding));
  };
  [[maybe_unused]] std::int64_t slot = -1;
  [[maybe_unused]] typename S::slot_scale scale{};
  if constexpr (Q::enabled && std::is_same_v<G, quant::per_tensor>) scale = S::template make<F>(amax[0], context);
  for (std::int64_t p = first; p < packs; p += stride) {
    const in_pack x = reinterpret_cast<const in_pack*>(in)[p];
    out_pack y;
    [[maybe_unused]] const std::int64_t row = p * V / cols, col = p * V % cols;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      if constexpr (!Q::enabled) {
        y.v[j] = from_float<Out>(quant::round_output(to_float(x.v[j]), rounding));
      } else if constexpr (std::is_same_v<G, quant::per_tensor>) {
        y.v[j] = quantized(x.v[j], scale);
      } else {
        const std::int64_t s = G::amax_index(row, col + j, cols);
        if (s != slot) {
          scale = S::template make<F>(amax[s], context);
          slot = s;
        }
        y.v[j] = quantized(x.v[j], scale);
      }
    }
    reinterpret_cast<out_pack*>(out)[p] = y;
  }
}

// Lanes that share one slot of a data-scaled quantizer: a slot is a run of consecutive elements
// of one row (a block, or the whole row for per-token scaling).
template <quant::granularity G>
constexpr int slot_lanes() {
  static_assert(!requires { G::tile_rows; }, "2-D tiles are scaled statically (calibrated amax)");
  if constexpr (requires { G::block_size; }) {
    static_assert((G::block_size < 32 && (G::block_size & (G::block_size - 1)) == 0) || G::block_size % 32 == 0,
                  "slot_lanes: a block below 32 elements must be a power of two");
    return G::block_size < 32 ? G::block_size : 32;
  } else {
    return 32;
  }
}

template <quant::granularity G>
AQ_HD constexpr std::int64_t slot_length(std::int64_t cols) {
  if constexpr (requires { G::block_size; }) {
    return G::block_size;
  } else {
    return cols;
  }
}

// Data-derived scaling: each group of slot_lanes<G>() lanes owns one slot, folds its amax with
// S::accumulate (exact and order-free, so any lane split gives the host's value), shares it by
// shuffles, then quantizes the slot. global_amax: the calibrated per-tensor amax (NVFP4) or null.
template <quant::quantizer_spec Q, class In, class Out>
__global__ void fake_quantize_slots_kernel(const In* in, Out* out, std::int64_t rows, std::int64_t cols,
                                           const float* global_amax, quant::scale_context context,
                                           quant::output_rounding rounding) {
  using F = typename Q::format_type;
  using G = typename Q::granularity_type;
  using S = typename Q::scaling_type;
  constexpr int lanes = slot_lanes<G>();
  const std::int64_t length = slot_length<G>(cols);
  const std::int64_t slots = rows * ((cols + length - 1) / length);
  if constexpr (S::uses_global_amax) context.global_amax = *global_amax;
  // Every lane of a warp runs the same iterations (the shuffles need the whole warp): a group
  // past the last slot folds nothing and writes nothing.
  const std::int64_t thread = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t groups = static_cast<std::int64_t>(gridDim.x) * blockDim.x / lanes;
  const int lane = static_cast<int>(threadIdx.x % lanes);
  for (std::int64_t warp_slot = thread / 32 * (32 / lanes); warp_slot < slots; warp_slot += groups) {
    const std::int64_t slot = warp_slot + static_cast<std::int64_t>(threadIdx.x % 32) / lanes;
    const std::int64_t row = slot / ((cols + length - 1) / length);
    const std::int64_t begin = (slot % ((cols + length - 1) / length)) * length;
    const std::int64_t end = slot < slots ? (begin + length < cols ? begin + length : cols) : begin;
    const std::int64_t base = row * cols;
    float slot_amax = S::initial_amax;
    for (std::int64_t c = begin + lane; c < end; c += lanes) slot_amax = S::accumulate(slot_amax, to_float(in[base + c]));
    for (int offset = lanes / 2; offset > 0; offset /= 2) {
      slot_amax = S::accumulate(slot_amax, __shfl_xor_sync(0xffffffffu, slot_amax, offset, lanes));
    }
    const auto scale = S::template make<F>(slot_amax, context);
    for (std::int64_t c = begin + lane; c < end; c += lanes) {
      const float y = S::template apply<F>(to_float(in[base + c]), scale, Q::narrow_range);
      out[base + c] = from_float<Out>(quant::round_output(y, rounding));
    }
  }
}

// Running max of |x| per amax slot, on the float bits (non-negative floats order like their
// bits, so atomicMax is exact and the result independent of the order). A NaN input yields a
// NaN slot and infinity an infinite one: the caller checks finiteness, as the host calibrator does.
template <quant::granularity G, class In>
__global__ void amax_kernel(const In* in, std::int64_t rows, std::int64_t cols, unsigned int* amax_bits) {
  const std::int64_t n = rows * cols;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const unsigned int magnitude = __float_as_uint(to_float(in[i])) & 0x7fffffffu;
    atomicMax(&amax_bits[G::amax_index(i / cols, i % cols, cols)], magnitude);
  }
}

// Fills amax[0 .. G::amax_count(rows, cols)) with max |x| per slot (zero-initialised here).
template <quant::granularity G, class In>
cudaError_t compute_amax(const In* in, std::int64_t rows, std::int64_t cols, float* amax, cudaStream_t stream = nullptr) {
  constexpr unsigned block = 256;
  const std::int64_t slots = G::amax_count(rows, cols);
  cudaError_t status = cudaMemsetAsync(amax, 0, static_cast<std::size_t>(slots) * sizeof(float), stream);
  if (status != cudaSuccess || rows * cols == 0) return status;
  amax_kernel<G, In><<<detail::grid_size(rows * cols, block), block, 0, stream>>>(
      in, rows, cols, reinterpret_cast<unsigned int*>(amax));
  return cudaGetLastError();
}

// fake_quantize_kernel over the whole matrix: packs of fake_quant_pack elements where rows
// split into whole aligned packs, single elements otherwise (same values either way).
template <quant::quantizer_spec Q, class In, class Out>
void launch_static_fake_quantize(const In* in, Out* out, std::int64_t rows, std::int64_t cols, const float* amax,
                                 quant::scale_context context, quant::output_rounding rounding, cudaStream_t stream) {
  constexpr int V = detail::fake_quant_pack<In, Out>;
  const bool packed = cols % V == 0 && reinterpret_cast<std::uintptr_t>(in) % sizeof(element_pack<In, V>) == 0 &&
                      reinterpret_cast<std::uintptr_t>(out) % sizeof(element_pack<Out, V>) == 0;
  const std::int64_t steps = packed ? rows * cols / V : rows * cols;
  const auto blocks = static_cast<unsigned>(
      std::clamp<std::int64_t>((steps + detail::fake_quant_block - 1) / detail::fake_quant_block, 1,
                               detail::fake_quant_max_blocks));
  if (packed) {
    fake_quantize_kernel<Q, V, In, Out><<<blocks, detail::fake_quant_block, 0, stream>>>(in, out, rows, cols, amax,
                                                                                        context, rounding);
  } else {
    fake_quantize_kernel<Q, 1, In, Out><<<blocks, detail::fake_quant_block, 0, stream>>>(in, out, rows, cols, amax,
                                                                                        context, rounding);
  }
}

// Fake-quantizes a row-major [rows x cols] matrix; amax is Q's calibrated amax on the device
// (quant::calibrated_amax_count values; null when it takes none). A disabled Q copies.
template <quant::quantizer_spec Q, class In, class Out>
cudaError_t fake_quantize(const In* in, Out* out, std::int64_t rows, std::int64_t cols, const float* amax,
                          quant::output_rounding rounding = quant::output_rounding::fp32, cudaStream_t stream = nullptr) {
  using S = typename Q::scaling_type;
  constexpr unsigned block = 256;
  if (rows * cols == 0) return cudaSuccess;
  // The global amax lives on the device: the kernel reads it into the context.
  const quant::scale_context context = quant::make_scale_context<Q>(rows, cols, {});
  if constexpr (!Q::enabled || (S::calibrated && !S::uses_global_amax)) {
    launch_static_fake_quantize<Q>(in, out, rows, cols, amax, context, rounding, stream);
  } else if constexpr (std::is_same_v<typename Q::granularity_type, quant::per_tensor>) {
    // One slot spanning the matrix: reduce it first (the bit-order max propagates NaN, as the
    // host's dynamic amax does), then quantize elementwise with it.
    float* tensor_amax = nullptr;
    cudaError_t status = cudaMallocAsync(&tensor_amax, sizeof(float), stream);
    if (status != cudaSuccess) return status;
    status = compute_amax<quant::per_tensor, In>(in, rows, cols, tensor_amax, stream);
    if (status == cudaSuccess) {
      launch_static_fake_quantize<Q>(in, out, rows, cols, tensor_amax, context, rounding, stream);
      status = cudaGetLastError();
    }
    const cudaError_t released = cudaFreeAsync(tensor_amax, stream);
    return status != cudaSuccess ? status : released;
  } else {
    using G = typename Q::granularity_type;
    const std::int64_t slots = rows * ((cols + slot_length<G>(cols) - 1) / slot_length<G>(cols));
    fake_quantize_slots_kernel<Q, In, Out>
        <<<detail::grid_size(slots * slot_lanes<G>(), block), block, 0, stream>>>(in, out, rows, cols, amax, context,
                                                                                 rounding);
  }
  return cudaGetLastError();
}

}  // namespace aq::cuda
