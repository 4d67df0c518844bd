// The gradient (Fisher) score of one quantized module output on the GPU:
// score += Σ (dL/dY)²·(Y_r − Y)², with Y_r the output of the quantized GEMM, Y the unquantized
// one and G = dL/dY (Y_r may arrive as a product of codes whose factors and bias the pass applies
// itself: product_scaling). One fused pass reads the three tensors once; each block reduces its rows in
// fp32, the partials are summed in fp64 by one block in a fixed order (no float atomics), so a
// score is bit-reproducible run to run and independent of the GPU's SM count.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "aq/backend/cuda/kernels/block_reduce.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"

namespace aq::cuda {

// How Y_r − Y is rounded before squaring. ModelOpt forms the difference in the module dtype
// (bf16 for Qwen3-VL), so bf16 reproduces its scores; fp32 keeps the exact difference.
enum class score_difference { bf16, fp32 };

// How a recipe's Y_r is read from what its GEMM stored. Default: the stored values are Y_r. A
// product of codes can leave its factors and bias to the score pass instead of a pass of their
// own (which reads and writes Y_r once more): Y_r = acc · (input_factor · weight_factors[col or 0])
// + bias[col], acc the stored fp32 value or, for int8 codes, its int32 bits.
struct product_scaling {
  const float* input_factor = nullptr;    // device, one; nullptr: the stored values are scaled
  const float* weight_factors = nullptr;  // device, one per column (per_column) or one
  bool per_column = false;
  bool integer = false;        // the stored 4 bytes are an int32 accumulator
  const float* bias = nullptr;  // device fp32 per column, added after the factors; nullptr: none
};

namespace detail {

inline constexpr int score_block = 256;
// Fixed, device-independent grid: the partial sums (and so the result's rounding) never depend
// on the GPU the score runs on.
inline constexpr int score_blocks = 512;

// Several recipes' Y_r against one Y and G: Y and G are read once for all of them, and each
// recipe's sum runs in the same fixed order whatever the others are, so its score does not
// depend on which recipes share the pass. partials: [R][score_blocks].
inline constexpr int max_fused_recipes = 8;
// Elements per load where every view's rows split into aligned packs (16 bytes of fp32 Y, Y_r).
inline constexpr int score_vector = 4;
template <class TR>
struct recipe_outputs {
  device_matrix<const TR> yr[max_fused_recipes];
  product_scaling scaling[max_fused_recipes];
};

// Y_r from its stored value: as the separate passes dequantize_product and add_bias would leave
// it, in the same fp32 operations (never contracted into an FMA), so the score is the same bits.
__device__ inline float scaled_product(float stored, const product_scaling& s, float input_factor, std::int64_t col) {
  float y = stored;
  if (s.input_factor != nullptr) {
    const float acc = s.integer ? static_cast<float>(__float_as_int(stored)) : stored;
    y = __fmul_rn(acc, __fmul_rn(input_factor, s.weight_factors[s.per_column ? col : 0]));
  }
  return s.bias != nullptr ? __fadd_rn(y, s.bias[col]) : y;
}

// V: elements per load (rows split into whole aligned packs of V). The per-thread sum runs over
// the thread's packs in order, so a score depends on V but never on the GPU or on R.
template <int R, int V, class TR, class TY, class TG>
__global__ void __launch_bounds__(score_block)
    score_partials_multi_kernel(recipe_outputs<TR> yrs, device_matrix<const TY> y, device_matrix<const TG> g,
                                score_difference rounding, double* partials) {
  __shared__ block_reducer<float, score_block> red;
  float acc[R];
  float input_factor[R];
  for (int k = 0; k < R; ++k) {
    acc[k] = 0.0f;
    input_factor[k] = yrs.scaling[k].input_factor != nullptr ? *yrs.scaling[k].input_factor : 1.0f;
  }
  for (std::int64_t r = blockIdx.x; r < y.rows; r += score_blocks) {
    for (std::int64_t c = static_cast<std::int64_t>(threadIdx.x) * V; c < y.cols; c += score_block * V) {
      const auto yv = load_pack<V>(y, r, c);
      const auto gv = load_pack<V>(g, r, c);
#pragma unroll
      for (int k = 0; k < R; ++k) {
        const auto yr = load_pack<V>(yrs.yr[k], r, c);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const float gj = to_float(gv.v[j]);
          float d = scaled_product(to_float(yr.v[j]), yrs.scaling[k], input_factor[k], c + j) - to_float(yv.v[j]);
          if (rounding == score_difference::bf16) d = round_to_bf16(d);
          acc[k] += (gj * gj) * (d * d);
        }
      }
    }
  }
#pragma unroll
  for (int k = 0; k < R; ++k) {
    const float block_total = block_sum(acc[k], red);
    if (threadIdx.x == 0) partials[k * score_blocks + blockIdx.x] = static_cast<double>(block_total);
  }
}

// score[k] += Σ partials[k][·] for each recipe k (one block per recipe). Static: a kernel that
// is not a template, defined in a header, would otherwise be defined by every .cu file including it.
static __global__ void __launch_bounds__(score_blocks) score_totals_kernel(const double* partials, double* score) {
  __shared__ block_reducer<double, score_blocks> red;
  const double total = block_sum(partials[blockIdx.x * score_blocks + threadIdx.x], red);
  if (threadIdx.x == 0) score[blockIdx.x] += total;
}

}  // namespace detail

