// Fuzzes the Qwen3-VL config.json reader (aq/model/qwen3_vl/config_json.hpp, parse_qwen3_vl_config): field
// types, ranges, the rope spellings and the cross-field checks (heads, mrope sections, deepstack).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "aq/model/qwen3_vl/config_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)aq::parse_qwen3_vl_config(std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
  } catch (const aq::error&) {
    // a rejected config is the expected outcome; anything else crashes the fuzzer
  }
  return 0;
}
