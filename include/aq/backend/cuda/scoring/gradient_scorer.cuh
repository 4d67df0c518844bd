// ModelOpt's gradient score on the GPU: calibration (max |X| per module input with CUB, weight
// amax per recipe) and, in the model's backward, for every scored linear and candidate recipe
// Y_r = Q_in(X)·Q_w(W)ᵀ and S(m, r) += Σ G²(Y_r − Y)² in fp64, in a fixed order. Y_r is a bf16
// GEMM on the fake-quantized operands rounded to bf16 (fp32 accumulation), or, with
// recipe_gemm::codes, a GEMM on the formats' own tensor cores where both sides are e4m3 or int8
// codes with per-tensor input and per-tensor or per-row weight scales (fp8_e4m3, int8_w8a8:
// exact products, factors applied after). Device twin of score::calibrated_recipes + score::gradient_scorer.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "aq/backend/cuda/kernels/amax.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/fake_quant.cuh"
#include "aq/backend/cuda/kernels/gemm_cublaslt.cuh"
#include "aq/backend/cuda/kernels/gradient_score.cuh"
#include "aq/backend/cuda/kernels/kernel_profile.cuh"
#include "aq/backend/cuda/kernels/quantize_codes.cuh"
#include "aq/backend/cuda/model/linear_observer.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/model/quantizable_modules.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/quantizer.hpp"
#include "aq/quant/recipe_registry.hpp"
#include "aq/quant/recipes.hpp"

