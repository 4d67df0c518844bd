// Reading safetensors checkpoints: one file or a sharded directory (model.safetensors.index.json),
// memory-mapped and validated against the format before any tensor is handed out. This is the
// first step of the pipeline (checkpoint -> weights); tensor views point into the mapping and are
// converted to float32/bf16 only when the model asks.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/core/bf16.hpp"
#include "aq/core/dtype.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/io/json_parser.hpp"
#include "aq/io/json_type_name.hpp"
#include "aq/io/mapped_file.hpp"

namespace aq {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian values; aq reads them in place");

// One tensor of a checkpoint: metadata plus its raw little-endian bytes inside the mapped file.
struct tensor_view {
  std::string_view name;
  aq::dtype dtype;
  std::span<const std::int64_t> shape;
  std::span<const std::byte> bytes;
  std::string_view file;  // the .safetensors file holding it (for messages)

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (const std::int64_t extent : shape) n *= extent;
    return n;
  }
};

// The tensor named `name` in views sorted by name (as files and checkpoints hold them), or nullptr.
inline const tensor_view* find_tensor_view(std::span<const tensor_view> views, std::string_view name) {
  const auto it = std::lower_bound(views.begin(), views.end(), name,
                                   [](const tensor_view& view, std::string_view key) { return view.name < key; });
  return it != views.end() && it->name == name ? &*it : nullptr;
}

// Upper bound on the JSON header, as in the reference implementation: a larger length is a
// corrupt file, not a checkpoint.
inline constexpr std::uint64_t safetensors_max_header_size = 100'000'000;

namespace detail {

// Dtypes that the safetensors format defines but aq does not read: named as such in errors.
inline bool is_known_safetensors_dtype(std::string_view name) {
  constexpr std::string_view known[] = {"BOOL", "U8",  "I8",  "I16",     "U16",     "I32",     "U32",
                                        "I64",  "U64", "F64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",
                                        "F6_E2M3", "F6_E3M2", "C64"};
  return std::find(std::begin(known), std::end(known), name) != std::end(known);
}

using io::json_type_name;

// An error about one tensor: "FILE: tensor NAME: message".
inline error tensor_error(const tensor_view& tensor, const std::string& message) {
  return error(std::string(tensor.file) + ": tensor " + std::string(tensor.name) + ": " + message);
}

// A JSON non-negative integer (int64 range), or an error message fragment.
inline bool json_non_negative_int(simdjson::dom::element value, std::int64_t& out, std::string& why) {
  if (value.type() == simdjson::dom::element_type::INT64) {
    const std::int64_t v = value.get_int64().value_unsafe();
    if (v < 0) {
      why = "is negative (" + std::to_string(v) + ")";
      return false;
    }
    out = v;
    return true;
  }
  if (value.type() == simdjson::dom::element_type::UINT64) {
    why = "is too large (" + std::to_string(value.get_uint64().value_unsafe()) + ")";
    return false;
  }
  why = std::string("is ") + std::string(json_type_name(value.type())) + ", expected a non-negative integer";
  return false;
}

}  // namespace detail

// One .safetensors file, mapped and validated. Not movable: tensor views point into it.
class safetensors_file {
 public:
  // `accepted`: the dtypes this caller handles; weights are float (the default), fixtures may add I32/I64.
  explicit safetensors_file(const std::filesystem::path& path, std::span<const dtype> accepted = supported_dtypes)
      : file_(path), path_string_(path.string()), accepted_(accepted.begin(), accepted.end()) {
    parse();
  }

  safetensors_file(const safetensors_file&) = delete;
  safetensors_file& operator=(const safetensors_file&) = delete;

