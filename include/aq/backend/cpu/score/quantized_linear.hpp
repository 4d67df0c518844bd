// One recipe applied to one linear module at run time: fake-quantize its weight (calibrated from
// the weight) and its input (with a calibrated per-tensor amax where its scaling needs one) and
// recompute its output. The
// bridge from a recipe name to the typed quantizer kernels, used by calibration and both scorers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "aq/backend/cpu/gemm.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/recipe_registry.hpp"
#include "aq/quant/recipes.hpp"

namespace aq::score {

// A fake-quantized weight with the amax it was quantized with (ModelOpt's weight_quantizer._amax).
struct quantized_weight {
  tensor values;                         // same element order as the module's weight
  std::vector<float> amax;               // empty when the recipe leaves weights unquantized
  std::vector<std::int64_t> amax_shape;  // ModelOpt's _amax shape: [], [out, 1(, 1, 1, 1)], [blocks, 1]
};

// Type-erased kernels of one recipe (generated from its compile-time quantizer specs).
struct recipe_kernels {
  const quant::recipe_info* info = nullptr;
  bool weight_enabled = false;
  bool input_enabled = false;
  // weight of `shape` ([out, in] Linear or [out, c, kt, kh, kw] Conv3d), row-major.
  std::function<quantized_weight(std::span<const float> weight, const std::vector<std::int64_t>& shape)>
      quantize_weight;
  // x [rows, cols] (any ld) into out (contiguous rows x cols) with one per-tensor amax.
  std::function<void(const const_matrix_view& x, std::span<float> out, float amax)> quantize_input;
};

namespace detail {

// Matrix layout a granularity sees for a weight: blocks run along the last dim of the tensor
// (ModelOpt's block_sizes {-1: N}); channels are axis 0 with everything else flattened.
template <quant::granularity G>
std::pair<std::int64_t, std::int64_t> weight_layout(const std::vector<std::int64_t>& shape, std::int64_t numel) {
  if (shape.empty()) throw error("quantized weight: empty weight shape");
  if constexpr (requires { G::tile_rows; }) {
    if (shape.size() != 2) throw error("quantized weight: 2-D tiles need a 2-D weight, got shape " + shape_string(shape));
    return {shape.front(), shape.back()};
  } else if constexpr (requires { G::block_size; }) {
    return {numel / shape.back(), shape.back()};
  } else {
    return {shape.front(), numel / shape.front()};
  }
}

template <quant::quantizer_spec Q>
quantized_weight quantize_weight_with(std::span<const float> weight, const std::vector<std::int64_t>& shape) {
  using G = typename Q::granularity_type;
  std::int64_t numel = 1;
  for (const std::int64_t e : shape) numel *= e;
  if (numel != static_cast<std::int64_t>(weight.size())) {
    throw error("quantized weight: " + std::to_string(weight.size()) + " values for shape " + shape_string(shape));
  }
  quantized_weight out;
  out.values = tensor(shape);
  const auto [rows, cols] = weight_layout<G>(shape, numel);
  out.amax = quant::fake_quantize_weight<Q>(weight, std::span<float>(out.values.storage()), rows, cols);
  if (!out.amax.empty()) {
    out.amax_shape = quant::calibrated_amax_shape<Q>(rows, cols);
    if (G::depends_on_shape && !requires { G::block_size; } && !requires { G::tile_rows; }) {
      while (out.amax_shape.size() < shape.size()) out.amax_shape.push_back(1);  // Conv3d: [out, 1, 1, 1, 1]
    }
  }
  return out;
}

template <quant::quantizer_spec Q>
void quantize_input_with(const const_matrix_view& x, std::span<float> out, float amax) {
  if (static_cast<std::int64_t>(out.size()) != x.rows * x.cols) {
    throw error("quantized input: output holds " + std::to_string(out.size()) + " values, expected " +
                std::to_string(x.rows * x.cols));
  }
  // Static activation scaling is per tensor (one calibrated amax); dynamic scaling needs none.
  if constexpr (Q::enabled && Q::scaling_type::calibrated && !Q::scaling_type::uses_global_amax) {
    static_assert(std::is_same_v<typename Q::granularity_type, quant::per_tensor>,
                  "static activation quantizers are calibrated per tensor");
  }
  const std::span<const float> one(&amax, quant::calibrated_amax_count<Q>(1, x.cols));
  for (std::int64_t r = 0; r < x.rows; ++r) {
    const std::span<const float> row(x.row(r), static_cast<std::size_t>(x.cols));
    const std::span<float> dst = out.subspan(static_cast<std::size_t>(r * x.cols), static_cast<std::size_t>(x.cols));
    quant::fake_quantize_matrix<Q>(row, dst, 1, x.cols, one);
  }
}

}  // namespace detail

// Kernels of the recipe `info` (a registry entry of List).
template <class List = recipes::all_recipes>
recipe_kernels make_recipe_kernels(const quant::recipe_info& info) {
  recipe_kernels k;
  k.info = &info;
  quant::visit_recipe<List>(info.name, [&]<class R>(std::type_identity<R>) {
    using W = typename R::weight;
    using I = typename R::input;
    k.weight_enabled = W::enabled;
    k.input_enabled = I::enabled;
    k.quantize_weight = &detail::quantize_weight_with<W>;
    k.quantize_input = &detail::quantize_input_with<I>;
  });
  return k;
}

// Y_r = Q_in(X)·Q_w(W)ᵀ + b with an already fake-quantized weight (cached by the caller).
inline tensor quantized_linear_forward(const recipe_kernels& kernels, const quantized_weight& weight,
                                       const const_matrix_view& x, float input_amax, const float* bias) {
  const std::int64_t out_features = weight.values.shape().front();
  const std::int64_t in_features = weight.values.numel() / out_features;
  const const_matrix_view w(weight.values.data(), out_features, in_features, in_features);
  tensor y({x.rows, out_features});
  if (kernels.input_enabled) {
    tensor xq({x.rows, x.cols});
    kernels.quantize_input(x, std::span<float>(xq.storage()), input_amax);
    cpu::linear_forward(xq.matrix(), w, y.matrix(), bias);
  } else {
    cpu::linear_forward(x, w, y.matrix(), bias);
  }
  return y;
}

}  // namespace aq::score
