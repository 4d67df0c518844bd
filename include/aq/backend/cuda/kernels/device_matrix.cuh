// Row-major device matrix views (rows of `cols` elements, `ld` elements apart), the CUDA
// counterpart of aq::matrix_view, plus the element conversions the kernels share: storage is
// float or aq::bf16, arithmetic is always fp32.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "aq/core/bf16.hpp"
#include "aq/core/config.hpp"
#include "aq/core/dtype.hpp"
#include "aq/core/error.hpp"

namespace aq::cuda {

template <class T>
struct device_matrix {
  T* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t ld = 0;

  device_matrix() = default;
  AQ_HD device_matrix(T* d, std::int64_t r, std::int64_t c, std::int64_t l) : data(d), rows(r), cols(c), ld(l) {}
  // A mutable view converts to a const one.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  AQ_HD device_matrix(const device_matrix<U>& m) : data(m.data), rows(m.rows), cols(m.cols), ld(m.ld) {}  // NOLINT

  AQ_HD T* row(std::int64_t r) const { return data + r * ld; }
  AQ_HD T& operator()(std::int64_t r, std::int64_t c) const { return data[r * ld + c]; }
  std::int64_t numel() const { return rows * cols; }
};

// One to_float for host and device code: aq::to_float (core/dtype.hpp), so that translation units
// holding both the kernels and the host IO resolve bf16 -> float to a single function.
using aq::to_float;

template <class T>
AQ_HD inline T from_float(float v);
template <>
AQ_HD inline float from_float<float>(float v) { return v; }
template <>
AQ_HD inline bf16 from_float<bf16>(float v) { return float_to_bf16(v); }

template <class A, class B>
void check_same_shape(const device_matrix<A>& a, const device_matrix<B>& b, const char* what) {
  if (a.rows != b.rows || a.cols != b.cols) {
    throw error(std::string(what) + ": shape [" + std::to_string(b.rows) + ", " + std::to_string(b.cols) +
                "] differs from [" + std::to_string(a.rows) + ", " + std::to_string(a.cols) + "]");
  }
}

template <class T>
void check_view(const device_matrix<T>& m, const char* what) {
  if (m.rows < 0 || m.cols < 0 || m.ld < m.cols || (m.data == nullptr && m.rows * m.cols > 0)) {
    throw error(std::string(what) + ": invalid view [" + std::to_string(m.rows) + ", " + std::to_string(m.cols) +
                "] with ld " + std::to_string(m.ld));
  }
}

// V consecutive elements moved by one aligned load or store (e.g. 16 bytes: 8 bf16, 4 float).
template <class T, int V>
struct alignas(sizeof(T) * V) element_pack {
  T v[V];
};

// Columns c .. c+V-1 of row r (c a multiple of V; the view rows_packed<V>).
template <int V, class T>
AQ_HD inline element_pack<std::remove_const_t<T>, V> load_pack(const device_matrix<T>& m, std::int64_t r,
                                                               std::int64_t c) {
  return *reinterpret_cast<const element_pack<std::remove_const_t<T>, V>*>(m.row(r) + c);
}
template <int V, class T>
AQ_HD inline void store_pack(const device_matrix<T>& m, std::int64_t r, std::int64_t c, const element_pack<T, V>& p) {
  *reinterpret_cast<element_pack<T, V>*>(m.row(r) + c) = p;
}

// Whether every row of m splits into whole aligned packs of V elements.
template <int V, class T>
bool rows_packed(const device_matrix<T>& m) {
  return m.cols % V == 0 && m.ld % V == 0 &&
         reinterpret_cast<std::uintptr_t>(m.data) % sizeof(element_pack<std::remove_const_t<T>, V>) == 0;
}

// Grid size for a grid-stride loop over n elements.
inline unsigned grid_for(std::int64_t n, unsigned block) {
  const std::int64_t blocks = (n + block - 1) / block;
  return static_cast<unsigned>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

}  // namespace aq::cuda