  // All tensors, sorted by name.
  std::span<const tensor_view> tensors() const { return views_; }
  const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }

  const tensor_view* find(std::string_view name) const { return find_tensor_view(views_, name); }

  const tensor_view& at(std::string_view name) const {
    if (const tensor_view* view = find(name)) return *view;
    throw error(path_string_ + ": tensor " + std::string(name) + ": not in this file");
  }

 private:
  struct entry {
    std::string name;
    aq::dtype dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
  };

  [[noreturn]] void fail(const std::string& message) const { throw error(path_string_ + ": " + message); }
  [[noreturn]] void fail_tensor(std::string_view name, const std::string& message) const {
    throw error(path_string_ + ": tensor " + std::string(name) + ": " + message);
  }

  void parse() {
    const std::span<const std::byte> bytes = file_.bytes();
    if (bytes.size() < 8) {
      fail("truncated: " + std::to_string(bytes.size()) +
           " bytes, but a safetensors file starts with an 8-byte header length");
    }
    std::uint64_t header_size = 0;
    std::memcpy(&header_size, bytes.data(), 8);
    if (header_size > safetensors_max_header_size) {
      fail("header length " + std::to_string(header_size) + " exceeds the limit of " +
           std::to_string(safetensors_max_header_size) + " bytes");
    }
    if (header_size > bytes.size() - 8) {
      fail("header length " + std::to_string(header_size) + " exceeds the file size minus 8 (" +
           std::to_string(bytes.size() - 8) + " bytes): truncated or not a safetensors file");
    }
    const std::span<const std::byte> data = bytes.subspan(8 + header_size);

    simdjson::dom::parser parser;
    simdjson::dom::element root;
    const auto* header = reinterpret_cast<const char*>(bytes.data() + 8);
    if (const auto code = parser.parse(header, header_size).get(root)) {
      fail(std::string("header is not valid JSON: ") + simdjson::error_message(code));
    }
    simdjson::dom::object object;
    if (root.get_object().get(object)) {
      fail(std::string("header is ") + std::string(detail::json_type_name(root.type())) + ", expected a JSON object");
    }

    std::vector<entry> entries;
    entries.reserve(object.size());
    bool have_metadata = false;
    for (const auto field : object) {
      const std::string_view key = field.key;
      if (key == "__metadata__") {
        if (have_metadata) fail("__metadata__ appears twice in the header");
        have_metadata = true;
        parse_metadata(field.value);
        continue;
      }
      entries.push_back(parse_entry(key, field.value));
    }

    std::sort(entries.begin(), entries.end(), [](const entry& a, const entry& b) { return a.name < b.name; });
    for (std::size_t i = 1; i < entries.size(); ++i) {
      if (entries[i].name == entries[i - 1].name) fail_tensor(entries[i].name, "appears twice in the header");
    }
    check_spans(entries, data.size());

    entries_ = std::move(entries);
    views_.reserve(entries_.size());
    for (const entry& e : entries_) {
      views_.push_back(tensor_view{e.name, e.dtype, e.shape,
                                   data.subspan(static_cast<std::size_t>(e.begin), static_cast<std::size_t>(e.end - e.begin)),
                                   path_string_});
    }
  }

  void parse_metadata(simdjson::dom::element value) {
    simdjson::dom::object object;
    if (value.get_object().get(object)) {
      fail(std::string("__metadata__ is ") + std::string(detail::json_type_name(value.type())) +
           ", expected an object of strings");
    }
    for (const auto field : object) {
      std::string_view text;
      if (field.value.get_string().get(text)) {
        fail("__metadata__." + std::string(field.key) + " is " + std::string(detail::json_type_name(field.value.type())) +
             ", expected a string");
      }
      if (!metadata_.emplace(std::string(field.key), std::string(text)).second) {
        fail("__metadata__." + std::string(field.key) + " appears twice");
      }
    }
  }

  entry parse_entry(std::string_view name, simdjson::dom::element value) const {
    simdjson::dom::object object;
    if (value.get_object().get(object)) {
      fail_tensor(name, std::string("entry is ") + std::string(detail::json_type_name(value.type())) +
                            ", expected an object with dtype, shape, data_offsets");
    }
    entry result;
    result.name = std::string(name);

    simdjson::dom::element dtype_value;
    if (object.at_key("dtype").get(dtype_value)) fail_tensor(name, "dtype: missing");
    std::string_view dtype_name;
    if (dtype_value.get_string().get(dtype_name)) {
      fail_tensor(name, "dtype is " + std::string(detail::json_type_name(dtype_value.type())) + ", expected a string");
    }
    const auto type = find_dtype(dtype_name, accepted_);
    if (!type) {
      const bool known = detail::is_known_safetensors_dtype(dtype_name) || find_dtype(dtype_name, readable_dtypes);
      fail_tensor(name, "dtype " + std::string(dtype_name) + (known ? " not supported (" : " unknown (supported: ") +
                            dtype_names(accepted_) + ")");
    }
    result.dtype = *type;

    simdjson::dom::element shape_value;
    if (object.at_key("shape").get(shape_value)) fail_tensor(name, "shape: missing");
    simdjson::dom::array shape_array;
    if (shape_value.get_array().get(shape_array)) {
      fail_tensor(name, "shape is " + std::string(detail::json_type_name(shape_value.type())) + ", expected an array");
    }
    std::string why;
    for (const auto extent_value : shape_array) {
      std::int64_t extent = 0;
      if (!detail::json_non_negative_int(extent_value, extent, why)) {
        fail_tensor(name, "shape[" + std::to_string(result.shape.size()) + "] " + why);
      }
      result.shape.push_back(extent);
    }

    simdjson::dom::element offsets_value;
    if (object.at_key("data_offsets").get(offsets_value)) fail_tensor(name, "data_offsets: missing");
    simdjson::dom::array offsets;
    if (offsets_value.get_array().get(offsets) || offsets.size() != 2) {
      fail_tensor(name, "data_offsets must be an array [begin, end] of two integers");
    }
    std::int64_t begin = 0;
    std::int64_t end = 0;
    if (!detail::json_non_negative_int(offsets.at(0).value_unsafe(), begin, why)) fail_tensor(name, "data_offsets[0] " + why);
    if (!detail::json_non_negative_int(offsets.at(1).value_unsafe(), end, why)) fail_tensor(name, "data_offsets[1] " + why);
    result.begin = static_cast<std::uint64_t>(begin);
    result.end = static_cast<std::uint64_t>(end);
    return result;
  }

  void check_spans(const std::vector<entry>& entries, std::size_t data_size) const {
    for (const entry& e : entries) {
      const std::string offsets = "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
      if (e.begin > e.end) fail_tensor(e.name, offsets + " has begin > end");
      if (e.end > data_size) {
        fail_tensor(e.name, offsets + " outside the data area of " + std::to_string(data_size) + " bytes");
      }
      std::uint64_t expected = e.dtype.size;
      for (const std::int64_t extent : e.shape) {
        if (__builtin_mul_overflow(expected, static_cast<std::uint64_t>(extent), &expected)) {
          fail_tensor(e.name, "shape " + shape_string(e.shape) + " overflows the byte count");
        }
      }
      if (expected != e.end - e.begin) {
        fail_tensor(e.name, "shape " + shape_string(e.shape) + " x " + std::string(e.dtype.name) + " (" +
                                std::to_string(e.dtype.size) + " bytes) = " + std::to_string(expected) + " bytes, but " +
                                offsets + " span " + std::to_string(e.end - e.begin));
      }
    }
    // No two tensors may share bytes; empty tensors occupy none.
    std::vector<const entry*> by_offset;
    by_offset.reserve(entries.size());
    for (const entry& e : entries) {
      if (e.end > e.begin) by_offset.push_back(&e);
    }
    std::sort(by_offset.begin(), by_offset.end(),
              [](const entry* a, const entry* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
    for (std::size_t i = 1; i < by_offset.size(); ++i) {
      const entry& previous = *by_offset[i - 1];
      const entry& current = *by_offset[i];
      if (current.begin < previous.end) {
        fail("tensors " + previous.name + " [" + std::to_string(previous.begin) + ", " + std::to_string(previous.end) +
             "] and " + current.name + " [" + std::to_string(current.begin) + ", " + std::to_string(current.end) +
             "] overlap");
      }
    }
  }

  mapped_file file_;
  std::string path_string_;
  std::vector<dtype> accepted_;
  std::vector<entry> entries_;
  std::vector<tensor_view> views_;
  std::map<std::string, std::string, std::less<>> metadata_;
};

inline constexpr std::string_view safetensors_index_name = "model.safetensors.index.json";
inline constexpr std::string_view safetensors_single_name = "model.safetensors";

// A whole checkpoint: a directory holding model.safetensors.index.json (sharded) or
// model.safetensors, a single .safetensors file, or an index file. Every shard is validated, the
// index must agree with the shards exactly, and tensor names are unique across shards.
class safetensors_checkpoint {
 public:
  explicit safetensors_checkpoint(const std::filesystem::path& path, std::span<const dtype> accepted = supported_dtypes)
      : path_(path), accepted_(accepted.begin(), accepted.end()) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      if (fs::exists(path / safetensors_index_name, ec)) {
        open_index(path / safetensors_index_name);
      } else if (fs::exists(path / safetensors_single_name, ec)) {
        files_.push_back(std::make_unique<safetensors_file>(path / safetensors_single_name, accepted_));
      } else {
        throw error(path.string() + ": no " + std::string(safetensors_index_name) + " or " +
                    std::string(safetensors_single_name) + " in this directory");
      }
    } else if (path.extension() == ".json") {
      open_index(path);
    } else {
      files_.push_back(std::make_unique<safetensors_file>(path, accepted_));
    }
    collect();
  }

  safetensors_checkpoint(const safetensors_checkpoint&) = delete;
  safetensors_checkpoint& operator=(const safetensors_checkpoint&) = delete;

  // What was opened (directory, file or index), for messages.
  const std::filesystem::path& path() const { return path_; }
  bool sharded() const { return sharded_; }
  const std::vector<std::unique_ptr<safetensors_file>>& files() const { return files_; }
  // All tensors of all shards, sorted by name.
  std::span<const tensor_view> tensors() const { return views_; }

  const tensor_view* find(std::string_view name) const { return find_tensor_view(views_, name); }

  const tensor_view& at(std::string_view name) const {
    if (const tensor_view* view = find(name)) return *view;
    throw error(path_.string() + ": tensor " + std::string(name) + ": not in the checkpoint");
  }

  std::uint64_t total_bytes() const {
    std::uint64_t total = 0;
    for (const tensor_view& view : views_) total += view.bytes.size();
    return total;
  }

 private:
  void open_index(const std::filesystem::path& index_path) {
    sharded_ = true;
    const std::string where = index_path.string();
    const mapped_file index(index_path);
    const std::string_view text = index.nonempty_text();
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (const auto code = parser.parse(text.data(), text.size()).get(root)) {
      throw error(where + ": not valid JSON: " + simdjson::error_message(code));
    }
    simdjson::dom::element weight_map_value;
    if (root.at_key("weight_map").get(weight_map_value)) throw error(where + ": weight_map: missing");
    simdjson::dom::object weight_map;
    if (weight_map_value.get_object().get(weight_map)) {
      throw error(where + ": weight_map is " + std::string(detail::json_type_name(weight_map_value.type())) +
                  ", expected an object");
    }

    std::map<std::string, std::string, std::less<>> listed;  // tensor -> shard file name
    std::optional<std::string> twice;  // the first tensor, by name, listed twice
    for (const auto field : weight_map) {
      std::string_view shard;
      if (field.value.get_string().get(shard)) {
        throw error(where + ": weight_map: tensor " + std::string(field.key) + ": shard is " +
                    std::string(detail::json_type_name(field.value.type())) + ", expected a file name");
      }
      const std::filesystem::path shard_path(shard);
      if (shard.empty() || shard_path.is_absolute() ||
          std::any_of(shard_path.begin(), shard_path.end(), [](const auto& part) { return part == ".."; })) {
        throw error(where + ": weight_map: tensor " + std::string(field.key) + ": shard \"" + std::string(shard) +
                    "\" must be a file name relative to the index");
      }
      if (!listed.emplace(field.key, shard).second && (!twice || field.key < *twice)) twice = std::string(field.key);
    }
    if (twice) throw error(where + ": weight_map: tensor " + *twice + ": listed twice");

    std::set<std::string> shard_names;
    for (const auto& [tensor, shard] : listed) shard_names.insert(shard);
    const std::filesystem::path dir = index_path.parent_path();
    std::map<std::string, const safetensors_file*, std::less<>> by_name;
    for (const std::string& shard : shard_names) {
      std::error_code ec;
      if (!std::filesystem::exists(dir / shard, ec)) {
        throw error(where + ": weight_map: shard " + shard + " does not exist");
      }
      files_.push_back(std::make_unique<safetensors_file>(dir / shard, accepted_));
      by_name.emplace(shard, files_.back().get());
    }
    for (const auto& [tensor, shard] : listed) {
      if (by_name.at(shard)->find(tensor) == nullptr) {
        throw error(where + ": weight_map: tensor " + tensor + ": not in shard " + shard);
      }
    }
    // Every tensor of every shard must be listed (under that shard: checked by collect()).
    for (const auto& [shard, file] : by_name) {
      for (const tensor_view& view : file->tensors()) {
        const auto it = listed.find(view.name);
        if (it == listed.end()) {
          throw error(where + ": tensor " + std::string(view.name) + " of shard " + shard + " is not in weight_map");
        }
        if (it->second != shard) {
          throw error(where + ": tensor " + std::string(view.name) + " is in two shards: " + it->second + " and " + shard);
        }
      }
    }
  }

  void collect() {
    for (const auto& file : files_) {
      views_.insert(views_.end(), file->tensors().begin(), file->tensors().end());
    }
    std::sort(views_.begin(), views_.end(), [](const tensor_view& a, const tensor_view& b) { return a.name < b.name; });
    for (std::size_t i = 1; i < views_.size(); ++i) {
      if (views_[i].name == views_[i - 1].name) {
        throw error(path_.string() + ": tensor " + std::string(views_[i].name) + " is in two shards: " +
                    std::string(views_[i - 1].file) + " and " + std::string(views_[i].file));
      }
    }
  }

  std::filesystem::path path_;
  std::vector<dtype> accepted_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<safetensors_file>> files_;
  std::vector<tensor_view> views_;
};

