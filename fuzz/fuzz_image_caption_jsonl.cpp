// Fuzzes the image-caption JSON-lines reader (aq/io/data/calib_dataset.hpp, read_image_caption_jsonl):
// line splitting, UTF-8, one JSON object per line and its "image"/"caption" fields. Image files
// are not checked: the fuzzer's paths name nothing on disk.
#include <cstddef>
#include <cstdint>

#include "aq/io/data/calib_dataset.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = aq::fuzz::scratch().write("calib.jsonl", data, size);
  try {
    (void)aq::io::read_image_caption_jsonl(path, /*check_images=*/false);
  } catch (const aq::error&) {
    // a rejected file is the expected outcome; anything else crashes the fuzzer
  }
  return 0;
}
