// During a forward, replaces the output of every module that a mix quantizes by its output under
// that module's calibrated recipe, through the model's replace_output hook (called before the
// model reads Y), so the rest of the network sees the mix. KL-div scoring runs one group under
// one recipe this way; evaluation runs whole mixes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/linear_observer.hpp"
#include "aq/backend/cpu/score/calibrated_recipes.hpp"
#include "aq/backend/cpu/score/quantized_linear.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"

namespace aq::score {

class quantized_mix_forward : public qwen3_vl::linear_observer {
 public:
  explicit quantized_mix_forward(calibrated_recipes& calibration) : calib_(calibration) {}

  // recipe_of_module[m]: the calibration's recipe index module m runs with; any index at or past
  // num_recipes() (a search space's none_index()) leaves it unquantized.
  void select(std::vector<std::size_t> recipe_of_module) { recipe_of_module_ = std::move(recipe_of_module); }

  // Group g's members under recipe r, every other module unquantized.
  void select_group(const std::vector<std::size_t>& members, std::size_t recipe) {
    recipe_of_module_.assign(calib_.num_modules(), calib_.num_recipes());
    for (const std::size_t m : members) recipe_of_module_.at(m) = recipe;
  }

  void replace_output(const qwen3_vl::linear_call& call, matrix_view output) override {
    const auto m = calib_.module_index(call.name);
    if (!m || *m >= recipe_of_module_.size()) return;
    const std::size_t r = recipe_of_module_[*m];
    if (r >= calib_.num_recipes()) return;
    const quantized_weight& w = calib_.weight(*m, r, call.weight);
    const tensor y_r =
        quantized_linear_forward(calib_.recipe(r), w, call.input, calib_.input_amax_for(*m, call.input), call.bias);
    if (y_r.shape().front() != output.rows || y_r.numel() != output.rows * output.cols) {
      throw error(std::string(call.name) + ": quantized output " + shape_string(y_r.shape()) +
                  " does not match the module output [" + std::to_string(output.rows) + ", " +
                  std::to_string(output.cols) + "]");
    }
    for (std::int64_t row = 0; row < output.rows; ++row) {
      const float* src = y_r.data() + row * output.cols;
      std::copy(src, src + output.cols, output.row(row));
    }
  }

 private:
  calibrated_recipes& calib_;
  std::vector<std::size_t> recipe_of_module_;
};

}  // namespace aq::score
