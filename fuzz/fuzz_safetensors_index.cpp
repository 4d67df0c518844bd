// Fuzzes the sharded-checkpoint reader (aq/io/checkpoint/safetensors.hpp, safetensors_checkpoint): the
// model.safetensors.index.json weight_map, shard names (relative only, no ".."), tensors listed
// twice, missing or unlisted, against two fixed valid shards in the scratch directory.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "aq/io/checkpoint/safetensors.hpp"
#include "fuzz_support.hpp"

namespace {

// A valid .safetensors file: 8-byte little-endian header length, the JSON header, zeroed data.
std::string safetensors_bytes(std::string_view header, std::size_t data_size) {
  std::string out(8, '\0');
  const std::uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  out += header;
  out.append(data_size, '\0');
  return out;
}

const aq::fuzz::scratch_dir& checkpoint_dir() {
  static const aq::fuzz::scratch_dir& dir = [] () -> const aq::fuzz::scratch_dir& {
    const auto& d = aq::fuzz::scratch();
    d.write("model-00001-of-00002.safetensors",
            safetensors_bytes(R"({"__metadata__":{"format":"pt"},)"
                              R"("a.weight":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},)"
                              R"("b.weight":{"dtype":"F32","shape":[3],"data_offsets":[8,20]}})",
                              20));
    d.write("model-00002-of-00002.safetensors",
            safetensors_bytes(R"({"c.bias":{"dtype":"F16","shape":[0],"data_offsets":[0,0]},)"
                              R"("c.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}})",
                              8));
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& dir = checkpoint_dir();
  dir.write(aq::safetensors_index_name, data, size);
  try {
    const aq::safetensors_checkpoint checkpoint(dir.path());
    for (const aq::tensor_view& tensor : checkpoint.tensors()) (void)aq::to_float_vector(tensor);
  } catch (const aq::error&) {
    // a rejected index is the expected outcome; anything else crashes the fuzzer
  }
  return 0;
}