namespace aq::cuda {

// Type-erased GPU kernels of one recipe (from its compile-time quantizer specs). Weights are
// [rows, cols] bf16 row-major; the amax slot of element (r, c) of a row block starting at row0
// is amax[offset(row0, cols) + G::amax_index(r, c, cols)].
struct device_recipe {
  const quant::recipe_info* info = nullptr;
  bool weight_enabled = false;
  bool input_enabled = false;
  std::int64_t (*weight_amax_count)(std::int64_t rows, std::int64_t cols) = nullptr;
  std::vector<std::int64_t> (*weight_amax_shape)(std::int64_t rows, std::int64_t cols) = nullptr;
  std::int64_t (*weight_amax_offset)(std::int64_t row0, std::int64_t cols) = nullptr;
  cudaError_t (*weight_amax)(const bf16* w, std::int64_t rows, std::int64_t cols, float* amax, cudaStream_t s) = nullptr;
  cudaError_t (*quantize_weight)(const bf16* w, bf16* out, std::int64_t rows, std::int64_t cols, const float* amax,
                                 cudaStream_t s) = nullptr;
  cudaError_t (*quantize_input)(const bf16* x, bf16* out, std::int64_t rows, std::int64_t cols, const float* amax,
                                cudaStream_t s) = nullptr;
  // Recipes whose product can run on codes (code_gemm_recipe): the codes' cuBLASLt type
  // (CUDA_R_16BF: none), whether the weight has a factor per row, and the code makers.
  cudaDataType_t code_type = CUDA_R_16BF;
  bool weight_factor_per_row = false;
  using code_maker = cudaError_t (*)(const bf16* in, std::uint8_t* codes, std::int64_t rows, std::int64_t cols,
                                     const float* amax, float* factors, cudaStream_t s);
  code_maker weight_codes = nullptr;
  code_maker input_codes = nullptr;
};

namespace detail {

template <quant::quantizer_spec Q>
struct device_quantizer {
  using G = typename Q::granularity_type;
  using S = typename Q::scaling_type;
  // Static scaling calibrates an amax per granularity slot, NVFP4-style block scales one global
  // amax (per_tensor below), dynamic scaling none.
  using calibration_granularity = std::conditional_t<S::uses_global_amax, quant::per_tensor, G>;
  static std::int64_t amax_count(std::int64_t rows, std::int64_t cols) {
    return static_cast<std::int64_t>(quant::calibrated_amax_count<Q>(rows, cols));
  }
  static std::vector<std::int64_t> amax_shape(std::int64_t rows, std::int64_t cols) {
    return quant::calibrated_amax_shape<Q>(rows, cols);
  }
  static std::int64_t amax_offset(std::int64_t row0, std::int64_t cols) {
    return S::calibrated && !S::uses_global_amax ? G::amax_index(row0, 0, cols) : 0;
  }
  // Per-tensor and per-row amax through the reductions of amax.cuh (exact, the same result):
  // compute_amax's one atomic per element on a single slot serialises over a whole model's
  // weights (the likely cause of the 1.55 s of amax time in the 4B calibration on an H100).
  static cudaError_t amax(const bf16* w, std::int64_t rows, std::int64_t cols, float* out, cudaStream_t s) {
    const device_matrix<const bf16> view{w, rows, cols, cols};
    using C = calibration_granularity;
    if constexpr (!S::calibrated) {
      return cudaSuccess;
    } else if constexpr (std::is_same_v<C, quant::per_tensor>) {
      device_buffer<std::byte> temp;
      amax_per_tensor(view, out, temp, s);
      return cudaStreamSynchronize(s);  // temp is released on return
    } else if constexpr (std::is_same_v<C, quant::per_channel>) {
      amax_per_row(view, out, s);
      return cudaGetLastError();
    } else {
      return compute_amax<C, bf16>(w, rows, cols, out, s);
    }
  }
  // fp32 fake-quant result rounded once to bf16 (the GEMM operand), as a bf16 model would hold it.
  static cudaError_t quantize(const bf16* in, bf16* out, std::int64_t rows, std::int64_t cols, const float* amax,
                              cudaStream_t s) {
    return fake_quantize<Q, bf16, bf16>(in, out, rows, cols, amax, quant::output_rounding::fp32, s);
  }
};

}  // namespace detail

template <class List = recipes::all_recipes>
device_recipe make_device_recipe(const quant::recipe_info& info) {
  device_recipe k;
  k.info = &info;
  quant::visit_recipe<List>(info.name, [&]<class R>(std::type_identity<R>) {
    // Spelled as plain quantizer<...> types: nvcc's host stub cannot name a kernel argument
    // through the recipe's string template parameter.
    using RW = typename R::weight;
    using RI = typename R::input;
    using W = quant::quantizer<typename RW::format_type, typename RW::granularity_type, typename RW::scaling_type,
                               RW::narrow_range>;
    using I = quant::quantizer<typename RI::format_type, typename RI::granularity_type, typename RI::scaling_type,
                               RI::narrow_range>;
    k.weight_enabled = W::enabled;
    k.input_enabled = I::enabled;
    if constexpr (W::enabled) {
      k.weight_amax_count = &detail::device_quantizer<W>::amax_count;
      k.weight_amax_shape = &detail::device_quantizer<W>::amax_shape;
      k.weight_amax_offset = &detail::device_quantizer<W>::amax_offset;
      k.weight_amax = &detail::device_quantizer<W>::amax;
      k.quantize_weight = &detail::device_quantizer<W>::quantize;
    }
    if constexpr (I::enabled) k.quantize_input = &detail::device_quantizer<I>::quantize;
    if constexpr (code_gemm_recipe<W, I>) {
      k.code_type = code_data_type<typename W::format_type>;
      k.weight_factor_per_row = std::is_same_v<typename W::granularity_type, quant::per_channel>;
      k.weight_codes = &quantize_codes<W>;
      k.input_codes = &quantize_codes<I>;
    }
  });
  return k;
}

// Calibration state on the device: per module the running input amax, per (module, recipe) the
// weight amax (computed from the full weight when the module is first seen).
class device_calibration {
 public:
  device_calibration(std::vector<device_recipe> recipes, std::span<const quantizable_module> modules,
                     std::vector<bool> active)
      : recipes_(std::move(recipes)), active_(std::move(active)) {
    if (active_.size() != modules.size()) throw error("device_calibration: active flags do not match the modules");
    for (std::size_t m = 0; m < modules.size(); ++m) {
      index_.emplace(modules[m].name, m);
      shapes_.push_back(modules[m].weight_shape);
    }
    input_amax_ = device_buffer<float>(modules.size());
    input_amax_.fill_bytes(0);
    shares_.assign(modules.size(), std::nullopt);
    AQ_CUDA_CHECK(cudaDeviceSynchronize());  // zeroed before any stream folds into it
    seen_.assign(modules.size(), false);
    weight_amax_.resize(modules.size() * recipes_.size());
  }

