// Scaled dot-product attention with GQA over independent segments (text: one per batch row,
// causal + key padding mask; vision: one per image, unmasked), and its input gradient. The
// backward recomputes the probabilities from the saved log-sum-exp rows (no T×T storage).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"

namespace aq::cpu {

// What a query row with no allowed key (a left-padding slot under a causal + padding mask) gets.
// transformers' eager path adds the finite dtype minimum to every score, so such a row attends
// uniformly to all keys of its segment (and autograd sends gradients through that); torch's SDPA
// returns zeros for it and no gradient.
enum class masked_row_policy { attend_all, zero };

struct attention_segment {
  std::int64_t start = 0;   // first row in q/k/v
  std::int64_t length = 0;  // rows
};

struct attention_config {
  std::int64_t heads = 0;
  std::int64_t kv_heads = 0;
  std::int64_t head_dim = 0;
  float scale = 1.0f;
  bool causal = false;
  const std::uint8_t* key_valid = nullptr;  // per row, 0 = masked key (padding); nullptr = all valid
  masked_row_policy masked_rows = masked_row_policy::attend_all;
};

namespace detail {

using attn_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using attn_cmap = Eigen::Map<const attn_matrix, 0, Eigen::OuterStride<>>;
using attn_map = Eigen::Map<attn_matrix, 0, Eigen::OuterStride<>>;

inline void check_attention(const attention_config& c, const const_matrix_view& q, const const_matrix_view& k,
                            const const_matrix_view& v) {
  if (c.heads <= 0 || c.kv_heads <= 0 || c.heads % c.kv_heads != 0 || q.cols != c.heads * c.head_dim ||
      k.cols != c.kv_heads * c.head_dim || v.cols != k.cols || k.rows != q.rows || v.rows != q.rows) {
    throw error("attention: q/k/v shapes do not match heads " + std::to_string(c.heads) + ", kv_heads " +
                std::to_string(c.kv_heads) + ", head_dim " + std::to_string(c.head_dim));
  }
}

// Scores of one head in one segment, with masked entries flagged; returns per row whether any
// key is allowed.
inline void scores(const attention_config& c, const attention_segment& seg, const attn_cmap& qh,
                   const attn_cmap& kg, attn_matrix& s, std::vector<std::uint8_t>& allowed_any) {
  s.noalias() = qh * kg.transpose();
  s *= c.scale;
  const float masked = -std::numeric_limits<float>::infinity();
  allowed_any.assign(static_cast<std::size_t>(seg.length), 0);
  for (std::int64_t i = 0; i < seg.length; ++i) {
    for (std::int64_t j = 0; j < seg.length; ++j) {
      const bool ok = (!c.causal || j <= i) && (c.key_valid == nullptr || c.key_valid[seg.start + j] != 0);
      if (!ok) {
        s(i, j) = masked;
      } else {
        allowed_any[static_cast<std::size_t>(i)] = 1;
      }
    }
  }
}

}  // namespace detail

// o [rows, heads·dim]; lse [heads, rows] (log-sum-exp of each row's scores, +inf for a row with
// no allowed key) is what the backward needs besides q, k, v, o.
inline void attention_forward(const attention_config& c, const std::vector<attention_segment>& segments,
                              const const_matrix_view& q, const const_matrix_view& k, const const_matrix_view& v,
                              const matrix_view& o, float* lse) {
  detail::check_attention(c, q, k, v);
  const std::int64_t d = c.head_dim;
  const std::int64_t group = c.heads / c.kv_heads;
  const auto tasks = static_cast<std::int64_t>(segments.size()) * c.heads;
  default_thread_pool().parallel_for(tasks, 1, [&](std::int64_t t0, std::int64_t t1) {
    detail::attn_matrix s;
    std::vector<std::uint8_t> any;
    for (std::int64_t t = t0; t < t1; ++t) {
      const attention_segment& seg = segments[static_cast<std::size_t>(t / c.heads)];
      const std::int64_t h = t % c.heads;
      const std::int64_t g = h / group;
      const std::int64_t L = seg.length;
      if (L == 0) continue;
      detail::attn_cmap qh(q.row(seg.start) + h * d, L, d, Eigen::OuterStride<>(q.ld));
      detail::attn_cmap kg(k.row(seg.start) + g * d, L, d, Eigen::OuterStride<>(k.ld));
      detail::attn_cmap vg(v.row(seg.start) + g * d, L, d, Eigen::OuterStride<>(v.ld));
      detail::attn_map oh(o.row(seg.start) + h * d, L, d, Eigen::OuterStride<>(o.ld));
      detail::scores(c, seg, qh, kg, s, any);
      for (std::int64_t i = 0; i < L; ++i) {
        float* row = s.data() + i * L;
        float* row_lse = lse + h * q.rows + seg.start + i;
        if (any[static_cast<std::size_t>(i)] == 0) {
          const float p = c.masked_rows == masked_row_policy::attend_all ? 1.0f / static_cast<float>(L) : 0.0f;
          for (std::int64_t j = 0; j < L; ++j) row[j] = p;
          *row_lse = std::numeric_limits<float>::infinity();
          continue;
        }
        float m = -std::numeric_limits<float>::infinity();
        for (std::int64_t j = 0; j < L; ++j) m = std::max(m, row[j]);
        float sum = 0.0f;
        for (std::int64_t j = 0; j < L; ++j) {
          row[j] = std::exp(row[j] - m);
          sum += row[j];
        }
        const float inv = 1.0f / sum;
        for (std::int64_t j = 0; j < L; ++j) row[j] *= inv;
        *row_lse = m + std::log(sum);
      }
      oh.noalias() = s * vg;
    }
  });
}

// dq [rows, heads·dim], dk/dv [rows, kv_heads·dim] are overwritten.
inline void attention_backward(const attention_config& c, const std::vector<attention_segment>& segments,
                               const const_matrix_view& q, const const_matrix_view& k, const const_matrix_view& v,
                               const const_matrix_view& o, const float* lse, const const_matrix_view& d_o,
                               const matrix_view& dq, const matrix_view& dk, const matrix_view& dv) {
  detail::check_attention(c, q, k, v);
  const std::int64_t d = c.head_dim;
  const std::int64_t group = c.heads / c.kv_heads;
  const auto tasks = static_cast<std::int64_t>(segments.size()) * c.kv_heads;
  default_thread_pool().parallel_for(tasks, 1, [&](std::int64_t t0, std::int64_t t1) {
    detail::attn_matrix p;
    detail::attn_matrix dp;
    std::vector<std::uint8_t> any;
    Eigen::VectorXf delta;
    for (std::int64_t t = t0; t < t1; ++t) {
      const attention_segment& seg = segments[static_cast<std::size_t>(t / c.kv_heads)];
      const std::int64_t g = t % c.kv_heads;
      const std::int64_t L = seg.length;
      if (L == 0) continue;
      detail::attn_cmap kg(k.row(seg.start) + g * d, L, d, Eigen::OuterStride<>(k.ld));
      detail::attn_cmap vg(v.row(seg.start) + g * d, L, d, Eigen::OuterStride<>(v.ld));
      detail::attn_map dkg(dk.row(seg.start) + g * d, L, d, Eigen::OuterStride<>(dk.ld));
      detail::attn_map dvg(dv.row(seg.start) + g * d, L, d, Eigen::OuterStride<>(dv.ld));
      dkg.setZero();
      dvg.setZero();
      for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
        detail::attn_cmap qh(q.row(seg.start) + h * d, L, d, Eigen::OuterStride<>(q.ld));
        detail::attn_cmap oh(o.row(seg.start) + h * d, L, d, Eigen::OuterStride<>(o.ld));
        detail::attn_cmap doh(d_o.row(seg.start) + h * d, L, d, Eigen::OuterStride<>(d_o.ld));
        detail::attn_map dqh(dq.row(seg.start) + h * d, L, d, Eigen::OuterStride<>(dq.ld));
        detail::scores(c, seg, qh, kg, p, any);
        for (std::int64_t i = 0; i < L; ++i) {
          float* row = p.data() + i * L;
          if (any[static_cast<std::size_t>(i)] == 0) {
            const float pv = c.masked_rows == masked_row_policy::attend_all ? 1.0f / static_cast<float>(L) : 0.0f;
            for (std::int64_t j = 0; j < L; ++j) row[j] = pv;
            continue;
          }
          const float l = lse[h * q.rows + seg.start + i];
          for (std::int64_t j = 0; j < L; ++j) row[j] = std::exp(row[j] - l);
        }
        dvg.noalias() += p.transpose() * doh;
        dp.noalias() = doh * vg.transpose();
        delta = (doh.array() * oh.array()).rowwise().sum().matrix();
        for (std::int64_t i = 0; i < L; ++i) {
          for (std::int64_t j = 0; j < L; ++j) dp(i, j) = p(i, j) * (dp(i, j) - delta(i));
        }
        dqh.noalias() = (dp * kg) * c.scale;
        dkg.noalias() += (dp.transpose() * qh) * c.scale;
      }
    }
  });
}

}  // namespace aq::cpu