// Converts a tensor's stored values into `out` (float, bf16 or f16), rounding to nearest even
// where the target is narrower. Source bytes need no alignment.
template <class Out>
void convert_tensor(const tensor_view& tensor, std::span<Out> out) {
  static_assert(std::is_same_v<Out, float> || std::is_same_v<Out, bf16> || std::is_same_v<Out, f16>,
                "convert_tensor writes float, bf16 or f16");
  const auto count = static_cast<std::size_t>(tensor.numel());
  if (out.size() != count) {
    throw detail::tensor_error(tensor, "destination holds " + std::to_string(out.size()) + " values, tensor " +
                                           shape_string(tensor.shape) + " has " + std::to_string(count));
  }
  if (!find_dtype(tensor.dtype.name)) {
    throw detail::tensor_error(tensor, "dtype " + std::string(tensor.dtype.name) +
                                           " does not convert to floating point (" +
                                           dtype_names(supported_dtypes) + ")");
  }
  if (count == 0) return;  // an empty tensor's span may be null, which memcpy must not see
  visit_dtype(tensor.dtype, [&](auto tag) {
    using In = decltype(tag);
    const std::byte* source = tensor.bytes.data();
    if constexpr (std::is_same_v<In, Out>) {
      std::memcpy(out.data(), source, count * sizeof(In));
    } else {
      for (std::size_t i = 0; i < count; ++i) {
        In value;
        std::memcpy(&value, source + i * sizeof(In), sizeof(In));
        out[i] = convert_element<Out>(value);
      }
    }
  });
}

