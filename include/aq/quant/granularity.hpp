// Granularity: which elements of a row-major [rows x cols] matrix share one amax (and scale).
// Rows are output channels (ModelOpt's Linear weight axis 0); blocks run along the input dim.
// Each granularity maps (row, col) to an amax slot with AQ_HD code shared by host and device.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/config.hpp"

namespace aq::quant {

// One amax for the whole tensor; ModelOpt stores it with shape [].
struct per_tensor {
  static constexpr std::string_view name = "per-tensor";
  static constexpr bool depends_on_shape = false;  // any batch shape maps to the one slot
  AQ_HD static constexpr std::int64_t amax_count(std::int64_t /*rows*/, std::int64_t /*cols*/) { return 1; }
  AQ_HD static constexpr std::int64_t amax_index(std::int64_t /*row*/, std::int64_t /*col*/, std::int64_t /*cols*/) {
    return 0;
  }
  static std::vector<std::int64_t> amax_shape(std::int64_t /*rows*/, std::int64_t /*cols*/) { return {}; }
};

// One amax per row (output channel); ModelOpt's axis=0, amax shape [rows, 1].
struct per_channel {
  static constexpr std::string_view name = "per-channel";
  static constexpr bool depends_on_shape = true;
  AQ_HD static constexpr std::int64_t amax_count(std::int64_t rows, std::int64_t /*cols*/) { return rows; }
  AQ_HD static constexpr std::int64_t amax_index(std::int64_t row, std::int64_t /*col*/, std::int64_t /*cols*/) {
    return row;
  }
  static std::vector<std::int64_t> amax_shape(std::int64_t rows, std::int64_t /*cols*/) { return {rows, 1}; }
};

// One amax per Block consecutive columns of one row. ModelOpt pads the last dim with zeros to a
// multiple of Block, so a short last block of a row is its own block (zeros never raise a max);
// amax shape [rows * ceil(cols / Block), 1], slots in row-major block order.
template <int Block>
struct per_block {
  static_assert(Block > 0, "per_block: block size must be positive");
  static constexpr int block_size = Block;
  static constexpr std::string_view name = "per-block";
  static constexpr bool depends_on_shape = true;
  AQ_HD static constexpr std::int64_t blocks_per_row(std::int64_t cols) { return (cols + Block - 1) / Block; }
  AQ_HD static constexpr std::int64_t amax_count(std::int64_t rows, std::int64_t cols) {
    return rows * blocks_per_row(cols);
  }
  AQ_HD static constexpr std::int64_t amax_index(std::int64_t row, std::int64_t col, std::int64_t cols) {
    return row * blocks_per_row(cols) + col / Block;
  }
  static std::vector<std::int64_t> amax_shape(std::int64_t rows, std::int64_t cols) {
    return {amax_count(rows, cols), 1};
  }
};

template <class G>
concept granularity = requires(std::int64_t n) {
  { G::name } -> std::convertible_to<std::string_view>;
  { G::depends_on_shape } -> std::convertible_to<bool>;
  { G::amax_count(n, n) } -> std::same_as<std::int64_t>;
  { G::amax_index(n, n, n) } -> std::same_as<std::int64_t>;
  { G::amax_shape(n, n) } -> std::same_as<std::vector<std::int64_t>>;
};

// Human-readable description, e.g. "per-block(128)".
template <granularity G>
std::string granularity_label() {
  if constexpr (requires { G::block_size; }) {
    return std::string(G::name) + "(" + std::to_string(G::block_size) + ")";
  } else {
    return std::string(G::name);
  }
}

}  // namespace aq::quant
