// Fuzzes the safetensors reader (aq/io/checkpoint/safetensors.hpp): the 8-byte length, the JSON header and
// the span checks of one .safetensors file, then converts every tensor it hands out, so a view
// that escaped validation reads outside the mapping under ASan.
#include <cstddef>
#include <cstdint>

#include "aq/io/checkpoint/safetensors.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = aq::fuzz::scratch().write("model.safetensors", data, size);
  try {
    const aq::safetensors_file file(path, aq::readable_dtypes);
    for (const aq::tensor_view& tensor : file.tensors()) {
      if (tensor.dtype == aq::dtype_i32 || tensor.dtype == aq::dtype_i64) {
        (void)aq::to_int64_vector(tensor);
      } else {
        (void)aq::to_float_vector(tensor);
      }
    }
  } catch (const aq::error&) {
    // a rejected file is the expected outcome; anything else crashes the fuzzer
  }
  return 0;
}
