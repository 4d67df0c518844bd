// What "CUSTOM_<i>(effective-bits: N)" means in a quant manifest. ModelOpt numbers a recipe without
// a built-in config by its position i in the user's format list, and scheme.quant_formats lists
// formats in one of two orders: the user's (ModelOpt's drivers: entry i is CUSTOM_<i>) or the
// candidates' (aq's runs: ascending bits, entry k is the k-th quantizing format of every
// layer_sensitivity row). A reading is taken only when it explains every CUSTOM name of the file
// with the bits each one states; where both readings do and disagree, the name stays unresolved
// (matched later against a search space's own display strings) rather than guessed.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "aq/quant/recipe_registry.hpp"
#include "aq/search/recipe_spelling.hpp"

namespace aq::autoquant {

namespace detail {

// The recipe quant_formats[k] names, when it quantizes and its bits fit `text`'s suffix.
inline const quant::recipe_info* custom_reading(const std::string& text, std::optional<std::size_t> k,
                                                std::span<const std::string> quant_formats) {
  if (!k || *k >= quant_formats.size()) return nullptr;
  const quant::recipe_info* recipe = recipe_named(recipe_name_part(quant_formats[*k]));
  return recipe != nullptr && recipe->quantizes && spelling_fits(text, *recipe) ? recipe : nullptr;
}

}  // namespace detail

// Sets `recipe` of every CUSTOM spelling where the file pins it. `candidate_order`: the quantizing
// display strings of a layer_sensitivity row, in candidate order (empty when the file has none).
inline void resolve_custom_names(std::span<recipe_spelling> spellings, std::span<const std::string> quant_formats,
                                 std::span<const std::string> candidate_order) {
  const auto by_position = [&](const std::string& text) {
    return detail::custom_reading(text, custom_position_of(recipe_name_part(text)), quant_formats);
  };
  const auto by_order = [&](const std::string& text) -> const quant::recipe_info* {
    const auto at = std::find(candidate_order.begin(), candidate_order.end(), text);
    if (candidate_order.size() != quant_formats.size() || at == candidate_order.end()) return nullptr;
    return detail::custom_reading(text, static_cast<std::size_t>(at - candidate_order.begin()), quant_formats);
  };
  std::vector<std::string> customs;
  for (const recipe_spelling& s : spellings) {
    if (s.custom_position) customs.push_back(s.text);
  }
  for (const std::string& text : candidate_order) {
    if (custom_position_of(recipe_name_part(text))) customs.push_back(text);
  }
  const auto explains_all = [&](const auto& reading) {
    return std::all_of(customs.begin(), customs.end(),
                       [&](const std::string& text) { return reading(text) != nullptr; });
  };
  const bool position_fits = explains_all(by_position);
  const bool order_fits = explains_all(by_order);
  for (recipe_spelling& s : spellings) {
    if (!s.custom_position) continue;
    const quant::recipe_info* p = position_fits ? by_position(s.text) : nullptr;
    const quant::recipe_info* o = order_fits ? by_order(s.text) : nullptr;
    s.recipe = p != nullptr && o != nullptr && p != o ? nullptr : (p != nullptr ? p : o);
  }
}

}  // namespace aq::autoquant
