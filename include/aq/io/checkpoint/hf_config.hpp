// Typed access to a Hugging Face config.json: fields read with errors that name the file and the
// dotted field path, size checks in int64 that name the overflowing factor, and a bound on per-layer
// lists from this machine's memory. A model's reader (model/<name>/config_json.hpp) builds on it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

#include "aq/core/error.hpp"
#include "aq/io/json_parser.hpp"
#include "aq/io/json_type_name.hpp"

namespace aq {

namespace detail {

// No width, vocabulary or patch of a transformer comes near 2^24; a larger one is a broken config,
// refused by name before it reaches a product. (Layer counts are bounded by memory instead.)
inline constexpr std::int64_t max_dimension = std::int64_t{1} << 24;

// Typed access to one JSON object, with errors that name the file and the dotted field path.
class json_fields {
 public:
  json_fields(std::string source, std::string prefix, simdjson::dom::object object)
      : source_(std::move(source)), prefix_(std::move(prefix)), object_(object) {}

  [[noreturn]] void fail(std::string_view key, const std::string& message) const {
    throw error(source_ + ": " + prefix_ + std::string(key) + ": " + message);
  }

  std::optional<simdjson::dom::element> find(std::string_view key) const {
    simdjson::dom::element value;
    if (object_.at_key(key).get(value)) return std::nullopt;
    if (value.is_null()) return std::nullopt;  // transformers writes null for "use the default"
    return value;
  }

  simdjson::dom::element require(std::string_view key) const {
    const auto value = find(key);
    if (!value) fail(key, "missing");
    return *value;
  }

  static std::string_view type_name(simdjson::dom::element value) { return io::json_type_name(value.type()); }

  std::int64_t as_int(std::string_view key, simdjson::dom::element value) const {
    std::int64_t out = 0;
    if (value.is_uint64() && !value.is_int64()) {  // 2^63 .. 2^64-1: an integer, but not an int64
      fail(key, std::to_string(std::uint64_t(value.get_uint64())) + " out of range for int64 (at most " +
                    std::to_string(std::numeric_limits<std::int64_t>::max()) + ")");
    }
    if (value.get_int64().get(out)) fail(key, "is " + std::string(type_name(value)) + ", expected an integer");
    return out;
  }

  std::int64_t positive_int(std::string_view key) const {
    const std::int64_t value = as_int(key, require(key));
    if (value <= 0) fail(key, "must be positive, got " + std::to_string(value));
    return value;
  }

  std::int64_t positive_int_or(std::string_view key, std::int64_t fallback) const {
    return find(key) ? positive_int(key) : fallback;
  }

  // A width, head count, vocabulary or patch size: positive and at most max_dimension.
  std::int64_t dimension(std::string_view key) const {
    const std::int64_t value = positive_int(key);
    if (value > max_dimension) fail(key, std::to_string(value) + " too large (at most " + std::to_string(max_dimension) + ")");
    return value;
  }

  std::int64_t dimension_or(std::string_view key, std::int64_t fallback) const {
    return find(key) ? dimension(key) : fallback;
  }

  std::int64_t int_or(std::string_view key, std::int64_t fallback) const {
    const auto value = find(key);
    return value ? as_int(key, *value) : fallback;
  }

  double number(std::string_view key, simdjson::dom::element value) const {
    double out = 0;
    if (value.get_double().get(out)) {  // simdjson converts integers too
      fail(key, "is " + std::string(type_name(value)) + ", expected a number");
    }
    return out;
  }

  double positive_number(std::string_view key) const {
    const double value = number(key, require(key));
    if (!(value > 0)) fail(key, "must be positive, got " + std::to_string(value));
    return value;
  }

  double positive_number_or(std::string_view key, double fallback) const {
    return find(key) ? positive_number(key) : fallback;
  }

  std::optional<bool> boolean(std::string_view key) const {
    const auto value = find(key);
    if (!value) return std::nullopt;
    bool out = false;
    if (value->get_bool().get(out)) fail(key, "is " + std::string(type_name(*value)) + ", expected true or false");
    return out;
  }

  std::string string_or(std::string_view key, std::string_view fallback) const {
    const auto value = find(key);
    if (!value) return std::string(fallback);
    std::string_view out;
    if (value->get_string().get(out)) fail(key, "is " + std::string(type_name(*value)) + ", expected a string");
    return std::string(out);
  }

