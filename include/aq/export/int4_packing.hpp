// Packing of low-bit integer codes into the bytes a serving checkpoint stores, in the two orders
// the layouts use: ModelOpt packs two OUTPUT rows into one byte (signed nibbles), compressed-
// tensors packs along the INPUT dimension into int32 words (codes offset to unsigned).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "aq/core/error.hpp"

namespace aq::hf_export {

// ModelOpt's pack_int4_in_uint8 for a 2-D [rows x cols] weight: byte [j, k] holds code [2j, k]
// in its low nibble and code [2j+1, k] in its high nibble, two's complement; shape [rows/2, cols].
inline std::vector<std::uint8_t> pack_int4_output_pairs(std::span<const std::int8_t> codes, std::int64_t rows,
                                                        std::int64_t cols) {
  if (rows % 2 != 0) throw error("int4 packing: " + std::to_string(rows) + " output rows, expected an even count");
  if (static_cast<std::size_t>(rows * cols) != codes.size()) throw error("int4 packing: codes do not match the shape");
  std::vector<std::uint8_t> packed(static_cast<std::size_t>(rows / 2 * cols));
  for (std::int64_t j = 0; j < rows / 2; ++j) {
    for (std::int64_t k = 0; k < cols; ++k) {
      const auto low = static_cast<unsigned>(codes[static_cast<std::size_t>(2 * j * cols + k)]) & 0xfu;
      const auto high = static_cast<unsigned>(codes[static_cast<std::size_t>((2 * j + 1) * cols + k)]) & 0xfu;
      packed[static_cast<std::size_t>(j * cols + k)] = static_cast<std::uint8_t>(low | (high << 4));
    }
  }
  return packed;
}

// compressed-tensors' pack_to_int32 (packed_dim 1) for Bits = 4 or 8: each code plus 2^(Bits-1)
// becomes unsigned; word [r, w] holds code [r, w * (32/Bits) + i] at bits Bits*i. The input dim
// must be a multiple of 32/Bits (the layouts refuse other shapes up front); shape [rows, cols*Bits/32].
template <int Bits>
std::vector<std::int32_t> pack_input_words(std::span<const std::int8_t> codes, std::int64_t rows, std::int64_t cols) {
  static_assert(Bits == 4 || Bits == 8, "pack_input_words: 4 or 8 bits");
  constexpr std::int64_t per_word = 32 / Bits;
  constexpr unsigned offset = 1u << (Bits - 1);
  constexpr unsigned mask = (1u << Bits) - 1u;
  if (cols % per_word != 0) {
    throw error("int" + std::to_string(Bits) + " packing: input dim " + std::to_string(cols) +
                " is not a multiple of " + std::to_string(per_word));
  }
  if (static_cast<std::size_t>(rows * cols) != codes.size()) throw error("int packing: codes do not match the shape");
  const std::int64_t words = cols / per_word;
  std::vector<std::int32_t> packed(static_cast<std::size_t>(rows * words));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t w = 0; w < words; ++w) {
      std::uint32_t word = 0;
      for (std::int64_t i = 0; i < per_word; ++i) {
        const int code = codes[static_cast<std::size_t>(r * cols + w * per_word + i)];
        word |= ((static_cast<unsigned>(code) + offset) & mask) << (Bits * i);
      }
      packed[static_cast<std::size_t>(r * words + w)] = static_cast<std::int32_t>(word);
    }
  }
  return packed;
}

}  // namespace aq::hf_export