namespace detail {

// Scans stored floating-point bits for an all-ones exponent (NaN or infinity); `first` is the
// element index of bytes[0] within the tensor, so a part of it can be checked alone.
template <class Bits>
void require_finite_bits(const tensor_view& tensor, std::size_t first, std::span<const std::byte> bytes,
                         Bits exponent_mask, Bits mantissa_mask) {
  const std::size_t count = bytes.size() / sizeof(Bits);
  for (std::size_t i = 0; i < count; ++i) {
    Bits bits;
    std::memcpy(&bits, bytes.data() + i * sizeof(Bits), sizeof(Bits));
    if ((bits & exponent_mask) != exponent_mask) continue;
    const bool nan = (bits & mantissa_mask) != 0;
    const bool negative = (bits >> (8 * sizeof(Bits) - 1)) != 0;
    throw tensor_error(tensor, std::string(nan ? "nan" : negative ? "-inf" : "inf") + " at element " +
                                   std::to_string(first + i) + " (weights must be finite)");
  }
}

}  // namespace detail

// Throws, naming the file, the tensor and the first offending element, when a stored value is NaN
// or infinite: one such weight poisons every scale and score computed from it. Checks the stored
// bits, so nothing is converted; integer dtypes have nothing to check. `bytes` are the tensor's
// stored bytes from byte `offset` on (a copy of them will do: loaders check staged chunks).
inline void require_finite(const tensor_view& tensor, std::size_t offset, std::span<const std::byte> bytes) {
  const auto check = [&](auto exponent_mask, auto mantissa_mask) {
    detail::require_finite_bits(tensor, offset / sizeof(exponent_mask), bytes, exponent_mask, mantissa_mask);
  };
  if (tensor.dtype == dtype_bf16) check(std::uint16_t{0x7f80}, std::uint16_t{0x007f});
  if (tensor.dtype == dtype_f16) check(std::uint16_t{0x7c00}, std::uint16_t{0x03ff});
  if (tensor.dtype == dtype_f32) check(std::uint32_t{0x7f800000u}, std::uint32_t{0x007fffffu});
}

