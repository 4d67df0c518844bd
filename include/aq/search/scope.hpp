// Which groups the search may quantize: the module ModelOpt is given (the whole model or its inner
// `model`), a scope preset (`lm`: text decoder + lm_head; `all`: everything) plus user fnmatch
// patterns on module names. A group with any member matching a pattern is disabled (NONE only,
// cost 16 bits), exactly as ModelOpt's disabled_layers.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/error.hpp"

namespace aq::autoquant {

enum class scope_preset { lm, all };

inline std::string_view to_string(scope_preset scope) { return scope == scope_preset::lm ? "lm" : "all"; }

inline scope_preset parse_scope(std::string_view text) {
  if (text == "lm") return scope_preset::lm;
  if (text == "all") return scope_preset::all;
  throw error("--scope: '" + std::string(text) + "' is unknown; valid scopes: lm, all");
}

// The reference drivers' coverage_mode names: "lm_only" (vision disabled) and "full".
inline std::string_view coverage_mode(scope_preset scope) { return scope == scope_preset::lm ? "lm_only" : "full"; }

// The module handed to auto_quantize. `whole`: the Hugging Face model (Qwen3VLForConditionalGeneration:
// `model.visual.*`, `model.language_model.*` and `lm_head`). `inner`: its `model` attribute
// (Qwen3VLModel), as the reference int8 lm_default run did: no lm_head, and every name (groups,
// layers, quantizer state, disable patterns) without the `model.` prefix.
enum class module_root { whole, inner };

inline std::string_view to_string(module_root root) { return root == module_root::whole ? "whole" : "inner"; }

inline module_root parse_module_root(std::string_view text) {
  if (text == "whole") return module_root::whole;
  if (text == "inner") return module_root::inner;
  throw error("--module-root: '" + std::string(text) + "' is unknown; valid: whole, inner");
}

// A whole-model module name as the root names it; nullopt for a module outside the root.
inline std::optional<std::string> name_under(module_root root, std::string_view name) {
  if (root == module_root::whole) return std::string(name);
  constexpr std::string_view inner_prefix = "model.";
  if (!name.starts_with(inner_prefix)) return std::nullopt;
  return std::string(name.substr(inner_prefix.size()));
}

// The disabled_layers patterns of a preset (the reference LM-only driver's ["model.visual*"]),
// in the root's names.
inline std::vector<std::string> scope_patterns(scope_preset scope, module_root root = module_root::whole) {
  if (scope == scope_preset::lm) return {*name_under(root, "model.visual") + "*"};
  return {};
}

// Python's fnmatch.fnmatchcase (what fnmatch.fnmatch does on POSIX): '*' any run of characters
// (dots included), '?' one character, '[seq]' / '[!seq]' a set with a-z ranges; a '[' without a
// closing ']' is literal.
inline bool fnmatch(std::string_view pattern, std::string_view name) {
  std::size_t p = 0;
  std::size_t n = 0;
  std::size_t star = std::string_view::npos;
  std::size_t resume = 0;
  // Length of the set starting at pattern[at] == '[' and whether c is in it; 0 when unclosed.
  const auto match_set = [&](std::size_t at, char c, bool& matched) -> std::size_t {
    std::size_t i = at + 1;
    const bool negate = i < pattern.size() && pattern[i] == '!';
    if (negate) ++i;
    const std::size_t first = i;
    if (i < pattern.size() && pattern[i] == ']') ++i;  // ']' first is a member
    while (i < pattern.size() && pattern[i] != ']') ++i;
    if (i >= pattern.size()) return 0;
    bool in = false;
    for (std::size_t k = first; k < i; ++k) {
      if (k + 2 < i && pattern[k + 1] == '-') {
        if (pattern[k] <= c && c <= pattern[k + 2]) in = true;
        k += 2;
      } else if (pattern[k] == c) {
        in = true;
      }
    }
    matched = in != negate;
    return i - at + 1;
  };
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = n;
      continue;
    }
    if (p < pattern.size()) {
      bool ok = pattern[p] == '?' || pattern[p] == name[n];  // a literal, an unclosed '[' included
      std::size_t width = 1;
      bool matched = false;
      if (const std::size_t set = pattern[p] == '[' ? match_set(p, name[n], matched) : 0; set != 0) {
        ok = matched;
        width = set;
      }
      if (ok) {
        p += width;
        ++n;
        continue;
      }
    }
    if (star == std::string_view::npos) return false;
    p = star + 1;
    n = ++resume;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

inline bool matches_any(std::span<const std::string> patterns, std::string_view name) {
  for (const std::string& pattern : patterns) {
    if (fnmatch(pattern, name)) return true;
  }
  return false;
}

}  // namespace aq::autoquant
