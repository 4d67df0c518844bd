// Look-ups into the generated Unicode tables: regex classes of a code point (for the
// pre-tokenizer and added-token word checks), canonical combining class, canonical
// decomposition and primary composition (for NFC).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <unordered_map>

#include "aq/io/tokenizer/unicode_tables.hpp"

namespace aq::io::unicode {

// Index of the run containing `key` in a sorted table of (start << shift) | value.
template <std::size_t N>
constexpr std::uint32_t run_value(const std::uint32_t (&runs)[N], char32_t cp, unsigned shift) {
  const std::uint32_t key = (static_cast<std::uint32_t>(cp) << shift) | ((1u << shift) - 1);
  const std::uint32_t* it = std::upper_bound(std::begin(runs), std::end(runs), key);
  return *(it - 1) & ((1u << shift) - 1);
}

inline constexpr std::array<std::uint8_t, 128> ascii_classes = [] {
  std::array<std::uint8_t, 128> table{};
  for (char32_t cp = 0; cp < 128; ++cp) {
    table[cp] = static_cast<std::uint8_t>(run_value(unicode_tables::class_runs, cp, 4));
  }
  return table;
}();

// Bit set of unicode_tables::class_letter / class_number / class_space / class_word.
inline std::uint8_t classes(char32_t cp) {
  if (cp < 128) return ascii_classes[cp];
  return static_cast<std::uint8_t>(run_value(unicode_tables::class_runs, cp, 4));
}

inline bool is_space(char32_t cp) { return (classes(cp) & unicode_tables::class_space) != 0; }
inline bool is_word(char32_t cp) { return (classes(cp) & unicode_tables::class_word) != 0; }

inline std::uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  return static_cast<std::uint8_t>(run_value(unicode_tables::ccc_runs, cp, 8));
}

// Hangul syllables compose and decompose arithmetically (Unicode 3.12).
namespace hangul {
inline constexpr char32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161, t_base = 0x11A7;
inline constexpr char32_t l_count = 19, v_count = 21, t_count = 28, n_count = v_count * t_count,
                          s_count = l_count * n_count;
}  // namespace hangul

struct decomposition {
  char32_t first = 0;
  char32_t second = 0;  // 0 for singletons
  bool found = false;
};

// One-level canonical decomposition (Hangul excluded; callers handle it).
inline decomposition canonical_decomposition(char32_t cp) {
  using unicode_tables::decompositions;
  constexpr std::size_t count = std::size(decompositions) / 3;
  std::size_t lo = 0, hi = count;
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    const char32_t key = decompositions[3 * mid] & 0x7FFFFFFFu;
    if (key < cp) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < count && (decompositions[3 * lo] & 0x7FFFFFFFu) == cp) {
    return {decompositions[3 * lo + 1], decompositions[3 * lo + 2], true};
  }
  return {};
}

// The primary composite of (a, b), or 0 when the pair does not compose.
inline char32_t compose(char32_t a, char32_t b) {
  using namespace hangul;
  if (a >= l_base && a < l_base + l_count && b >= v_base && b < v_base + v_count) {
    return s_base + ((a - l_base) * v_count + (b - v_base)) * t_count;
  }
  if (a >= s_base && a < s_base + s_count && (a - s_base) % t_count == 0 && b > t_base &&
      b < t_base + t_count) {
    return a + (b - t_base);
  }
  // Built once from the flagged decompositions; ~1000 pairs.
  static const std::unordered_map<std::uint64_t, char32_t> pairs = [] {
    std::unordered_map<std::uint64_t, char32_t> map;
    using unicode_tables::decompositions;
    for (std::size_t i = 0; i < std::size(decompositions); i += 3) {
      if ((decompositions[i] & 0x80000000u) != 0) {
        map.emplace((std::uint64_t{decompositions[i + 1]} << 32) | decompositions[i + 2],
                    decompositions[i] & 0x7FFFFFFFu);
      }
    }
    return map;
  }();
  const auto it = pairs.find((std::uint64_t{a} << 32) | b);
  return it == pairs.end() ? 0 : it->second;
}

}  // namespace aq::io::unicode
