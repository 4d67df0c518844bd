// What a Hugging Face config.json reader checks beyond field types (io/json_field.hpp): dimensions,
// implemented-only values, size checks in int64 that name the overflowing factor, and a bound on
// per-layer lists from this machine's memory. A model's reader (model/<name>/config_json.hpp) builds on it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <system_error>

#include <unistd.h>

#include "aq/io/json_field.hpp"

namespace aq {

namespace detail {

// No width, vocabulary or patch of a transformer comes near 2^24; a larger one is a broken config,
// refused by name before it reaches a product. (Layer counts are bounded by memory instead.)
inline constexpr std::int64_t max_dimension = std::int64_t{1} << 24;

// A width, head count, vocabulary or patch size: positive and at most max_dimension.
inline std::int64_t dimension(const io::json_field& field) {
  const std::int64_t value = field.positive_integer();
  if (value > max_dimension) {
    field.fail(std::to_string(value) + " too large (at most " + std::to_string(max_dimension) + ")");
  }
  return value;
}

// A field aq reads but implements one value of (also its default): any other value would be
// parsed and then silently ignored by the model code, so it is refused by name.
inline void require_string(const io::json_field& f, std::string_view key, std::string_view implemented) {
  const std::string value(f.value_or(key, implemented, &io::json_field::string));
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

inline std::int64_t checked_product(const io::json_field& fields, std::string_view what,
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

inline std::int64_t checked_sum(const io::json_field& fields, std::string_view key, std::string_view what,
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
inline void check_list_size(const io::json_field& fields, std::string_view key, std::int64_t count,
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
