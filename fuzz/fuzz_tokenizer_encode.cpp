// Fuzzes encoding with the bundled Qwen3 tokenizer (aq/io/tokenizer/tokenizer.hpp over data/qwen3-tokenizer):
// UTF-8 validation, added-token matching, NFC, the Qwen2 pre-tokenizer and byte-level BPE on
// arbitrary text. Valid text must round-trip, as with Hugging Face tokenizers (Qwen3 normalizes
// with NFC and every byte has a token): decoding its ids gives back its NFC form. Added tokens are
// split off before normalization, so around one (all of Qwen3's start with '<') only canonical
// equivalence holds: "<|image_pad|>" + U+0338 decodes unchanged, while NFC of the whole text
// composes ">" + U+0338 into U+226F.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "aq/io/tokenizer/nfc.hpp"
#include "aq/io/tokenizer/tokenizer.hpp"

namespace {
const aq::io::tokenizer& qwen3() {
  static const aq::io::tokenizer tok = aq::io::tokenizer::from_file(AQ_FUZZ_TOKENIZER);
  return tok;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const aq::io::tokenizer& tok = qwen3();
  std::vector<std::uint32_t> ids;
  try {
    ids = tok.encode(text);
  } catch (const aq::error&) {
    return 0;  // invalid UTF-8 is rejected, as expected
  }
  const std::string expected = aq::io::nfc(text);
  const bool may_hold_added_token = text.find('<') != std::string_view::npos;
  const std::string decoded = may_hold_added_token ? aq::io::nfc(tok.decode(ids)) : tok.decode(ids);
  if (decoded != expected) {
    std::fprintf(stderr, "round trip differs: %zu ids decode to %zu bytes, NFC text has %zu bytes\n", ids.size(),
                 decoded.size(), expected.size());
    std::abort();
  }
  return 0;
}
