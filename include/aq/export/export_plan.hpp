// What an export writes for each quantizable module, decided before any file is touched: the
// recipe, the storage scheme, the amax from the quantizer state (fused groups sharing one input
// scale, and for fp8 one weight scale, as ModelOpt's export fuses them), and every refusal: a
// recipe the layout cannot express, a Conv3d given a quantizing recipe, a shape the packing
// cannot hold, an amax the state lacks or holds as NaN/inf/negative.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/export/checkpoint_layout.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/model/qwen3_vl/schema.hpp"
#include "aq/search/search_space.hpp"

namespace aq::hf_export {

inline constexpr std::int64_t int4_group_size = 128;
inline constexpr std::int64_t nvfp4_block_size = 16;

// The weight tensor of a module: "<module>.weight", the schema's suffix.
inline std::string weight_tensor_name(std::string_view module) {
  return std::string(module).append(qwen3_vl::schema::weight_suffix);
}

struct module_export {
  std::string name;    // whole-model module name: the checkpoint's tensor prefix
  std::string recipe;  // aq recipe name
  weight_scheme scheme = weight_scheme::fp8_tensor;
  bool static_input = false;        // a calibrated per-tensor input scale is written
  std::int64_t rows = 0, cols = 0;  // weight [out, in]
  std::vector<float> weight_amax;   // 1 (fp8, nvfp4: the group's max), rows (int8) or rows*cols/128 (int4)
  float input_amax = 0.0f;          // the fused group's max (static_input only)
};

struct export_plan {
  checkpoint_layout layout = checkpoint_layout::modelopt;
  std::vector<module_export> quantized;         // module order
  std::vector<std::string> unquantized;         // quantizable modules left as they are (whole names), module order
  std::vector<std::string> unquantized_linear;  // the same without Conv3d

  const module_export* find(std::string_view module) const {
    for (const module_export& m : quantized) {
      if (m.name == module) return &m;
    }
    return nullptr;
  }
  // The planned module whose weight is `tensor` ("<module>.weight"), or nullptr.
  const module_export* for_weight(std::string_view tensor) const {
    constexpr std::string_view suffix = qwen3_vl::schema::weight_suffix;
    if (!tensor.ends_with(suffix)) return nullptr;
    return find(tensor.substr(0, tensor.size() - suffix.size()));
  }
};

namespace detail {

inline std::string first_modules(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < 3; ++i) {
    if (i > 0) out += ", ";
    out += names[i];
  }
  if (names.size() > 3) out += " and " + std::to_string(names.size() - 3) + " more";
  return out;
}

// Refuses, in one line per recipe (the first in module order), what the layout cannot express.
inline void refuse_unexportable(const autoquant::search_space& space, const std::vector<std::size_t>& chosen,
                                checkpoint_layout layout) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::string>> users;
  for (std::size_t m = 0; m < space.modules.size(); ++m) {
    const quant::recipe_info& recipe = *space.candidates[chosen[space.module_group[m]]].recipe;
    if (!recipe.quantizes || scheme_of(recipe.name)) continue;
    auto [it, inserted] = users.try_emplace(std::string(recipe.name));
    if (inserted) order.push_back(it->first);
    it->second.push_back(space.modules[m].name);
  }
  if (order.empty()) return;
  const std::string& recipe = order.front();
  throw error("--format " + std::string(layout_name(layout)) + ": recipe '" + recipe + "' cannot be exported (" +
              refusal_reason(recipe, layout) + "); used by " + first_modules(users[recipe]));
}

inline void check_shape(const module_export& m, const quantizable_module& module, checkpoint_layout layout) {
  if (module.kind != module_kind::linear) {
    throw error(m.name + ": recipe '" + m.recipe + "' on a " + std::string(module_kind_name(module.kind)) +
                " module; only Linear layers are exported quantized");
  }
  if (layout == checkpoint_layout::compressed_tensors && m.scheme == weight_scheme::int8_channel && !m.static_input &&
      m.cols % 4 != 0) {
    throw error(m.name +
                ": recipe 'w8a16' in the compressed-tensors layout packs 4 codes per int32 word; its input dim " +
                std::to_string(m.cols) + " is not a multiple of 4");
  }
  if (m.scheme == weight_scheme::nvfp4_block16 && m.cols % nvfp4_block_size != 0) {
    throw error(m.name + ": recipe 'nvfp4' needs an input dim that is a multiple of 16, it has " +
                std::to_string(m.cols));
  }
  if (m.scheme != weight_scheme::int4_block128) return;
  if (m.cols % int4_group_size != 0) {
    throw error(m.name + ": recipe 'w4a16' needs an input dim that is a multiple of 128, it has " +
                std::to_string(m.cols));
  }
  if (layout == checkpoint_layout::modelopt && m.rows % 2 != 0) {
    throw error(m.name + ": recipe 'w4a16' in the modelopt layout packs two output rows per byte; it has " +
                std::to_string(m.rows) + " rows");
  }
}

inline std::vector<float> read_amax(const safetensors_file& state, const std::string& source, const std::string& name,
                                    std::size_t expected) {
  const tensor_view* view = state.find(name);
  if (view == nullptr) throw error(source + ": " + name + " is missing (the mix needs it)");
  std::vector<float> amax = to_float_vector(*view);
  if (amax.size() != expected) {
    throw error(source + ": " + name + " holds " + std::to_string(amax.size()) + " values, expected " +
                std::to_string(expected));
  }
  for (const float value : amax) {
    if (!(value >= 0.0f && value <= 0x1.fffffep127f)) {
      throw error(source + ": " + name + " holds " + std::to_string(value) + "; an amax must be finite and >= 0");
    }
  }
  return amax;
}