inline void require_finite(const tensor_view& tensor) { require_finite(tensor, 0, tensor.bytes); }

// Integer tensors (I32/I64, e.g. token ids of a fixture) as int64 values.
inline std::vector<std::int64_t> to_int64_vector(const tensor_view& tensor) {
  if (tensor.dtype != dtype_i64 && tensor.dtype != dtype_i32) {
    throw detail::tensor_error(tensor, "dtype " + std::string(tensor.dtype.name) + " is not an integer dtype (I32, I64)");
  }
  std::vector<std::int64_t> out(static_cast<std::size_t>(tensor.numel()));
  const auto read = [&](auto value) {  // element by element: the bytes need no alignment
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::memcpy(&value, tensor.bytes.data() + i * sizeof value, sizeof value);
      out[i] = value;
    }
  };
  tensor.dtype == dtype_i64 ? read(std::int64_t{}) : read(std::int32_t{});
  return out;
}

inline std::vector<float> to_float_vector(const tensor_view& tensor) {
  std::vector<float> out(static_cast<std::size_t>(tensor.numel()));
  convert_tensor(tensor, std::span<float>(out));
  return out;
}

inline std::vector<bf16> to_bf16_vector(const tensor_view& tensor) {
  std::vector<bf16> out(static_cast<std::size_t>(tensor.numel()));
  convert_tensor(tensor, std::span<bf16>(out));
  return out;
}

}  // namespace aq