  std::size_t num_modules() const { return shapes_.size(); }
  std::size_t num_recipes() const { return recipes_.size(); }
  const device_recipe& recipe(std::size_t r) const { return recipes_.at(r); }
  bool active(std::size_t m) const { return active_.at(m); }
  std::optional<std::size_t> module_index(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }

  // One forward call of module m: fold max |X| into its input amax; weight amax on first sight.
  // A module whose first call read the X the previously observed call read (q/k/v, gate/up)
  // copies that module's running amax instead of reading X again: it saw the same X in every
  // pass so far (the model calls its modules the same way every pass; later calls must confirm).
  void observe(std::size_t m, const device_linear_call& call, cudaStream_t stream, kernel_profile* profile = nullptr) {
    profiled(profile, kernel_class::amax, stream, [&] {
      const bool same_x = call.same_input_as_previous && call.input.data == last_input_ && last_module_ != m;
      if (!seen_[m] && same_x) shares_[m] = last_module_;
      if (shares_[m]) {
        if (!same_x || last_module_ != *shares_[m]) {
          throw error("device_calibration: module " + std::string(call.name) + " no longer reads the input it shared");
        }
        AQ_CUDA_CHECK(cudaMemcpyAsync(input_amax_.data() + m, input_amax_.data() + last_module_, sizeof(float),
                                      cudaMemcpyDeviceToDevice, stream));
      } else {
        fold_amax(call.input, input_amax_.data() + m, stream);
        last_input_ = call.input.data;
        last_module_ = m;
      }
      seen_[m] = true;
      ensure_weight_amax(m, call, stream);
    });
  }
  bool has_input_amax(std::size_t m) const { return seen_.at(m); }
  void require_input_amax(std::size_t m, std::string_view name, std::string_view who) const {
    if (!has_input_amax(m)) throw error(std::string(who) + ": module " + std::string(name) + " has no calibrated input amax");
  }
  const float* input_amax_device(std::size_t m) const { return input_amax_.data() + m; }
  // Host copies (after the stream is synchronised).
  std::vector<float> input_amax_host() const { return input_amax_.to_host(); }
  std::vector<float> weight_amax_host(std::size_t m, std::size_t r) const {
    const device_buffer<float>& b = weight_amax_.at(m * recipes_.size() + r);
    return b.empty() ? std::vector<float>{} : b.to_host();
  }
  std::vector<std::int64_t> weight_amax_shape(std::size_t m, std::size_t r) const {
    const device_recipe& k = recipes_.at(r);
    const auto& s = shapes_.at(m);
    std::int64_t numel = 1;
    for (const std::int64_t e : s) numel *= e;
    if (!k.weight_enabled || weight_amax_.at(m * recipes_.size() + r).empty()) return {};
    return k.weight_amax_shape(s.front(), numel / s.front());
  }
  const float* weight_amax_device(std::size_t m, std::size_t r) const {
    return weight_amax_.at(m * recipes_.size() + r).data();
  }
  // Q_in(X) of the call's input under recipe r, for module m, into dst (rows × cols).
  void quantize_input(std::size_t m, std::size_t r, const device_linear_call& call, bf16* dst, cudaStream_t stream) const {
    const device_matrix<const bf16>& x = call.input;
    if (x.ld != x.cols) throw error("device_calibration: " + std::string(call.name) + ": strided inputs are not supported");
    AQ_CUDA_CHECK(recipes_.at(r).quantize_input(x.data, dst, x.rows, x.cols, input_amax_device(m), stream));
  }
  // Q_w(W) of the call's weight row block under recipe r, for module m, into dst (rows × cols).
  void quantize_weight(std::size_t m, std::size_t r, const device_linear_call& call, bf16* dst, cudaStream_t stream) const {
    const device_recipe& k = recipes_.at(r);
    const device_matrix<const bf16>& w = call.weight;
    if (w.ld != w.cols) throw error("device_calibration: " + std::string(call.name) + ": strided weights are not supported");
    const float* amax = weight_amax_device(m, r) + k.weight_amax_offset(call.row0, w.cols);
    AQ_CUDA_CHECK(k.quantize_weight(w.data, dst, w.rows, w.cols, amax, stream));
  }
  // Codes of Q_in(X) and Q_w(W) for a recipe with code_type (device_recipe), and their factors
  // (one for X; one per row of the call's block, or one, for W).
  void input_codes(std::size_t m, std::size_t r, const device_linear_call& call, std::uint8_t* dst, float* factor,
                   cudaStream_t stream) const {
    const device_matrix<const bf16>& x = call.input;
    if (x.ld != x.cols) throw error("device_calibration: " + std::string(call.name) + ": strided inputs are not supported");
    AQ_CUDA_CHECK(recipes_.at(r).input_codes(x.data, dst, x.rows, x.cols, input_amax_device(m), factor, stream));
  }
  void weight_codes(std::size_t m, std::size_t r, const device_linear_call& call, std::uint8_t* dst, float* factors,
                    cudaStream_t stream) const {
    const device_recipe& k = recipes_.at(r);
    const device_matrix<const bf16>& w = call.weight;
    if (w.ld != w.cols) throw error("device_calibration: " + std::string(call.name) + ": strided weights are not supported");
    const float* amax = weight_amax_device(m, r) + k.weight_amax_offset(call.row0, w.cols);
    AQ_CUDA_CHECK(k.weight_codes(w.data, dst, w.rows, w.cols, amax, factors, stream));
  }

