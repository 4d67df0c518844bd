// How a recipe is written in files that name recipes for groups or modules (quant manifests,
// recipe maps): an aq name or alias ("fp8_e4m3", "wfp8_afp8"), a ModelOpt config name
// ("FP8_DEFAULT_CFG", "NONE"), either one followed by ModelOpt's "(effective-bits: N)" suffix, or,
// in a manifest, "CUSTOM_<i>(effective-bits: N)", whose meaning the manifest's scheme gives.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "aq/core/error.hpp"
#include "aq/quant/recipe.hpp"
#include "aq/quant/recipe_registry.hpp"
#include "aq/quant/recipes.hpp"

namespace aq::autoquant {

// A spelling and the recipe it names. `recipe` is null only for a CUSTOM_<i> the reader could not
// pin to one recipe: such a spelling is matched against a search space's own display strings.
struct recipe_spelling {
  std::string text;  // as written
  const quant::recipe_info* recipe = nullptr;
  std::optional<std::size_t> custom_position;  // i of CUSTOM_<i>
};

// The recipe an aq name, an alias or a ModelOpt config name names; null when none does.
template <class List = recipes::all_recipes>
const quant::recipe_info* recipe_named(std::string_view name) {
  const std::string_view resolved = quant::resolve_recipe_alias(name);
  for (const quant::recipe_info& info : quant::recipe_registry<List>()) {
    if (info.name == resolved || (!info.modelopt_config.empty() && info.modelopt_config == name)) return &info;
  }
  return nullptr;
}

// The name before ModelOpt's suffix: "FP8_DEFAULT_CFG(effective-bits: 8.0)" -> "FP8_DEFAULT_CFG".
inline std::string_view recipe_name_part(std::string_view text) {
  const std::size_t open = text.find('(');
  return open == std::string_view::npos ? text : text.substr(0, open);
}

// Whether `text` is its name alone or its name with the suffix ModelOpt writes for `recipe`.
inline bool spelling_fits(std::string_view text, const quant::recipe_info& recipe) {
  const std::string_view name = recipe_name_part(text);
  return name == text || text == quant::modelopt_recipe_string(name, recipe.effective_bits);
}

// i of "CUSTOM_<i>" (decimal digits, no leading zero but "0"); nullopt for anything else.
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

// Resolves `text`. A suffix must be exactly the one ModelOpt writes for the recipe: another number
// means another recipe than the name says, and is refused rather than guessed. With `allow_custom`
// (a manifest) a CUSTOM_<i> with its suffix is returned unresolved, for the caller to interpret.
// Errors start with `where` (the file and key) and quote the text.
template <class List = recipes::all_recipes>
recipe_spelling resolve_recipe_spelling(std::string_view text, const std::string& where, bool allow_custom = false) {
  const std::string quoted = "'" + std::string(text) + "'";
  const std::string_view name = recipe_name_part(text);
  recipe_spelling out{std::string(text), recipe_named<List>(name), std::nullopt};
  if (out.recipe == nullptr && allow_custom) out.custom_position = custom_position_of(name);
  if (out.custom_position) {
    if (name == text) throw error(where + ": " + quoted + " lacks its '(effective-bits: N)' suffix");
    return out;
  }
  if (out.recipe == nullptr) {
    throw error(where + ": recipe " + quoted + " is unknown; valid recipes: " + quant::valid_recipe_names<List>() +
                ", their ModelOpt config names, and NONE");
  }
  if (!spelling_fits(text, *out.recipe)) {
    throw error(where + ": " + quoted + " does not match recipe '" + std::string(out.recipe->name) + "' (expected '" +
                quant::modelopt_recipe_string(name, out.recipe->effective_bits) +
                "': the suffix must read as ModelOpt writes it)");
  }
  return out;
}

}  // namespace aq::autoquant
