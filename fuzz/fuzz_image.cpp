// Fuzzes the image decoders (aq/io/image/image.hpp, aq/io/image/jpeg.hpp): PNG through stb_image, JPEG
// through libjpeg-turbo, and aq's conversions to RGB8 in both alpha modes.
#include <cstddef>
#include <cstdint>
#include <span>

#include "aq/io/image/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The last byte picks the alpha mode, so both conversions are reached from the same corpus.
  const auto alpha = size > 0 && (data[size - 1] & 1) ? aq::io::alpha_mode::drop : aq::io::alpha_mode::composite_white;
  try {
    (void)aq::io::decode_image(std::span<const std::uint8_t>(data, size), "image", alpha);
  } catch (const aq::error&) {
    // a rejected image is the expected outcome; anything else crashes the fuzzer
  }
  return 0;
}
