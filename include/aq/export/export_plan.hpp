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
#include "aq/export/module_export.hpp"
#include "aq/export/weight_schemes.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/model/qwen3_vl/schema.hpp"
#include "aq/search/search_space.hpp"

namespace aq::hf_export {

// The weight tensor of a module: "<module>.weight", the schema's suffix.
inline std::string weight_tensor_name(std::string_view module) {
  return std::string(module).append(qwen3_vl::schema::weight_suffix);
}

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
  visit_scheme(m.scheme, [&]<class S>(S) { S::check_shape(m, layout); });
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

// ModelOpt's preprocess_linear_fusion: modules fused for serving (one group: q/k/v, gate/up)
// share amax as their scheme's `fused` says.
inline void share_fused_amax(std::vector<module_export>& planned, const std::vector<std::size_t>& group_of) {
  const auto fused_of = [](const module_export& m) {
    return visit_scheme(m.scheme, []<class S>(S) { return S::fused; });
  };
  std::map<std::size_t, std::pair<float, float>> maxima;  // group -> (input, per-tensor weight)
  for (std::size_t i = 0; i < planned.size(); ++i) {
    const fused_amax fused = fused_of(planned[i]);
    if (fused == fused_amax::none) continue;
    auto& [input, weight] = maxima[group_of[i]];
    input = std::max(input, planned[i].input_amax);
    if (fused == fused_amax::input_and_weight) weight = std::max(weight, planned[i].weight_amax.front());
  }
  for (std::size_t i = 0; i < planned.size(); ++i) {
    const fused_amax fused = fused_of(planned[i]);
    if (fused == fused_amax::none) continue;
    const auto& [input, weight] = maxima[group_of[i]];
    planned[i].input_amax = input;
    if (fused == fused_amax::input_and_weight) planned[i].weight_amax.front() = weight;
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
    const std::size_t count = visit_scheme(e.scheme, [&]<class S>(S) { return S::amax_count(e.rows, e.cols); });
    e.weight_amax = detail::read_amax(state, state_source, root_name + ".weight_quantizer._amax", count);
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
