// A recipe for every layer group, read from a file rather than searched: the mix a run chose (the
// `chosen_recipes` of its quant manifest) or one written by hand (a recipe map: module-name
// patterns -> recipes). What tools that apply a mix take; docs/recipe-maps.md describes both forms.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <unistd.h>

#include "aq/core/error.hpp"
#include "aq/io/json_field.hpp"
#include "aq/io/json_parser.hpp"
#include "aq/io/regular_file.hpp"
#include "aq/io/tokenizer/utf8.hpp"
#include "aq/search/custom_recipe_names.hpp"
#include "aq/search/recipe_spelling.hpp"
#include "aq/search/scope.hpp"
#include "aq/search/search_space.hpp"

namespace aq::autoquant {

enum class assignment_form {
  manifest,    // keys are group hparam names; every configurable group must be listed
  recipe_map,  // keys are fnmatch patterns on module names; the last matching key wins
};

struct assignment_entry {
  std::string key;    // a group's hparam name (manifest) or a module-name pattern (map)
  std::string where;  // "<file>: <key path>", the start of every error about this entry
  recipe_spelling recipe;
};

struct recipe_assignment {
  std::string source;  // the file, as errors name it
  assignment_form form = assignment_form::recipe_map;
  std::vector<assignment_entry> entries;  // file order
};

// A recipe file is a few hundred keys; anything this large is a wrong path, refused before it is
// read (a manifest of a 235B MoE model is well under a megabyte).
inline constexpr std::size_t recipe_file_max_bytes = std::size_t{64} << 20;

namespace detail {

// The file's bytes, at most `limit` of them: the size is checked when opened and again while
// reading, since a file may grow in between.
inline std::string read_bounded(const std::filesystem::path& file, std::size_t limit) {
  const regular_file in(file);  // refuses a FIFO, a directory, a device
  const auto too_large = [&] {
    return error(file.string() + ": more than " + std::to_string(limit) +
                 " bytes; a recipe file (manifest or recipe map) is far smaller");
  };
  if (in.size() > limit) throw too_large();
  std::string out(in.size() + 1, '\0');
  std::size_t filled = 0;
  for (;;) {
    if (filled == out.size()) {
      if (out.size() > limit) throw too_large();
      out.resize(std::min(out.size() * 2, limit + 1));
    }
    const ::ssize_t n = ::pread(in.fd(), out.data() + filled, out.size() - filled, static_cast<off_t>(filled));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw error(file.string() + ": cannot read: " + std::strerror(errno));
    if (n == 0) break;
    filled += static_cast<std::size_t>(n);
  }
  out.resize(filled);
  return out;
}

// Keys of one JSON object, refused when one repeats: JSON readers keep one of them silently.
class key_set {
 public:
  void insert(std::string_view key, const io::json_field& value) {
    if (!keys_.insert(key).second) value.fail("listed twice (a JSON object keeps only one of them)");
  }