inline bool per_tensor_weight_amax(weight_scheme scheme) {
  return scheme == weight_scheme::fp8_tensor || scheme == weight_scheme::nvfp4_block16;
}

inline std::size_t weight_amax_count(weight_scheme scheme, std::int64_t rows, std::int64_t cols) {
  if (per_tensor_weight_amax(scheme)) return 1;
  if (scheme == weight_scheme::int8_channel) return static_cast<std::size_t>(rows);
  return static_cast<std::size_t>(rows * (cols / int4_group_size));
}

// ModelOpt's preprocess_linear_fusion: modules fused for serving (one group: q/k/v, gate/up) share
// the max of their input amax, and the max of their weight amax where it is per tensor (nvfp4's
// global amax). ModelOpt 0.39 skips fp8 groups (unified_export_hf.py): each keeps its own scales,
// and serving stacks take the max when they fuse them.
inline void share_fused_amax(std::vector<module_export>& planned, const std::vector<std::size_t>& group_of) {
  std::map<std::size_t, std::pair<float, float>> maxima;  // group -> (input, per-tensor weight)
  for (std::size_t i = 0; i < planned.size(); ++i) {
    if (planned[i].scheme == weight_scheme::fp8_tensor) continue;  // ModelOpt fuses no fp8 group
    auto& [input, weight] = maxima[group_of[i]];
    input = std::max(input, planned[i].input_amax);
    if (per_tensor_weight_amax(planned[i].scheme)) weight = std::max(weight, planned[i].weight_amax.front());
  }
  for (std::size_t i = 0; i < planned.size(); ++i) {
    if (planned[i].scheme == weight_scheme::fp8_tensor) continue;
    const auto& [input, weight] = maxima[group_of[i]];
    planned[i].input_amax = input;
    if (per_tensor_weight_amax(planned[i].scheme)) planned[i].weight_amax.front() = weight;
  }
}

// A module under an exportable recipe, its shape checked for the layout (amax not yet read).
inline module_export planned_module(const quantizable_module& module, const quant::recipe_info& recipe,
                                    checkpoint_layout layout) {
  module_export e;
  e.name = module.name;
  e.recipe = std::string(recipe.name);
  e.scheme = *scheme_of(recipe.name);
  e.static_input = recipe.input.enabled;
  e.rows = module.weight_shape.front();
  e.cols = module.weight_shape.size() == 2 ? module.weight_shape[1] : 0;
  check_shape(e, module, layout);
  return e;
}

}  // namespace detail

// Before a search whose answer will be exported: any candidate may be chosen for any configurable
// group, so each must be exportable in `layout` (recipe and weight shape). One-line aq::error.
inline void check_candidates_exportable(const autoquant::search_space& space, checkpoint_layout layout) {
  for (std::size_t c = 0; c < space.none_index(); ++c) {
    std::vector<std::size_t> uniform(space.groups.size(), space.none_index());
    for (std::size_t g = 0; g < uniform.size(); ++g) {
      if (space.configurable(g)) uniform[g] = c;
    }
    detail::refuse_unexportable(space, uniform, layout);
    for (std::size_t m = 0; m < space.modules.size(); ++m) {
      if (space.configurable(space.module_group[m])) {
        (void)detail::planned_module(space.modules[m], *space.candidates[c].recipe, layout);
      }
    }
  }
}

// The plan for `chosen` (a candidate per group of `space`) with the amax of `state` (the run's
// <scheme>_autoquant_state.safetensors, module names as the space's root names them).
// `model_modules` are all the model's quantizable modules (whole names): those the plan leaves
// unquantized, outside the space's root included, are listed for the layouts' ignore lists.
// Throws a one-line aq::error on the first refusal; nothing is written before a plan exists.
inline export_plan make_export_plan(const autoquant::search_space& space, const std::vector<std::size_t>& chosen,
                                    const safetensors_file& state, const std::string& state_source,
                                    checkpoint_layout layout, std::span<const quantizable_module> model_modules) {
  if (chosen.size() != space.groups.size()) throw error("export plan: a recipe per group expected");
  detail::refuse_unexportable(space, chosen, layout);
  export_plan plan;
  plan.layout = layout;
  std::vector<std::size_t> group_of;
  for (std::size_t m = 0; m < space.modules.size(); ++m) {
    const quantizable_module& module = space.modules[m];
    const quant::recipe_info& recipe = *space.candidates[chosen[space.module_group[m]]].recipe;
    if (!recipe.quantizes) continue;
    module_export e = detail::planned_module(module, recipe, layout);
    const std::string& root_name = space.module_names[m];
    e.weight_amax = detail::read_amax(state, state_source, root_name + ".weight_quantizer._amax",
                                      detail::weight_amax_count(e.scheme, e.rows, e.cols));
    if (e.static_input) {
      e.input_amax = detail::read_amax(state, state_source, root_name + ".input_quantizer._amax", 1).front();
    }
    plan.quantized.push_back(std::move(e));
    group_of.push_back(space.module_group[m]);
  }
  detail::share_fused_amax(plan.quantized, group_of);
  for (const quantizable_module& module : model_modules) {
    if (plan.find(module.name) != nullptr) continue;
    plan.unquantized.push_back(module.name);
    if (module.kind == module_kind::linear) plan.unquantized_linear.push_back(module.name);
  }
  return plan;
}

}  // namespace aq::hf_export
