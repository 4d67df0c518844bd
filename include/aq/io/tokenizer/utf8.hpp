// UTF-8 decoding and encoding for the tokenizer: strict validation of input text (the tokenizer
// works on code points) and lossy decoding of byte-level BPE output, which may split characters.
// The calibration readers and the JSON writer validate and decode text with it too.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "aq/core/error.hpp"

namespace aq::io::utf8 {

// The length of the sequence s[i] leads (0: not a lead byte) and how many of its bytes, the lead
// included, are well-formed (Unicode Table 3-7): all of them for a whole character.
struct sequence_prefix {
  std::size_t length = 0;
  std::size_t valid = 0;
};

inline sequence_prefix well_formed_prefix(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return {1, 1};
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {};
  }
  // Only the second byte has a restricted range; later ones are plain continuation bytes.
  std::size_t k = 1;
  for (; k < n && i + k < s.size(); ++k) {
    const unsigned char b = byte(i + k);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) break;
  }
  return {n, k};
}

// Length of the well-formed sequence starting at s[i], or 0 if ill-formed.
inline std::size_t valid_sequence_length(std::string_view s, std::size_t i) {
  const sequence_prefix p = well_formed_prefix(s, i);
  return p.length != 0 && p.valid == p.length ? p.length : 0;
}

// Byte offset of the first ill-formed sequence, or nullopt when all of `s` is valid UTF-8.
inline std::optional<std::size_t> first_invalid_byte(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = valid_sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::nullopt;
}

// Start of the character that ends just before s[pos] (pos > 0): back over continuation bytes.
inline std::size_t previous_char_start(std::string_view s, std::size_t pos) {
  do {
    --pos;
  } while (pos > 0 && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80);
  return pos;
}

// Decodes the code point at s[i] (which must be well-formed) and advances i.
inline char32_t decode_at(std::string_view s, std::size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  const std::size_t n = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t cp = b0 & (0x7F >> n);
  for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

inline void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
    return;
  }
  // A lead byte of n high one bits and the top bits, then n - 1 continuation bytes of 6 bits each.
  const int n = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  out.push_back(static_cast<char>(((0xFF00u >> n) & 0xFFu) | (cp >> (6 * (n - 1)))));
  for (int shift = 6 * (n - 2); shift >= 0; shift -= 6) out.push_back(static_cast<char>(0x80 | ((cp >> shift) & 0x3F)));
}

// Throws naming `what` and the byte offset of the first ill-formed sequence.
inline void validate(std::string_view s, const std::string& what) {
  if (const auto at = first_invalid_byte(s)) throw error(what + ": not valid UTF-8 at byte " + std::to_string(*at));
}

// Replaces each maximal ill-formed subpart by U+FFFD (the Unicode-recommended practice, as
// Rust's String::from_utf8_lossy and Python's errors="replace" do).
inline std::string decode_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = valid_sequence_length(s, i);
    if (n != 0) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    // The maximal subpart: the lead byte plus the continuation bytes that were still valid.
    out.append("\xEF\xBF\xBD");
    i += std::max<std::size_t>(well_formed_prefix(s, i).valid, 1);
  }
  return out;
}

}  // namespace aq::io::utf8
