// Fuzzes the tokenizer.json reader (aq/io/tokenizer/tokenizer.hpp): normalizer, pre-tokenizer, decoder,
// BPE vocabulary and merges, added tokens. A tokenizer that loads then encodes and decodes a fixed
// text, so inconsistent vocabularies or merges that the reader accepted are exercised too.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "aq/io/tokenizer/tokenizer.hpp"

namespace {
constexpr std::string_view sample =
    "A man rides a bike, 12 dogs\tnap.\n  <|im_start|>user caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd [L] <|s|>x";
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const aq::io::tokenizer tok =
        aq::io::tokenizer::from_json(std::string_view(reinterpret_cast<const char*>(data), size), "tokenizer.json");
    const auto ids = tok.encode(sample);
    (void)tok.decode(ids);
    (void)tok.decode(ids, true);
  } catch (const aq::error&) {
    // a rejected tokenizer is the expected outcome; anything else crashes the fuzzer
  }
  return 0;
}
