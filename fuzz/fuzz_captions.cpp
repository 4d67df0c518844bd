// Fuzzes the captions reader (aq/io/data/calib_dataset.hpp, read_caption_lines): universal newlines,
// UTF-8 validation and Python's str.strip() on one caption per line.
#include <cstddef>
#include <cstdint>

#include "aq/io/data/calib_dataset.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = aq::fuzz::scratch().write("captions.txt", data, size);
  try {
    (void)aq::io::read_caption_lines(path);
  } catch (const aq::error&) {
    // a rejected file is the expected outcome; anything else crashes the fuzzer
  }
  return 0;
}
