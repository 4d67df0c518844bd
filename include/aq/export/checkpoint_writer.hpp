// Writing an exported checkpoint shard by shard: one output shard is held in memory at a time
// (plus the tensor being converted), serialized as safetensors with metadata {"format": "pt"},
// header keys sorted and data laid out widest dtype first as aq's safetensors_writer does, so the
// same inputs give the same bytes. Any dtype safetensors defines may be written (F8_E4M3, I8, U8
// codes; copied tensors keep theirs), and the shard index is written as transformers writes it.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/core/atomic_file.hpp"
#include "aq/core/dtype.hpp"
#include "aq/core/error.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"
#include "aq/report/json_writer.hpp"

namespace aq::hf_export {

inline constexpr dtype dtype_f8_e4m3{"F8_E4M3", 1};
inline constexpr dtype dtype_i8{"I8", 1};
inline constexpr dtype dtype_u8{"U8", 1};

// Every byte-sized-or-wider dtype safetensors defines: what an input checkpoint may hold (copied
// as bytes) and what an exported one is read back with.
inline constexpr std::array<dtype, 16> any_safetensors_dtype{
    dtype{"BOOL", 1},   dtype_u8,        dtype_i8,  dtype{"I16", 2}, dtype{"U16", 2},
    dtype_i32,          dtype{"U32", 4}, dtype_i64, dtype{"U64", 8}, dtype{"F64", 8},
    dtype_f16,          dtype_bf16,      dtype_f32, dtype_f8_e4m3,   dtype{"F8_E5M2", 1},
    dtype{"F8_E8M0", 1}};

struct output_tensor {
  std::string name;
  dtype type;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> bytes;
};

template <class T>
std::vector<std::byte> bytes_of(std::span<const T> values) {
  const auto raw = std::as_bytes(values);
  return {raw.begin(), raw.end()};
}

// One output shard being assembled.
class shard_builder {
 public:
  void add(output_tensor tensor) {
    std::uint64_t expected = tensor.type.size;
    for (const std::int64_t extent : tensor.shape) expected *= static_cast<std::uint64_t>(extent);
    if (expected != tensor.bytes.size()) {
      throw error("export: tensor " + tensor.name + ": shape needs " + std::to_string(expected) + " bytes, got " +
                  std::to_string(tensor.bytes.size()));
    }
    const std::string name = tensor.name;
    if (!tensors_.emplace(name, std::move(tensor)).second) throw error("export: tensor " + name + " written twice");
  }

  const std::map<std::string, output_tensor, std::less<>>& tensors() const { return tensors_; }

  // Sum of the tensors' data bytes (the index's total_size counts these).
  std::uint64_t data_bytes() const {
    std::uint64_t total = 0;
    for (const auto& [name, tensor] : tensors_) total += tensor.bytes.size();
    return total;
  }

  // The shard's file: detail::serialize_safetensors, with the metadata torch writes.
  std::string serialize() const {
    std::vector<aq::detail::serialized_tensor> entries;
    entries.reserve(tensors_.size());
    for (const auto& [name, tensor] : tensors_) entries.push_back({name, tensor.type, tensor.shape, tensor.bytes});
    return aq::detail::serialize_safetensors({{"format", "pt"}}, entries);
  }

  void write(const std::filesystem::path& path) const { write_file_atomic(path, serialize()); }

 private:
  std::map<std::string, output_tensor, std::less<>> tensors_;
};

// model.safetensors.index.json as transformers' save_pretrained writes it: json.dumps(index,
// indent=2, sort_keys=True) + "\n", total_size = the tensors' data bytes.
inline std::string shard_index_json(std::uint64_t total_size, const std::map<std::string, std::string>& weight_map) {
  io::json_writer json(2);
  json.begin_object().key("metadata").begin_object().key("total_size").integer(static_cast<std::int64_t>(total_size));
  json.end_object().key("weight_map").begin_object();
  for (const auto& [tensor, shard] : weight_map) json.key(tensor).string(shard);
  json.end_object().end_object();
  return json.str() + "\n";
}

}  // namespace aq::hf_export