  std::vector<std::int64_t> int_list(std::string_view key, simdjson::dom::element value) const {
    simdjson::dom::array array;
    if (value.get_array().get(array)) fail(key, "is " + std::string(type_name(value)) + ", expected an array of integers");
    std::vector<std::int64_t> out;
    for (const auto item : array) {
      std::int64_t v = 0;
      if (item.get_int64().get(v)) fail(key, "holds " + std::string(type_name(item)) + ", expected integers");
      out.push_back(v);
    }
    return out;
  }

  json_fields object(std::string_view key) const {
    const simdjson::dom::element value = require(key);
    simdjson::dom::object sub;
    if (value.get_object().get(sub)) fail(key, "is " + std::string(type_name(value)) + ", expected an object");
    return json_fields(source_, prefix_ + std::string(key) + ".", sub);
  }

  std::optional<json_fields> object_if_present(std::string_view key) const {
    if (!find(key)) return std::nullopt;
    return object(key);
  }

 private:
  std::string source_;
  std::string prefix_;
  simdjson::dom::object object_;
};

// A field aq reads but implements one value of: any other value would be parsed and then
// silently ignored by the model code, so it is refused by name.
inline void require_string(const json_fields& f, std::string_view key, std::string_view implemented,
                           std::string_view fallback) {
  const std::string value = f.string_or(key, fallback);
  if (value != implemented) {
    f.fail(key, "\"" + value + "\" not supported (" + std::string(implemented) + ")");
  }
}

// Element counts and sizes the config implies, in int64 with overflow checks, before anything is
// sized from them. A product that overflows names its largest factor.
struct size_factor {
  std::string_view key;  // field in `fields`, or empty for a constant
  std::int64_t value;
};

inline std::int64_t checked_product(const json_fields& fields, std::string_view what,
                                    std::initializer_list<size_factor> factors) {
  std::int64_t out = 1;
  bool overflow = false;
  for (const size_factor& factor : factors) overflow = overflow || __builtin_mul_overflow(out, factor.value, &out);
  if (!overflow) return out;
  const size_factor* largest = nullptr;
  std::string dims;
  for (const size_factor& factor : factors) {
    if (!factor.key.empty() && (largest == nullptr || factor.value > largest->value)) largest = &factor;
    dims += (dims.empty() ? "" : " x ") + std::to_string(factor.value);
  }
  fields.fail(largest->key, std::to_string(largest->value) + " too large: " + std::string(what) + " (" + dims +
                                ") overflows int64");
}

inline std::int64_t checked_sum(const json_fields& fields, std::string_view key, std::string_view what,
                                std::initializer_list<std::int64_t> terms) {
  std::int64_t out = 0;
  for (const std::int64_t term : terms) {
    if (__builtin_add_overflow(out, term, &out)) fields.fail(key, "too large: " + std::string(what) + " overflows int64");
  }
  return out;
}

// Bytes the machine can give at most (physical memory); 0 when unknown.
inline std::uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) : 0;
}

// Per-layer (per-block) lists are built from the config before any checkpoint is read (parameter
// names and shapes, quantizable modules): a layer count whose lists alone would need more than a
// quarter of physical memory is refused by name instead of exhausting it.
inline void check_list_size(const json_fields& fields, std::string_view key, std::int64_t count,
                            std::int64_t entries_per_item, std::string_view item) {
  constexpr std::uint64_t bytes_per_entry = 256;  // a name, a shape and bookkeeping, generously
  const std::uint64_t limit = physical_memory_bytes() / 4;
  if (limit == 0) return;
  const std::uint64_t most = limit / bytes_per_entry / static_cast<std::uint64_t>(entries_per_item);
  if (static_cast<std::uint64_t>(count) > most) {
    fields.fail(key, std::to_string(count) + " " + std::string(item) + " too many: at most " + std::to_string(most) +
                         " fit the per-" + std::string(item.substr(0, item.size() - 1)) +
                         " lists in a quarter of this machine's memory (" + std::to_string(limit * 4 >> 20) + " MiB)");
  }
}

}  // namespace detail

// The config.json of `path`: the file itself, or the one in a model directory.
inline std::filesystem::path config_json_file(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec) ? path / "config.json" : path;
}

}  // namespace aq