  // Weight amax from the full weight of the call (row0 == 0 and all rows present).
  void ensure_weight_amax(std::size_t m, const device_linear_call& call, cudaStream_t stream) {
    for (std::size_t r = 0; r < recipes_.size(); ++r) {
      const device_recipe& k = recipes_[r];
      device_buffer<float>& slot = weight_amax_[m * recipes_.size() + r];
      if (!k.weight_enabled || !slot.empty()) continue;
      const std::int64_t count = k.weight_amax_count(call.weight_rows, call.weight.cols);
      if (count == 0) continue;  // dynamic scaling: nothing to calibrate
      if (call.row0 != 0 || call.weight.rows != call.weight_rows) {
        throw error("device_calibration: module " + std::string(call.name) +
                    " first seen in a row chunk; its weight amax needs the whole weight");
      }
      slot = device_buffer<float>(static_cast<std::size_t>(count));
      AQ_CUDA_CHECK(k.weight_amax(call.weight.data, call.weight.rows, call.weight.cols, slot.data(), stream));
    }
  }

 private:
  std::vector<device_recipe> recipes_;
  std::vector<bool> active_;
  std::map<std::string, std::size_t> index_;
  std::vector<std::vector<std::int64_t>> shapes_;
  device_buffer<float> input_amax_;
  std::vector<bool> seen_;
  std::vector<std::optional<std::size_t>> shares_;  // the module whose input amax a module takes
  const void* last_input_ = nullptr;                // X of the last module that read its own
  std::size_t last_module_ = static_cast<std::size_t>(-1);
  std::vector<device_buffer<float>> weight_amax_;
};

// Forward observer of the calibration pass.
class device_calibration_observer : public device_linear_observer {
 public:
  device_calibration_observer(device_calibration& calibration, cudaStream_t stream, kernel_profile* profile = nullptr)
      : calib_(calibration), stream_(stream), profile_(profile) {}
  void on_forward(const device_linear_call& call) override {
    const auto m = calib_.module_index(call.name);
    if (!m || !calib_.active(*m)) return;
    calib_.observe(*m, call, stream_, profile_);
  }

