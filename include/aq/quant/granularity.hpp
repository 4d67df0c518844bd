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

// One amax per row of an activation [tokens x features] matrix: ModelOpt's per-token scaling
// (block_sizes {-1: None}, which it turns into an amax per leading index). Always dynamic.
struct per_token : per_channel {
  static constexpr std::string_view name = "per-token";
};

// One amax per TileRows x TileCols tile of a 2-D matrix (ModelOpt's block_sizes {-1: C, -2: R}).
// Like per_block, the last tiles of a short dim are their own (ModelOpt pads with zeros); amax
// shape [ceil(rows / R), 1, ceil(cols / C), 1], slots in row-major tile order.
template <int TileRows, int TileCols>
struct per_tile {
  static_assert(TileRows > 0 && TileCols > 0, "per_tile: tile sizes must be positive");
  static constexpr int tile_rows = TileRows;
  static constexpr int tile_cols = TileCols;
  static constexpr std::string_view name = "per-tile";
  static constexpr bool depends_on_shape = true;
  AQ_HD static constexpr std::int64_t tiles_per_row(std::int64_t cols) { return (cols + TileCols - 1) / TileCols; }
  AQ_HD static constexpr std::int64_t amax_count(std::int64_t rows, std::int64_t cols) {
    return (rows + TileRows - 1) / TileRows * tiles_per_row(cols);
  }
  AQ_HD static constexpr std::int64_t amax_index(std::int64_t row, std::int64_t col, std::int64_t cols) {
    return row / TileRows * tiles_per_row(cols) + col / TileCols;
  }
  static std::vector<std::int64_t> amax_shape(std::int64_t rows, std::int64_t cols) {
    return {(rows + TileRows - 1) / TileRows, 1, tiles_per_row(cols), 1};
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

// Human-readable description, e.g. "per-block(128)", "per-tile(128x128)".
template <granularity G>
std::string granularity_label() {
  if constexpr (requires { G::tile_rows; }) {
    return std::string(G::name) + "(" + std::to_string(G::tile_rows) + "x" + std::to_string(G::tile_cols) + ")";
  } else if constexpr (requires { G::block_size; }) {
    return std::string(G::name) + "(" + std::to_string(G::block_size) + ")";
  } else {
    return std::string(G::name);
  }
}

}  // namespace aq::quant