// Scratch for accumulate_gradient_score(s) (one per stream).
struct gradient_score_workspace {
  device_buffer<double> partials{static_cast<std::size_t>(detail::score_blocks * detail::max_fused_recipes)};
};

// scores[k] (device fp64, consecutive) += Σ g² · (yr[k] − y)² for k < yrs.size() (at most
// max_fused_recipes): one pass over Y and G for all recipes; each score bit-identical to a pass
// of its own (accumulate_gradient_score).
// scalings: empty (every Y_r stored scaled) or one per Y_r; scaled reads need fp32 storage (TR float).
template <class TR, class TY, class TG>
void accumulate_gradient_scores(const std::vector<device_matrix<const TR>>& yrs, device_matrix<const TY> y,
                                device_matrix<const TG> g, score_difference rounding, double* scores,
                                gradient_score_workspace& ws, cudaStream_t stream = nullptr,
                                const std::vector<product_scaling>& scalings = {}) {
  const int n = static_cast<int>(yrs.size());
  if (n < 1 || n > detail::max_fused_recipes) {
    throw error("cuda accumulate_gradient_scores: " + std::to_string(n) + " recipes, expected 1 to " +
                std::to_string(detail::max_fused_recipes));
  }
  if (!scalings.empty() && (scalings.size() != yrs.size() || !std::is_same_v<TR, float>)) {
    throw error("cuda accumulate_gradient_scores: " + std::to_string(scalings.size()) + " scalings for " +
                std::to_string(n) + " recipes (one each, on fp32 storage)");
  }
  check_same_shape(y, g, "cuda accumulate_gradient_scores: grad_output");
  detail::recipe_outputs<TR> packed{};
  for (int k = 0; k < n; ++k) {
    check_same_shape(y, yrs[static_cast<std::size_t>(k)], "cuda accumulate_gradient_scores: y_r");
    packed.yr[k] = yrs[static_cast<std::size_t>(k)];
    if (!scalings.empty()) packed.scaling[k] = scalings[static_cast<std::size_t>(k)];
  }
  // The kernel instance with R = n, among R = 1 … max_fused_recipes.
  constexpr int V = detail::score_vector;
  bool vector = rows_packed<V>(y) && rows_packed<V>(g);
  for (int k = 0; k < n; ++k) vector = vector && rows_packed<V>(packed.yr[k]);
  const auto launch_if_n = [&]<int R>() {
    if (R != n) return;
    if (vector) {
      detail::score_partials_multi_kernel<R, V, TR, TY, TG>
          <<<detail::score_blocks, detail::score_block, 0, stream>>>(packed, y, g, rounding, ws.partials.data());
    } else {
      detail::score_partials_multi_kernel<R, 1, TR, TY, TG>
          <<<detail::score_blocks, detail::score_block, 0, stream>>>(packed, y, g, rounding, ws.partials.data());
    }
  };
  [&]<int... Rs>(std::integer_sequence<int, Rs...>) {
    (launch_if_n.template operator()<Rs + 1>(), ...);
  }(std::make_integer_sequence<int, detail::max_fused_recipes>{});
  AQ_CUDA_CHECK_LAUNCH();
  detail::score_totals_kernel<<<n, detail::score_blocks, 0, stream>>>(ws.partials.data(), scores);
  AQ_CUDA_CHECK_LAUNCH();
}

// *score (device fp64) += Σ_{r,c} g² · d², d = yr − y rounded per `rounding`. Stream-ordered, no sync.
template <class TR, class TY, class TG>
void accumulate_gradient_score(device_matrix<const TR> yr, device_matrix<const TY> y, device_matrix<const TG> g,
                               score_difference rounding, double* score, gradient_score_workspace& ws,
                               cudaStream_t stream = nullptr) {
  accumulate_gradient_scores(std::vector<device_matrix<const TR>>{yr}, y, g, rounding, score, ws, stream);
}

}  // namespace aq::cuda