 private:
  device_calibration& calib_;
  cudaStream_t stream_;
  kernel_profile* profile_;
};

// Which GEMM forms Y_r for recipes that can run on codes: bf16 operands (the default, ModelOpt's
// computation) or the codes (opt-in: docs/cuda-backend.md).
enum class recipe_gemm { codes, bf16 };

// Backward observer of the score passes. Quantized weights (bf16 operands or codes) are kept per
// (module, recipe, row block) while they fit in `weight_cache_bytes` (formed once from the
// cached weight amax, reused by every later batch); past that budget they are formed on the fly
// per call in a scratch of the largest weight (one extra read and write of the weight per recipe
// and batch).
class device_gradient_scorer : public device_linear_observer {
 public:
  device_gradient_scorer(device_calibration& calibration, cublaslt_gemm& gemm, cudaStream_t stream,
                         score_difference rounding = score_difference::fp32, std::size_t weight_cache_bytes = 0,
                         kernel_profile* profile = nullptr, recipe_gemm gemm_kind = recipe_gemm::bf16)
      : calib_(calibration),
        gemm_(gemm),
        stream_(stream),
        rounding_(rounding),
        cache_budget_(weight_cache_bytes),
        profile_(profile),
        gemm_kind_(gemm_kind),
        scores_(calibration.num_modules() * calibration.num_recipes()) {
    scores_.fill_bytes(0, stream_);
  }

  void on_backward(const device_linear_call& call) override {
    // Q(X) of the previous call stays valid only while X does: every call, scored or not, is seen.
    const bool same_x = call.same_input_as_previous && call.input.data == xq_source_;
    xq_source_ = call.input.data;
    if (!same_x) {
      std::fill(xq_amax_.begin(), xq_amax_.end(), std::nanf(""));
      std::fill(xc_amax_.begin(), xc_amax_.end(), std::nanf(""));
    }
    const auto m = calib_.module_index(call.name);
    if (!m || !calib_.active(*m)) return;
    calib_.ensure_weight_amax(*m, call, stream_);  // a module calibration never saw (cannot chunk)
    const std::int64_t rows = call.input.rows, in = call.input.cols, out = call.weight.rows;
    const std::size_t R = calib_.num_recipes();
    if (xq_.size() != R) {
      xq_.resize(R);
      xq_amax_.assign(R, std::nanf(""));
      xc_.resize(R);
      xc_amax_.assign(R, std::nanf(""));
      xc_factors_ = device_buffer<float>(R);
      input_amax_ = calib_.input_amax_host();  // calibration is over: the amax are final
    }
    if (yr_.size() != R) {
      yr_.resize(R);
      yr_scaling_.resize(R);
      wc_factors_.resize(R);
    }
    calib_.require_input_amax(*m, call.name, "device_gradient_scorer");
    for (std::size_t r = 0; r < R; ++r) {
      const device_recipe& k = calib_.recipe(r);
      yr_scaling_[r] = {};
      if (on_codes(*m, r) && code_product(*m, r, call)) continue;
      device_matrix<const bf16> x = call.input;
      device_matrix<const bf16> w = call.weight;
      if (k.input_enabled) {
        // Q(X) of the previous call is reused when X and its amax are the same (q/k/v, gate/up
        // and the LM-head chunks share X, and calibration gave them equal amax).
        if (!(xq_amax_[r] == input_amax_[*m])) {
          xq_[r].grow_to(static_cast<std::size_t>(rows * in));
          profiled(profile_, kernel_class::fake_quant, stream_,
                   [&] { calib_.quantize_input(*m, r, call, xq_[r].data(), stream_); });
          xq_amax_[r] = input_amax_[*m];
        }
        x = {xq_[r].data(), rows, in, in};
      }
      if (k.weight_enabled) w = {quantized_weight(*m, r, call), out, in, in};
      yr_[r].grow_to(static_cast<std::size_t>(rows * out));
      const device_matrix<float> yr{yr_[r].data(), rows, out, out};
      profiled(profile_, kernel_class::score_gemm, stream_, [&] { gemm_.linear_forward(x, w, yr, call.bias, false, stream_); });
      flops_ += 2.0 * static_cast<double>(rows) * static_cast<double>(out) * static_cast<double>(in);
    }
    // One pass over Y and dL/dY for all recipes' Y_r (in groups of max_fused_recipes).
    profiled(profile_, kernel_class::score, stream_, [&] {
      const auto fused = static_cast<std::size_t>(detail::max_fused_recipes);
      for (std::size_t r0 = 0; r0 < R; r0 += fused) {
        std::vector<device_matrix<const float>> outs;
        std::vector<product_scaling> scalings;
        for (std::size_t r = r0; r < std::min(R, r0 + fused); ++r) {
          outs.push_back({yr_[r].data(), rows, out, out});
          scalings.push_back(yr_scaling_[r]);
        }
        accumulate_gradient_scores(outs, call.output, call.grad_output, rounding_, scores_.data() + *m * R + r0, ws_,
                                   stream_, scalings);
      }
    });
  }

