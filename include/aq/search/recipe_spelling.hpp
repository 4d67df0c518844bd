// How a recipe is written in files that name recipes for groups or modules (quant manifests,
// recipe maps): an aq name or alias ("fp8_e4m3", "wfp8_afp8"), a ModelOpt config name
// ("FP8_DEFAULT_CFG", "NONE"), either one followed by ModelOpt's "(effective-bits: N)" suffix, or a
// manifest's "CUSTOM_<i>(effective-bits: N)" whose meaning is entry i of its scheme.quant_formats.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "aq/core/error.hpp"
#include "aq/quant/recipe.hpp"
#include "aq/quant/recipe_registry.hpp"
#include "aq/quant/recipes.hpp"

namespace aq::autoquant {

// A spelling resolved to a recipe. `recipe` is null only for a CUSTOM_<i> whose quant_formats entry
// names no aq recipe (a reference preset's config, such as "FP8_ALL_LAYERS_CFG"): such a spelling
// can still be matched against a search space's own display strings.
struct recipe_spelling {
  std::string text;                              // as written
  const quant::recipe_info* recipe = nullptr;
  std::optional<std::size_t> custom_position;    // i of CUSTOM_<i>
};

namespace detail {

// The recipe an aq name, an alias or a ModelOpt config name names; null when none does.
template <class List = recipes::all_recipes>
const quant::recipe_info* recipe_named(std::string_view name) {
  const std::string_view resolved = quant::resolve_recipe_alias(name);
  for (const quant::recipe_info& info : quant::recipe_registry<List>()) {
    if (info.name == resolved || (!info.modelopt_config.empty() && info.modelopt_config == name)) return &info;
  }
  return nullptr;
}

// i of "CUSTOM_<i>" (decimal digits, no sign or leading zero but "0"); nullopt for anything else.
inline std::optional<std::size_t> custom_position_of(std::string_view name) {
  static constexpr std::string_view prefix = "CUSTOM_";
  if (!name.starts_with(prefix)) return std::nullopt;
  const std::string_view digits = name.substr(prefix.size());
  if (digits.empty() || digits.size() > 9 || (digits.size() > 1 && digits.front() == '0')) return std::nullopt;
  std::size_t value = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<std::size_t>(c - '0');
  }
  return value;
}

// The name before ModelOpt's suffix: "FP8_DEFAULT_CFG(effective-bits: 8.0)" -> "FP8_DEFAULT_CFG".
inline std::string_view name_part(std::string_view text) {
  const std::size_t open = text.find('(');
  return open == std::string_view::npos ? text : text.substr(0, open);
}

}  // namespace detail

// Resolves `text`; `quant_formats` (a manifest's scheme.quant_formats, when given) gives CUSTOM_<i>
// its meaning. A suffix must be exactly the one ModelOpt writes for the recipe: a different number
// is a different recipe than the name says, and is refused rather than guessed. Errors start with
// `where` (the file and key) and name the text.
template <class List = recipes::all_recipes>
recipe_spelling resolve_recipe_spelling(std::string_view text, const std::string& where,
                                        std::optional<std::span<const std::string>> quant_formats = std::nullopt) {
  const std::string quoted = "'" + std::string(text) + "'";
  const std::string_view name = detail::name_part(text);
  recipe_spelling out{std::string(text), detail::recipe_named<List>(name), std::nullopt};
  if (out.recipe == nullptr && quant_formats) {
    out.custom_position = detail::custom_position_of(name);
    if (out.custom_position) {
      if (*out.custom_position >= quant_formats->size()) {
        throw error(where + ": " + quoted + " names quant_formats entry " + std::to_string(*out.custom_position) +
                    " but scheme.quant_formats has " + std::to_string(quant_formats->size()));
      }
      out.recipe = detail::recipe_named<List>(detail::name_part((*quant_formats)[*out.custom_position]));
      if (name == text) throw error(where + ": " + quoted + " lacks its '(effective-bits: N)' suffix");
    }
  }
  if (out.recipe == nullptr && !out.custom_position) {
    throw error(where + ": recipe " + quoted + " is unknown; valid recipes: " + quant::valid_recipe_names<List>() +
                ", their ModelOpt config names, and 'NONE'");
  }
  if (name != text) {
    const std::string expected = out.recipe != nullptr
                                     ? quant::modelopt_recipe_string(name, out.recipe->effective_bits)
                                     : std::string(text);  // an unknown CUSTOM recipe: its bits are what the space says
    if (text != expected) {
      throw error(where + ": " + quoted + " does not match recipe '" + std::string(out.recipe->name) + "' (expected " +
                  "'" + expected + "': the suffix must read as ModelOpt writes it)");
    }
  }
  return out;
}

}  // namespace aq::autoquant
