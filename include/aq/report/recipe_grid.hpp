// The per-layer view shared by the heatmap, the bits plot and report.html: every recipe any group
// offers (the grid's columns, in first-seen candidate order), each group's chosen recipe, and the
// short names the plots print where a full display string would not fit.
#pragma once

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aq/report/evaluation_model.hpp"
#include "aq/report/report_model.hpp"
#include "aq/report/sensitivity_report.hpp"

namespace aq::io {

// Every distinct candidate display string over all groups, in the order first met.
inline std::vector<std::string> recipe_columns(const report_model& model) {
  std::vector<std::string> columns;
  for (const group_sensitivity& group : model.groups) {
    for (const candidate_stat& c : group.candidates) {
      if (std::find(columns.begin(), columns.end(), c.format) == columns.end()) columns.push_back(c.format);
    }
  }
  return columns;
}

// The candidate of `group` with display string `format`, or null.
inline const candidate_stat* find_candidate(const group_sensitivity& group, std::string_view format) {
  for (const candidate_stat& c : group.candidates) {
    if (c.format == format) return &c;
  }
  return nullptr;
}

// Each group's chosen recipe (display string), in group order: the search's chosen_recipes when
// the report has them, else the evaluated mix of kind `chosen`; nullopt for a group with neither.
inline std::vector<std::optional<std::string>> chosen_formats(const report_model& model,
                                                              const evaluation_report& evaluation) {
  std::vector<std::optional<std::string>> out(model.groups.size());
  if (model.chosen_recipes) {
    std::map<std::string, std::string> by_group;
    for (const chosen_recipe& pick : *model.chosen_recipes) by_group[pick.group] = pick.format;
    for (std::size_t g = 0; g < model.groups.size(); ++g) {
      if (const auto found = by_group.find(model.groups[g].name); found != by_group.end()) out[g] = found->second;
    }
    return out;
  }
  for (const mix_evaluation& mix : evaluation.mixes) {
    if (mix.kind != mix_kind::chosen || mix.recipes.size() != out.size()) continue;
    for (std::size_t g = 0; g < out.size(); ++g) out[g] = mix.recipes[g];
    break;
  }
  return out;
}

// "INT8_DEFAULT_CFG(effective-bits: 8.0)" -> "INT8_DEFAULT_CFG": the recipe's name alone.
inline std::string recipe_short_name(std::string_view format) {
  const std::size_t paren = format.find('(');
  return std::string(paren == std::string_view::npos ? format : format.substr(0, paren));
}

// A group's label where space is short: the last three dotted parts of its display name
// ("model.language_model.layers.3.mlp.down_proj.quant_recipe" -> "3.mlp.down_proj").
inline std::string short_group_label(std::string_view group_name) {
  const std::string name = layer_display_name(group_name);
  std::size_t start = name.size();
  for (int parts = 0; parts < 3 && start != std::string::npos && start > 0; ++parts) {
    start = name.rfind('.', start - 1);
  }
  return start == std::string::npos ? name : name.substr(start + 1);
}

}  // namespace aq::io