  // S(m, r) summed over the observed batches (synchronises the stream).
  // How many (module, recipe) products ran on codes.
  std::size_t code_products() const { return code_products_; }

  std::vector<double> scores() const {
    AQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return scores_.to_host();
  }
  double gemm_flops() const { return flops_; }
  std::size_t weight_cache_bytes() const { return cache_used_; }

 private:
  // Q_w(W) of module m, recipe r for the call's row block: from the cache, newly cached while the
  // budget allows, else formed in the scratch.
  const bf16* quantized_weight(std::size_t m, std::size_t r, const device_linear_call& call) {
    const std::size_t n = static_cast<std::size_t>(call.weight.rows * call.weight.cols);
    const std::tuple<std::size_t, std::size_t, std::int64_t> key{m, r, call.row0};
    const auto it = cache_.find(key);
    if (it != cache_.end()) return it->second.data();
    bf16* dst = nullptr;
    if (cache_used_ + n * sizeof(bf16) <= cache_budget_) {
      dst = cache_.emplace(key, device_buffer<bf16>(n)).first->second.data();
      cache_used_ += n * sizeof(bf16);
    } else {
      wq_.grow_to(n);
      dst = wq_.data();
    }
    profiled(profile_, kernel_class::fake_quant, stream_, [&] { calib_.quantize_weight(m, r, call, dst, stream_); });
    return dst;
  }

  struct weight_codes {
    device_buffer<std::uint8_t> codes;
    device_buffer<float> factors;  // one per row, or one
  };
  // A recipe's weight codes and factors, cached or in the scratch.
  struct coded_view {
    std::uint8_t* codes;
    float* factors;
  };

  // Whether recipe r's product runs on codes: the recipe allows it, codes are asked for, and
  // cuBLASLt has not refused one of the module's products before.
  bool on_codes(std::size_t m, std::size_t r) const {
    return gemm_kind_ == recipe_gemm::codes && calib_.recipe(r).code_type != CUDA_R_16BF && !code_refused_.contains({m, r});
  }

  // Y_r of recipe r on codes: X codes shared by calls with the same X and amax, W codes cached
  // like the bf16 operands, the factors applied by the GEMM (e4m3, per-tensor weight) or, with the
  // bias, left to the score pass (yr_scaling_). False when cuBLASLt refused the product at run
  // time: the module then stays on bf16 operands.
  bool code_product(std::size_t m, std::size_t r, const device_linear_call& call) {
    const device_recipe& k = calib_.recipe(r);
    const std::int64_t rows = call.input.rows, in = call.input.cols, out = call.weight.rows;
    float* x_factor = xc_factors_.data() + r;
    if (!(xc_amax_[r] == input_amax_[m])) {
      xc_[r].grow_to(static_cast<std::size_t>(rows * in));
      profiled(profile_, kernel_class::fake_quant, stream_,
               [&] { calib_.input_codes(m, r, call, xc_[r].data(), x_factor, stream_); });
      xc_amax_[r] = input_amax_[m];
    }
    const coded_view wc = coded_weight(m, r, call);
    yr_[r].grow_to(static_cast<std::size_t>(rows * out));
    const device_matrix<const std::uint8_t> x{xc_[r].data(), rows, in, in}, w{wc.codes, out, in, in};
    bool ran = false;
    product_scaling scaling{.bias = call.bias};
    profiled(profile_, kernel_class::score_gemm, stream_, [&] {
      const device_matrix<float> y{yr_[r].data(), rows, out, out};
      if (k.code_type == CUDA_R_8I) {
        const device_matrix<std::int32_t> acc{reinterpret_cast<std::int32_t*>(y.data), rows, out, out};
        ran = gemm_.linear_forward_codes(k.code_type, x, w, acc, nullptr, nullptr, stream_);
        scaling = {x_factor, wc.factors, k.weight_factor_per_row, true, call.bias};
      } else if (k.weight_factor_per_row) {
        ran = gemm_.linear_forward_codes(k.code_type, x, w, y, nullptr, nullptr, stream_);
        scaling = {x_factor, wc.factors, true, false, call.bias};
      } else {
        ran = gemm_.linear_forward_codes(k.code_type, x, w, y, x_factor, wc.factors, stream_);
      }
    });
    if (!ran) {
      code_refused_.insert({m, r});
      return false;
    }
    yr_scaling_[r] = scaling;
    flops_ += 2.0 * static_cast<double>(rows) * static_cast<double>(out) * static_cast<double>(in);
    ++code_products_;
    return true;
  }

