// A small owning fp32 tensor (shape + contiguous row-major data) and 2-D row-major views.
// The CPU model keeps weights and saved activations in tensors and hands kernels views, so
// kernels never own memory and callers decide what is saved or recomputed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"

namespace aq {

// Rows of `cols` floats, `ld` floats apart (ld >= cols): a matrix or a column block of one.
struct matrix_view {
  float* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t ld = 0;

  float* row(std::int64_t r) const { return data + r * ld; }
  float& operator()(std::int64_t r, std::int64_t c) const { return data[r * ld + c]; }
};

struct const_matrix_view {
  const float* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t ld = 0;

  const_matrix_view() = default;
  const_matrix_view(const float* d, std::int64_t r, std::int64_t c, std::int64_t l) : data(d), rows(r), cols(c), ld(l) {}
  const_matrix_view(const matrix_view& m) : data(m.data), rows(m.rows), cols(m.cols), ld(m.ld) {}  // NOLINT

  const float* row(std::int64_t r) const { return data + r * ld; }
  float operator()(std::int64_t r, std::int64_t c) const { return data[r * ld + c]; }
};

// "[151936, 2560]": the spelling used in every shape message.
inline std::string shape_string(std::span<const std::int64_t> shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

class tensor {
 public:
  tensor() = default;
  explicit tensor(std::vector<std::int64_t> shape, float fill = 0.0f) : shape_(std::move(shape)) {
    data_.assign(static_cast<std::size_t>(count(shape_)), fill);
  }
  tensor(std::initializer_list<std::int64_t> shape) : tensor(std::vector<std::int64_t>(shape)) {}

  static std::int64_t count(const std::vector<std::int64_t>& shape) {
    std::int64_t n = 1;
    for (const std::int64_t extent : shape) {
      if (extent < 0) throw error("tensor: negative extent in shape " + shape_string(shape));
      n *= extent;
    }
    return n;
  }

  const std::vector<std::int64_t>& shape() const { return shape_; }
  std::int64_t dim(std::size_t i) const { return shape_.at(i); }
  std::size_t rank() const { return shape_.size(); }
  std::int64_t numel() const { return static_cast<std::int64_t>(data_.size()); }
  bool empty() const { return data_.empty(); }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  std::vector<float>& storage() { return data_; }
  const std::vector<float>& storage() const { return data_; }

  // Same data, new shape with the same element count.
  void reshape(std::vector<std::int64_t> shape) {
    if (count(shape) != numel()) {
      throw error("tensor: cannot reshape " + shape_string(shape_) + " to " + shape_string(shape));
    }
    shape_ = std::move(shape);
  }

  // All leading dimensions flattened into rows; the last dimension is the columns.
  matrix_view matrix() {
    const std::int64_t cols = shape_.empty() ? 1 : shape_.back();
    return {data(), cols == 0 ? 0 : numel() / cols, cols, cols};
  }
  const_matrix_view matrix() const {
    const std::int64_t cols = shape_.empty() ? 1 : shape_.back();
    return {data(), cols == 0 ? 0 : numel() / cols, cols, cols};
  }

 private:
  std::vector<std::int64_t> shape_;
  std::vector<float> data_;
};

}  // namespace aq