 private:
  std::set<std::string_view> keys_;
};

// A report of aq or ModelOpt rather than a recipe map: its top-level objects are not strings.
inline bool is_report(const io::json_field& root) {
  for (const std::string_view key : {"scheme", "autoquant_state", "layer_sensitivity"}) {
    if (const auto field = root.find(key); field && !field->element().is_string()) return true;
  }
  return false;
}

// The quantizing display strings of the layer_sensitivity row with the most candidates: the
// candidate order CUSTOM names are read against (custom_recipe_names.hpp).
inline std::vector<std::string> candidate_order(const io::json_field& root) {
  std::vector<std::string> order;
  const auto rows = root.find("layer_sensitivity");
  if (!rows) return order;
  for (const auto& [group, row] : rows->members()) {
    std::vector<std::string> quantizing = row["formats"].strings();
    std::erase_if(quantizing, [](const std::string& f) { return recipe_name_part(f) == "NONE"; });
    if (quantizing.size() > order.size()) order = std::move(quantizing);
  }
  return order;
}

inline recipe_assignment parse_manifest(const io::json_field& root, const io::json_field& chosen) {
  recipe_assignment out{root.source(), assignment_form::manifest, {}};
  key_set keys;
  std::vector<recipe_spelling> spellings;
  for (const auto& [group, value] : chosen.members()) {
    keys.insert(group, value);
    const bool allow_custom = true;  // a manifest's CUSTOM_<i>, read below
    out.entries.push_back(
        {std::string(group), value.where(), resolve_recipe_spelling(value.string(), value.where(), allow_custom)});
    spellings.push_back(out.entries.back().recipe);
  }
  if (std::none_of(spellings.begin(), spellings.end(), [](const recipe_spelling& s) { return s.custom_position; })) {
    return out;
  }
  std::vector<std::string> quant_formats;
  if (const auto scheme = root.find("scheme")) {
    if (const auto list = scheme->find("quant_formats")) quant_formats = list->strings();
  }
  resolve_custom_names(spellings, quant_formats, candidate_order(root));
  for (std::size_t e = 0; e < spellings.size(); ++e) out.entries[e].recipe = spellings[e];
  return out;
}

inline recipe_assignment parse_map(const io::json_field& root) {
  recipe_assignment out{root.source(), assignment_form::recipe_map, {}};
  key_set keys;
  for (const auto& [pattern, value] : root.members()) {
    keys.insert(pattern, value);
    out.entries.push_back(
        {std::string(pattern), value.where(), resolve_recipe_spelling(value.string(), value.where())});
  }
  return out;
}

}  // namespace detail

// Reads either form from `text` (named `source` in errors): an object with `chosen_recipes` is a
// quant manifest, any other object a recipe map.
inline recipe_assignment parse_recipe_assignment(std::string_view text, const std::string& source) {
  if (const auto at = io::utf8::first_invalid_byte(text)) {
    throw error(source + ": invalid UTF-8 at byte " + std::to_string(*at));
  }
  simdjson::dom::parser parser;
  const io::json_field root = io::parse_json_object(parser, text, source);
  if (const auto rows = root.find("layer_sensitivity"); rows && rows->element().is_array()) {
    throw error(source + ": is a per-layer sensitivity report; give the run's <scheme>_quant_manifest.json");
  }
  if (const auto chosen = root.find("chosen_recipes")) return detail::parse_manifest(root, *chosen);
  if (detail::is_report(root)) {
    throw error(source + ": is a quant manifest without chosen_recipes (written by ModelOpt, or by a run that "
                         "chose nothing); give a manifest of an aq run or a recipe map");
  }
  return detail::parse_map(root);
}

inline recipe_assignment read_recipe_assignment(const std::filesystem::path& file) {
  return parse_recipe_assignment(detail::read_bounded(file, recipe_file_max_bytes), file.string());
}

// The distinct quantizing recipes the file names, as aq names in first-seen order: the `formats`
// of make_search_space for a run that applies the file.
inline std::vector<std::string> recipe_names(const recipe_assignment& assignment) {
  std::vector<std::string> names;
  for (const assignment_entry& entry : assignment.entries) {
    const quant::recipe_info* recipe = entry.recipe.recipe;
    if (recipe == nullptr) {
      throw error(entry.where + ": '" + entry.recipe.text +
                  "': the manifest's scheme.quant_formats does not say which aq recipe this is; give the formats "
                  "explicitly");
    }
    if (!recipe->quantizes) continue;
    if (std::find(names.begin(), names.end(), recipe->name) == names.end()) names.emplace_back(recipe->name);
  }
  return names;
}

namespace detail {

inline std::string candidate_list(const search_space& space) {
  std::string list;
  for (const quant::candidate& c : space.candidates) list += (list.empty() ? "" : ", ") + std::string(c.recipe->name);
  return list;
}

// The candidate a spelling names: the same recipe, or for a CUSTOM_<i> of unknown meaning, the
// candidate the space displays with exactly that string.
inline std::size_t candidate_of(const search_space& space, const assignment_entry& entry) {
  for (std::size_t c = 0; c < space.candidates.size(); ++c) {
    const quant::recipe_info& recipe = *space.candidates[c].recipe;
    if (entry.recipe.recipe != nullptr ? recipe.name == entry.recipe.recipe->name
                                       : space.display(c, true) == entry.recipe.text) {
      return c;
    }
  }
  throw error(entry.where + ": recipe '" + entry.recipe.text + "' is not among the search space's candidates (" +
              candidate_list(space) + ")");
}

inline std::string disabled_note(const search_space& space) {
  std::string patterns;
  for (const std::string& p : space.disabled_patterns) patterns += (patterns.empty() ? "'" : ", '") + p + "'";
  return "disabled (out of scope: " + (patterns.empty() ? std::string("no patterns") : patterns) + ")";
}

inline std::vector<std::size_t> assign_from_manifest(const search_space& space, const recipe_assignment& assignment) {
  std::unordered_map<std::string_view, std::size_t> group_of;
  for (std::size_t g = 0; g < space.groups.size(); ++g) group_of.emplace(space.groups[g].name, g);
  std::vector<std::size_t> chosen(space.groups.size(), space.none_index());
  std::vector<bool> listed(space.groups.size(), false);
  for (const assignment_entry& entry : assignment.entries) {
    const auto found = group_of.find(entry.key);
    if (found == group_of.end()) {
      throw error(entry.where + ": the search space has no such group (its " + std::to_string(space.groups.size()) +
                  " groups are named like '" + space.groups.front().name + "')");
    }
    const std::size_t g = found->second;
    const std::size_t c = candidate_of(space, entry);
    if (!space.configurable(g) && space.candidates[c].recipe->quantizes) {
      throw error(entry.where + ": '" + entry.recipe.text + "' for a group the search space has " +
                  disabled_note(space));
    }
    chosen[g] = c;
    listed[g] = true;
  }
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    if (space.configurable(g) && !listed[g]) {
      throw error(assignment.source + ": chosen_recipes: configurable group '" + space.groups[g].name + "' is missing");
    }
  }
  return chosen;
}

// The entry deciding each module (the last matching pattern), or nullopt: unquantized.
inline std::vector<std::optional<std::size_t>> deciding_entries(const search_space& space,
                                                                const recipe_assignment& assignment) {
  std::vector<std::optional<std::size_t>> decided(space.module_names.size());
  std::vector<bool> matched(assignment.entries.size(), false);
  for (std::size_t m = 0; m < space.module_names.size(); ++m) {
    for (std::size_t e = 0; e < assignment.entries.size(); ++e) {
      if (!fnmatch(assignment.entries[e].key, space.module_names[m])) continue;
      matched[e] = true;
      decided[m] = e;
    }
  }
  for (std::size_t e = 0; e < assignment.entries.size(); ++e) {
    if (matched[e]) continue;
    throw error(assignment.entries[e].where + ": the pattern matches no module (a typo? module names look like '" +
                space.module_names.front() + "')");
  }
  return decided;
}

inline std::vector<std::size_t> assign_from_map(const search_space& space, const recipe_assignment& assignment) {
  const std::vector<std::optional<std::size_t>> decided = deciding_entries(space, assignment);
  std::vector<std::size_t> entry_candidate;
  for (const assignment_entry& entry : assignment.entries) entry_candidate.push_back(candidate_of(space, entry));
  const auto candidate_of_module = [&](std::size_t m) {
    return decided[m] ? entry_candidate[*decided[m]] : space.none_index();
  };
  const auto origin = [&](std::size_t m) {
    if (!decided[m]) return std::string("'none' (no pattern matches it)");
    const assignment_entry& entry = assignment.entries[*decided[m]];
    return "'" + entry.recipe.text + "' (pattern '" + entry.key + "')";
  };
  std::vector<std::size_t> chosen;
  for (const search_group& group : space.groups) {
    const std::size_t first = group.members.front();
    for (const std::size_t m : group.members) {
      if (candidate_of_module(m) == candidate_of_module(first)) continue;
      throw error(assignment.source + ": group '" + group.name + "' takes one recipe for all its modules, but '" +
                  space.module_names[first] + "' gets " + origin(first) + " and '" + space.module_names[m] +
                  "' gets " + origin(m));
    }
    const std::size_t c = candidate_of_module(first);
    if (group.disabled && space.candidates[c].recipe->quantizes) {
      throw error(assignment.entries[*decided[first]].where + ": '" + assignment.entries[*decided[first]].recipe.text +
                  "' for module '" + space.module_names[first] + "' of group '" + group.name + "', which is " +
                  disabled_note(space) + "; narrow the pattern");
    }
    chosen.push_back(c);
  }
  return chosen;
}

}  // namespace detail

// The candidate index of every group of `space` (groups order). A manifest must name every
// configurable group and only groups of the space; a recipe map decides each module by the last
// pattern that matches its name (ModelOpt's quant_cfg rule), leaves unmatched modules unquantized,
// and must give the modules of one group one recipe. Every error is one line naming the file.
inline std::vector<std::size_t> assign_groups(const search_space& space, const recipe_assignment& assignment) {
  if (space.groups.empty()) throw error(assignment.source + ": the search space has no groups");
  return assignment.form == assignment_form::manifest ? detail::assign_from_manifest(space, assignment)
                                                      : detail::assign_from_map(space, assignment);
}

}  // namespace aq::autoquant