  // Past the cache budget the codes go to one scratch (each product reads them before the next
  // recipe's are formed), the factors to one per recipe (the score pass reads them after all).
  coded_view coded_weight(std::size_t m, std::size_t r, const device_linear_call& call) {
    const std::size_t n = static_cast<std::size_t>(call.weight.rows * call.weight.cols);
    const std::size_t slots = calib_.recipe(r).weight_factor_per_row ? static_cast<std::size_t>(call.weight.rows) : 1;
    const std::tuple<std::size_t, std::size_t, std::int64_t> key{m, r, call.row0};
    const auto it = code_cache_.find(key);
    if (it != code_cache_.end()) return {it->second.codes.data(), it->second.factors.data()};
    coded_view dst{};
    if (cache_used_ + n + slots * sizeof(float) <= cache_budget_) {
      weight_codes& cached = code_cache_.emplace(key, weight_codes{}).first->second;
      cached.codes = device_buffer<std::uint8_t>(n);
      cached.factors = device_buffer<float>(slots);
      cache_used_ += n + slots * sizeof(float);
      dst = {cached.codes.data(), cached.factors.data()};
    } else {
      wc_codes_.grow_to(n);
      wc_factors_[r].grow_to(slots);
      dst = {wc_codes_.data(), wc_factors_[r].data()};
    }
    profiled(profile_, kernel_class::fake_quant, stream_,
             [&] { calib_.weight_codes(m, r, call, dst.codes, dst.factors, stream_); });
    return dst;
  }

  device_calibration& calib_;
  cublaslt_gemm& gemm_;
  cudaStream_t stream_;
  score_difference rounding_;
  std::size_t cache_budget_ = 0;
  std::size_t cache_used_ = 0;
  kernel_profile* profile_ = nullptr;
  recipe_gemm gemm_kind_ = recipe_gemm::bf16;
  std::set<std::pair<std::size_t, std::size_t>> code_refused_;  // (module, recipe) kept on bf16
  std::map<std::tuple<std::size_t, std::size_t, std::int64_t>, weight_codes> code_cache_;
  device_buffer<std::uint8_t> wc_codes_;             // weight codes past the cache budget
  std::vector<device_buffer<float>> wc_factors_;     // their factors, per recipe
  std::vector<device_buffer<std::uint8_t>> xc_;     // X codes per recipe, of the last X
  std::vector<float> xc_amax_;                      // the input amax each was made with
  device_buffer<float> xc_factors_;                 // their factors, one per recipe
  std::size_t code_products_ = 0;
  std::map<std::tuple<std::size_t, std::size_t, std::int64_t>, device_buffer<bf16>> cache_;
  device_buffer<double> scores_;
  std::vector<device_buffer<bf16>> xq_;  // Q(X) per recipe, of the last X (xq_source_)
  std::vector<float> xq_amax_;            // the input amax each was made with (NaN: none yet)
  std::vector<float> input_amax_;         // calibrated input amax per module (host copy)
  const bf16* xq_source_ = nullptr;
  device_buffer<bf16> wq_;
  std::vector<device_buffer<float>> yr_;  // Y_r per recipe of the current call (int32 bits for int8 codes)
  std::vector<product_scaling> yr_scaling_;  // how the score pass reads each
  gradient_score_workspace ws_;
  double flops_ = 0.0;
};

}  // namespace aq::cuda
