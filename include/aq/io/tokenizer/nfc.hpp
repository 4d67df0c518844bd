// Unicode Normalization Form C (canonical decomposition, canonical ordering, canonical
// composition), the tokenizer's normalizer: applied to text between added tokens before
// pre-tokenization, so that "e" + U+0301 and U+00E9 give the same ids.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "aq/io/tokenizer/unicode_properties.hpp"
#include "aq/io/tokenizer/utf8.hpp"

namespace aq::io {

namespace detail {

inline void decompose_into(char32_t cp, std::vector<char32_t>& out) {
  using namespace unicode::hangul;
  if (cp >= s_base && cp < s_base + s_count) {
    const char32_t index = cp - s_base;
    out.push_back(l_base + index / n_count);
    out.push_back(v_base + (index % n_count) / t_count);
    if (index % t_count != 0) out.push_back(t_base + index % t_count);
    return;
  }
  const unicode::decomposition d = unicode::canonical_decomposition(cp);
  if (!d.found) {
    out.push_back(cp);
    return;
  }
  decompose_into(d.first, out);
  if (d.second != 0) decompose_into(d.second, out);
}

}  // namespace detail

// NFC of well-formed UTF-8 (callers validate first). ASCII text is returned unchanged quickly.
inline std::string nfc(std::string_view text) {
  std::size_t first = 0;
  while (first < text.size() && static_cast<unsigned char>(text[first]) < 0x80) ++first;
  if (first == text.size()) return std::string(text);
  // The ASCII character just before may compose with what follows (e + U+0301).
  if (first > 0) --first;

  std::vector<char32_t> cps;
  cps.reserve(text.size() - first);
  for (std::size_t i = first; i < text.size();) detail::decompose_into(utf8::decode_at(text, i), cps);

  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (std::size_t i = 0; i < cps.size();) {
    if (unicode::combining_class(cps[i]) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < cps.size() && unicode::combining_class(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + static_cast<std::ptrdiff_t>(i), cps.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return unicode::combining_class(a) < unicode::combining_class(b); });
    i = j;
  }

  // Canonical composition: a character joins the last starter unless a character of equal or
  // higher class (or a starter) stands between them.
  std::size_t out = 0;
  std::size_t starter = 0;
  bool have_starter = false;
  int last_class = -1;  // class of the last kept character; -1 before any
  for (std::size_t i = 0; i < cps.size(); ++i) {
    const char32_t cp = cps[i];
    const int cls = unicode::combining_class(cp);
    if (have_starter && (last_class == 0 ? out == starter + 1 : last_class < cls)) {
      const char32_t composite = unicode::compose(cps[starter], cp);
      if (composite != 0) {
        cps[starter] = composite;
        continue;
      }
    }
    if (cls == 0) {
      starter = out;
      have_starter = true;
    }
    last_class = cls;
    cps[out++] = cp;
  }
  cps.resize(out);

  std::string result(text.substr(0, first));
  result.reserve(text.size() + 8);
  for (char32_t cp : cps) utf8::append(result, cp);
  return result;
}

}  // namespace aq::io
