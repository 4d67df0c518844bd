// Run-time view of the compile-time recipe list: lookup by name (or alias) for the CLI,
// candidate ordering as ModelOpt sorts its QuantRecipes, and the table printed by --help and docs.
// Everything here is generated from `recipes::all_recipes`; nothing names a recipe by hand.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/quant/recipe.hpp"
#include "aq/quant/recipes.hpp"

namespace aq::quant {

struct quantizer_info {
  bool enabled = false;
  std::string_view format;  // format name ("none" when disabled)
  std::string granularity;  // "per-tensor", "per-channel", "per-block(128)"
  std::string_view scaling;  // "static", "dynamic", "e8m0 block scales", "e4m3 block scales"
  bool calibrated = false;   // takes a calibrated amax (ModelOpt's `_amax` exists after calibration)
  int bits = 16;
  bool narrow_range = false;
  std::string label;        // "int8 per-channel", "disabled"
};

struct recipe_info {
  std::string_view name;
  std::string_view modelopt_config;  // "" when ModelOpt shows CUSTOM_<i>
  double effective_bits = 16.0;
  double compression = 1.0;
  bool quantizes = false;
  quantizer_info weight;
  quantizer_info input;
  std::size_t index = 0;  // position in the compile-time list

  std::string modelopt_name(std::size_t position) const {
    return modelopt_config.empty() ? "CUSTOM_" + std::to_string(position) : std::string(modelopt_config);
  }
  std::string modelopt_string(std::size_t position) const {
    return modelopt_recipe_string(modelopt_name(position), effective_bits);
  }
};

namespace detail {

template <quantizer_spec Q>
quantizer_info make_quantizer_info() {
  using S = typename Q::scaling_type;
  return quantizer_info{Q::enabled, Q::format_type::name, granularity_label<typename Q::granularity_type>(),
                        S::name,    Q::enabled && S::calibrated, Q::bits, Q::narrow_range, Q::label()};
}

}  // namespace detail

// All recipes of List, in list order (generated once).
template <class List = recipes::all_recipes>
const std::vector<recipe_info>& recipe_registry() {
  static const std::vector<recipe_info> registry = [] {
    std::vector<recipe_info> infos;
    List::for_each([&]<class R>() {
      infos.push_back(recipe_info{R::name, R::modelopt_config, R::effective_bits, R::compression, R::quantizes,
                                  detail::make_quantizer_info<typename R::weight>(),
                                  detail::make_quantizer_info<typename R::input>(), infos.size()});
    });
    return infos;
  }();
  return registry;
}

// Resolves an alias to its recipe name; other names are returned unchanged.
inline std::string_view resolve_recipe_alias(std::string_view name) {
  for (const auto& [alias, target] : recipes::recipe_aliases) {
    if (alias == name) return target;
  }
  return name;
}

template <class List = recipes::all_recipes>
std::string valid_recipe_names() {
  std::string names;
  for (const recipe_info& info : recipe_registry<List>()) names += (names.empty() ? "" : ", ") + std::string(info.name);
  std::string aliases;
  for (const auto& [alias, target] : recipes::recipe_aliases) {
    aliases += (aliases.empty() ? "" : ", ") + std::string(alias) + " -> " + std::string(target);
  }
  return names + " (aliases: " + aliases + ")";
}

// Finds a recipe by name or alias; throws aq::error naming the valid choices.
template <class List = recipes::all_recipes>
const recipe_info& find_recipe(std::string_view name) {
  const std::string_view resolved = resolve_recipe_alias(name);
  for (const recipe_info& info : recipe_registry<List>()) {
    if (info.name == resolved) return info;
  }
  throw error("recipe '" + std::string(name) + "' is unknown; valid recipes: " + valid_recipe_names<List>());
}

// Calls visitor(std::type_identity<R>{}) with the recipe type named `name` (or alias): the bridge
// from a CLI string to the templates. Throws aq::error for an unknown name.
template <class List = recipes::all_recipes, class Visitor>
void visit_recipe(std::string_view name, Visitor&& visitor) {
  const std::size_t index = find_recipe<List>(name).index;
  std::size_t position = 0;
  List::for_each([&]<class R>() {
    if (position++ == index) visitor(std::type_identity<R>{});
  });
}

// One search candidate: a recipe, its position in the user's list (for CUSTOM_<i>) and the
// string ModelOpt writes for it in manifests.
struct candidate {
  const recipe_info* recipe = nullptr;
  std::size_t position = 0;
  std::string modelopt_string;
};

// Orders the user's recipes as ModelOpt's AutoQuantize does: ascending compression (most
// aggressive first), NONE always appended last. ModelOpt breaks ties between equal compressions
// by Python set order (hash dependent); aq keeps the user's order instead (a stable sort), so
// runs are reproducible. `none` in the user's list is accepted and folded into the implicit one;
// a recipe listed twice (also through an alias) is an error.
template <class List = recipes::all_recipes>
std::vector<candidate> order_candidates(std::span<const std::string> names) {
  std::vector<candidate> candidates;
  const recipe_info* none_info = nullptr;
  for (std::size_t position = 0; position < names.size(); ++position) {
    const recipe_info& info = find_recipe<List>(names[position]);
    if (!info.quantizes) {
      none_info = &info;
      continue;
    }
    for (const candidate& earlier : candidates) {
      if (earlier.recipe == &info) {
        throw error("recipe list: '" + std::string(names[position]) + "' (position " + std::to_string(position) +
                    ") repeats recipe '" + std::string(info.name) + "' from position " +
                    std::to_string(earlier.position));
      }
    }
    candidates.push_back(candidate{&info, position, info.modelopt_string(position)});
  }
  std::stable_sort(candidates.begin(), candidates.end(), [](const candidate& a, const candidate& b) {
    return a.recipe->compression < b.recipe->compression;
  });
  if (none_info == nullptr) none_info = &find_recipe<List>("none");
  candidates.push_back(candidate{none_info, names.size(), none_info->modelopt_string(names.size())});
  return candidates;
}

// Markdown table of the registry (for --help and docs), generated from the same list.
template <class List = recipes::all_recipes>
std::string recipe_table() {
  std::string table =
      "| recipe | weight quantizer | input quantizer | effective bits | ModelOpt name | aliases |\n"
      "| :--- | :--- | :--- | ---: | :--- | :--- |\n";
  for (const recipe_info& info : recipe_registry<List>()) {
    std::string aliases;
    for (const auto& [alias, target] : recipes::recipe_aliases) {
      if (target == info.name) aliases += (aliases.empty() ? "" : ", ") + std::string(alias);
    }
    table += "| " + std::string(info.name) + " | " + info.weight.label + " | " + info.input.label + " | " +
             python_float_repr(info.effective_bits) + " | " +
             (info.modelopt_config.empty() ? std::string("CUSTOM_<i>") : std::string(info.modelopt_config)) + " | " +
             aliases + " |\n";
  }
  return table;
}

}  // namespace aq::quant
