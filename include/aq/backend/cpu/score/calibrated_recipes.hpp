// What the scorers need from calibration: for every scored module the per-tensor amax of its
// input over the calibration batches, and for every (module, recipe) the fake-quantized weight
// with its amax, built once on first use and reused for every score batch.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/backend/cpu/score/quantized_linear.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/quantizable_modules.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/granularity.hpp"

namespace aq::score {

class calibrated_recipes {
 public:
  // recipes: the quantizing candidates (NONE excluded), in candidate order. active[m]: whether
  // module m is scored (members of disabled groups are not).
  calibrated_recipes(std::vector<recipe_kernels> recipes, std::span<const quantizable_module> modules,
                     std::vector<bool> active)
      : recipes_(std::move(recipes)), active_(std::move(active)) {
    if (active_.size() != modules.size()) throw error("calibrated_recipes: active flags do not match the modules");
    for (std::size_t m = 0; m < modules.size(); ++m) {
      index_.emplace(modules[m].name, m);
      shapes_.push_back(modules[m].weight_shape);
    }
    input_amax_.assign(modules.size(), 0.0f);
    input_seen_.assign(modules.size(), false);
    weights_.resize(modules.size() * recipes_.size());
  }

  std::size_t num_modules() const { return shapes_.size(); }
  std::size_t num_recipes() const { return recipes_.size(); }
  const recipe_kernels& recipe(std::size_t r) const { return recipes_.at(r); }

  std::optional<std::size_t> module_index(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }
  bool active(std::size_t m) const { return active_.at(m); }

  // Calibration: running max |x| of the module's input (ModelOpt's MaxCalibrator, per tensor).
  void observe_input(std::size_t m, const const_matrix_view& x) {
    input_amax_.at(m) = std::max(input_amax_[m], max_abs(x, m));
    input_seen_[m] = true;
  }
  // A calibrated amax from elsewhere (a saved quantizer state) in place of observing inputs.
  void set_input_amax(std::size_t m, float amax) {
    input_amax_.at(m) = amax;
    input_seen_[m] = true;
  }
  bool has_input_amax(std::size_t m) const { return input_seen_.at(m); }
  float input_amax(std::size_t m) const { return input_amax_.at(m); }

  // The amax used to quantize this call's input: the calibrated one, or, for a module that never
  // ran during calibration, the call's own max |x| (ModelOpt's uncalibrated quantizer is dynamic).
  float input_amax_for(std::size_t m, const const_matrix_view& x) const {
    return input_seen_.at(m) ? input_amax_[m] : max_abs(x, m);
  }

  // The fake-quantized weight of module m under recipe r, built from `weight` on first use.
  const quantized_weight& weight(std::size_t m, std::size_t r, const const_matrix_view& weight) {
    std::unique_ptr<quantized_weight>& slot = weights_.at(m * recipes_.size() + r);
    if (!slot) {
      std::vector<float> values;
      values.reserve(static_cast<std::size_t>(weight.rows * weight.cols));
      for (std::int64_t i = 0; i < weight.rows; ++i) values.insert(values.end(), weight.row(i), weight.row(i) + weight.cols);
      slot = std::make_unique<quantized_weight>(recipes_[r].quantize_weight(values, shapes_[m]));
    }
    return *slot;
  }
  const quantized_weight* cached_weight(std::size_t m, std::size_t r) const {
    return weights_.at(m * recipes_.size() + r).get();
  }

 private:
  // max |x| over a matrix view; non-finite values are an error (they would poison every scale).
  static float max_abs(const const_matrix_view& x, std::size_t m) {
    float amax = 0.0f;
    const std::string what = "input of module " + std::to_string(m);
    if (x.ld == x.cols) {
      return quant::compute_amax<quant::per_tensor>(
          std::span<const float>(x.data, static_cast<std::size_t>(x.rows * x.cols)), x.rows, x.cols, what)[0];
    }
    for (std::int64_t r = 0; r < x.rows; ++r) {
      amax = std::max(amax, quant::compute_amax<quant::per_tensor>(
                                std::span<const float>(x.row(r), static_cast<std::size_t>(x.cols)), 1, x.cols, what)[0]);
    }
    return amax;
  }

  std::vector<recipe_kernels> recipes_;
  std::vector<bool> active_;
  std::map<std::string, std::size_t> index_;
  std::vector<std::vector<std::int64_t>> shapes_;
  std::vector<float> input_amax_;
  std::vector<bool> input_seen_;
  std::vector<std::unique_ptr<quantized_weight>> weights_;
};

}  // namespace aq::score
