// Writing .safetensors files (BF16/F16/F32 tensors + optional __metadata__): the quantizer-state
// output of the pipeline and the synthetic checkpoints of the tests. Byte-deterministic: header
// keys sorted by name, compact JSON padded with spaces to 8 bytes, written atomically.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "aq/core/atomic_file.hpp"
#include "aq/core/bf16.hpp"
#include "aq/core/dtype.hpp"
#include "aq/core/error.hpp"

namespace aq {

namespace detail {

// JSON string literal with the escapes RFC 8259 requires (quote, backslash, control characters).
inline void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

// One tensor of a file being written: its bytes as stored.
struct serialized_tensor {
  std::string_view name;
  dtype type;
  std::span<const std::int64_t> shape;
  std::span<const std::byte> data;
};

// A tensor as the header describes it: name, dtype, shape and its size in bytes.
struct header_entry {
  std::string_view name;
  dtype type;
  std::span<const std::int64_t> shape;
  std::uint64_t bytes = 0;
};

// Where every tensor of a safetensors file goes: the file's first bytes (the 8-byte header
// length and the header) and each tensor's [begin, end) within the data area that follows.
struct safetensors_layout {
  std::string prefix;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>, std::less<>> offsets;
  std::uint64_t data_bytes = 0;
};

// The layout of a file holding `entries` sorted by name (the
// header lists them in that order). Data is laid out widest dtype first (then by name), as the
// reference writer does, so every tensor is naturally aligned when the data area starts on 8 bytes.
inline safetensors_layout layout_safetensors(const std::map<std::string, std::string, std::less<>>& metadata,
                                             const std::vector<header_entry>& entries) {
  std::vector<const header_entry*> order;
  order.reserve(entries.size());
  for (const header_entry& e : entries) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) { return a->type.size > b->type.size; });
  safetensors_layout layout;
  for (const header_entry* e : order) {
    layout.offsets[std::string(e->name)] = {layout.data_bytes, layout.data_bytes + e->bytes};
    layout.data_bytes += e->bytes;
  }
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [key, value] : metadata) {
      if (header.back() != '{') header += ',';
      append_json_string(header, key);
      header += ':';
      append_json_string(header, value);
    }
    header += '}';
  }
  for (const header_entry& e : entries) {
    if (header.size() > 1) header += ',';
    append_json_string(header, e.name);
    header += ":{\"dtype\":\"";
    header += e.type.name;
    header += "\",\"shape\":[";
    for (std::size_t i = 0; i < e.shape.size(); ++i) {
      if (i > 0) header += ',';
      header += std::to_string(e.shape[i]);
    }
    const auto [begin, end] = layout.offsets.find(e.name)->second;
    header += "],\"data_offsets\":[" + std::to_string(begin) + ',' + std::to_string(end) + "]}";
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::uint64_t header_size = header.size();
  for (int i = 0; i < 8; ++i) layout.prefix += static_cast<char>((header_size >> (8 * i)) & 0xffu);
  layout.prefix += header;
  return layout;
}

// A safetensors file from `entries` (layout_safetensors), assembled in memory.
inline std::string serialize_safetensors(const std::map<std::string, std::string, std::less<>>& metadata,
                                         const std::vector<serialized_tensor>& entries) {
  std::vector<header_entry> headers;
  headers.reserve(entries.size());
  for (const serialized_tensor& e : entries) headers.push_back({e.name, e.type, e.shape, e.data.size()});
  const safetensors_layout layout = layout_safetensors(metadata, headers);
  std::string file = layout.prefix;
  file.resize(layout.prefix.size() + layout.data_bytes);
  for (const serialized_tensor& e : entries) {
    const std::uint64_t begin = layout.offsets.find(e.name)->second.first;
    std::copy(e.data.begin(), e.data.end(), reinterpret_cast<std::byte*>(file.data() + layout.prefix.size() + begin));
  }
  return file;
}

}  // namespace detail

class safetensors_writer {
 public:
  // Adds a tensor from raw little-endian bytes of `type` (copied).
  void add(std::string_view name, const dtype& type, std::vector<std::int64_t> shape, std::span<const std::byte> data) {
    if (!find_dtype(type.name, readable_dtypes)) {  // raw bytes may also be I32/I64 (e.g. token ids)
      fail(name, "dtype " + std::string(type.name) + " not supported (BF16, F16, F32, I32, I64)");
    }
    if (name.empty()) fail(name, "empty tensor name");
    if (name == "__metadata__") fail(name, "reserved name");
    std::uint64_t expected = type.size;
    for (const std::int64_t extent : shape) {
      if (extent < 0) fail(name, "negative extent in shape");
      expected *= static_cast<std::uint64_t>(extent);
    }
    if (expected != data.size()) {
      fail(name, "shape needs " + std::to_string(expected) + " bytes of " + std::string(type.name) + ", got " +
                     std::to_string(data.size()));
    }
    const auto [it, inserted] = tensors_.try_emplace(std::string(name));
    if (!inserted) fail(name, "added twice");
    it->second = {*find_dtype(type.name, readable_dtypes), std::move(shape), {data.begin(), data.end()}};
  }

  // Adds values already in their storage type (float -> F32, bf16 -> BF16, f16 -> F16).
  template <class T>
  void add(std::string_view name, std::vector<std::int64_t> shape, std::span<const T> values) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16> || std::is_same_v<T, f16>,
                  "safetensors_writer stores float, bf16 or f16 values");
    add(name, dtype_of<T>, std::move(shape), std::as_bytes(values));
  }

  // Adds float values stored as `type`, rounding to nearest even for BF16/F16.
  void add_rounded(std::string_view name, const dtype& type, std::vector<std::int64_t> shape,
                   std::span<const float> values) {
    if (!find_dtype(type.name)) {
      fail(name, "dtype " + std::string(type.name) + " not supported (" + dtype_names(supported_dtypes) + ")");
    }
    visit_dtype(type, [&](auto tag) {
      using Stored = decltype(tag);
      std::vector<Stored> stored(values.size());
      for (std::size_t i = 0; i < values.size(); ++i) stored[i] = convert_element<Stored>(values[i]);
      add(name, std::move(shape), std::span<const Stored>(stored));
    });
  }

  void set_metadata(std::string_view key, std::string_view value) { metadata_[std::string(key)] = std::string(value); }

  std::size_t size() const { return tensors_.size(); }

  // The whole file (detail::serialize_safetensors).
  std::string serialize() const {
    std::vector<detail::serialized_tensor> entries;
    entries.reserve(tensors_.size());
    for (const auto& [name, tensor] : tensors_) entries.push_back({name, tensor.type, tensor.shape, tensor.data});
    return detail::serialize_safetensors(metadata_, entries);
  }

  void write(const std::filesystem::path& path) const { write_file_atomic(path, serialize()); }

 private:
  struct stored_tensor {
    dtype type;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> data;
  };

  [[noreturn]] static void fail(std::string_view name, const std::string& message) {
    throw error("safetensors writer: tensor " + std::string(name) + ": " + message);
  }

  std::map<std::string, stored_tensor, std::less<>> tensors_;
  std::map<std::string, std::string, std::less<>> metadata_;
};

}  // namespace aq
