// The Qwen2 pre-tokenizer: splits normalized text into the pieces that byte-level BPE encodes
// separately, matching the regex of Qwen2/Qwen3 tokenizer.json exactly (leftmost-first
// alternation with backtracking), hand-written over the generated Unicode class tables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "aq/io/tokenizer/unicode_properties.hpp"
#include "aq/io/tokenizer/utf8.hpp"

namespace aq::io {

// The one split pattern supported, as written in tokenizer.json.
inline constexpr std::string_view qwen2_split_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A piece of the input as byte offsets [begin, end).
struct text_span {
  std::size_t begin = 0;
  std::size_t end = 0;
};

class qwen2_pretokenizer {
 public:
  // Appends the pieces of `text` (well-formed UTF-8) to `pieces`, in order, covering all of it.
  static void split(std::string_view text, std::vector<text_span>& pieces) {
    qwen2_pretokenizer m;
    m.run(text, pieces);
  }

 private:
  void run(std::string_view text, std::vector<text_span>& pieces) {
    cps_.reserve(text.size());
    bits_.reserve(text.size());
    offsets_.reserve(text.size() + 1);
    for (std::size_t i = 0; i < text.size();) {
      offsets_.push_back(i);
      const char32_t cp = utf8::decode_at(text, i);
      cps_.push_back(cp);
      bits_.push_back(unicode::classes(cp));
    }
    offsets_.push_back(text.size());
    const std::size_t n = cps_.size();
    std::size_t gap = 0;  // start of characters no alternative matched (none in practice)
    for (std::size_t i = 0; i < n;) {
      const std::size_t end = match_at(i);
      if (end == i) {
        ++i;
        continue;
      }
      if (gap < i) pieces.push_back({offsets_[gap], offsets_[i]});
      pieces.push_back({offsets_[i], offsets_[end]});
      i = end;
      gap = end;
    }
    if (gap < n) pieces.push_back({offsets_[gap], offsets_[n]});
  }

  static constexpr std::uint8_t letter = unicode_tables::class_letter;
  static constexpr std::uint8_t number = unicode_tables::class_number;
  static constexpr std::uint8_t space = unicode_tables::class_space;

  bool is(std::size_t i, std::uint8_t cls) const { return i < cps_.size() && (bits_[i] & cls) != 0; }
  bool is_newline(std::size_t i) const { return i < cps_.size() && (cps_[i] == '\r' || cps_[i] == '\n'); }
  // [^\s\p{L}\p{N}]
  bool is_other(std::size_t i) const { return i < cps_.size() && (bits_[i] & (letter | number | space)) == 0; }
  // Case-insensitive ASCII letter; 's' also folds U+017F (long s), the only non-ASCII
  // character whose simple case folding lands on one of s, t, r, e, v, m, l, d.
  bool folds_to(std::size_t i, char lower) const {
    if (i >= cps_.size()) return false;
    const char32_t cp = cps_[i];
    if (cp == static_cast<char32_t>(lower) || cp == static_cast<char32_t>(lower - 'a' + 'A')) return true;
    return lower == 's' && cp == 0x17F;
  }
  std::size_t letters_from(std::size_t i) const {
    while (is(i, letter)) ++i;
    return i;
  }

  // End of the match starting at character i, or i when no alternative matches.
  std::size_t match_at(std::size_t i) const {
    const std::size_t n = cps_.size();
    // (?i:'s|'t|'re|'ve|'m|'ll|'d): no two alternatives share a second letter, so order does not matter.
    if (cps_[i] == '\'') {
      if (folds_to(i + 1, 's') || folds_to(i + 1, 't') || folds_to(i + 1, 'm') || folds_to(i + 1, 'd')) return i + 2;
      if ((folds_to(i + 1, 'r') || folds_to(i + 1, 'v')) && folds_to(i + 2, 'e')) return i + 3;
      if (folds_to(i + 1, 'l') && folds_to(i + 2, 'l')) return i + 3;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!is(i, letter | number) && !is_newline(i) && is(i + 1, letter)) return letters_from(i + 1);
    if (is(i, letter)) return letters_from(i);
    // \p{N}
    if (is(i, number)) return i + 1;
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    {
      std::size_t k = i;
      if (cps_[k] == ' ' && is_other(k + 1)) ++k;
      if (is_other(k)) {
        while (is_other(k)) ++k;
        while (is_newline(k)) ++k;
        return k;
      }
    }
    if (!is(i, space)) return i;
    std::size_t run_end = i;
    while (is(run_end, space)) ++run_end;
    // \s*[\r\n]+ : \s* backs off to the last newline of the run; [\r\n]+ then takes just it.
    for (std::size_t k = run_end; k > i; --k) {
      if (is_newline(k - 1)) return k;
    }
    // \s+(?!\S) : the whole run at the end of text, else the run less its last character.
    if (run_end == n) return run_end;
    if (run_end - i >= 2) return run_end - 1;
    // \s+
    return run_end;
  }

  std::vector<char32_t> cps_;
  std::vector<std::uint8_t> bits_;
  std::vector<std::size_t> offsets_;
};

}  // namespace aq::io
