// Scaled dot-product attention with GQA over independent segments (text: one per batch row,
// causal + key padding mask; vision: one per image, unmasked), and its input gradient. Computed in
// tiles, flash-attention style: no [rows x rows] score matrix is ever stored, so memory is linear
// in the sequence length: a worker holds O(tile^2 + tile * head_dim) floats, the backward adds
// one float per row and head (D_i). A 16k-patch image no longer needs 1 GiB of scores per thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "aq/backend/cpu/eigen.hpp"

#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/core/thread_pool.hpp"
#include "aq/model/attention_config.hpp"

namespace aq::cpu {

// Defined once for both backends in model/attention_config.hpp (tensor_cores is CUDA-only).
using aq::attention_config;
using aq::masked_row_policy;

using aq::attention_segment;

// Tile sizes: a worker holds one query tile's [q_tile x k_tile] scores and [q_tile x head_dim]
// accumulators. Every output row is reduced over key tiles in one fixed order by one worker, so
// results do not depend on the thread count.
inline constexpr std::int64_t attention_query_tile = 64;
inline constexpr std::int64_t attention_key_tile = 128;

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

// One unit of work: rows [start, start + length) of one segment, for one (query or kv) head.
struct attn_tile_task {
  std::int64_t segment = 0;
  std::int64_t head = 0;
  std::int64_t start = 0;  // relative to the segment
  std::int64_t length = 0;
};

inline std::vector<attn_tile_task> tile_tasks(const std::vector<attention_segment>& segments, std::int64_t heads,
                                              std::int64_t tile) {
  std::vector<attn_tile_task> tasks;
  for (std::size_t s = 0; s < segments.size(); ++s) {
    const std::int64_t L = segments[s].length;
    for (std::int64_t h = 0; h < heads; ++h) {
      for (std::int64_t r = 0; r < L; r += tile) {
        tasks.push_back({static_cast<std::int64_t>(s), h, r, std::min(tile, L - r)});
      }
    }
  }
  return tasks;
}

// Per row: 1 when the query has no allowed key (every key masked or causally later).
inline std::vector<std::uint8_t> rows_without_keys(const attention_config& c,
                                                   const std::vector<attention_segment>& segments, std::int64_t rows) {
  std::vector<std::uint8_t> none(static_cast<std::size_t>(rows), 0);
  if (c.key_valid == nullptr) return none;
  for (const attention_segment& seg : segments) {
    bool any_in_segment = false;
    for (std::int64_t j = 0; j < seg.length; ++j) any_in_segment |= c.key_valid[seg.start + j] != 0;
    bool any_so_far = false;
    for (std::int64_t i = 0; i < seg.length; ++i) {
      any_so_far |= c.key_valid[seg.start + i] != 0;
      none[static_cast<std::size_t>(seg.start + i)] = (c.causal ? any_so_far : any_in_segment) ? 0 : 1;
    }
  }
  return none;
}

// Whether a query tile ending before row i1 can put probability on a key tile starting at j0
// (segment-relative): under a causal mask only if j0 <= i1 - 1, unless one of its rows has no
// allowed key under attend_all (such a row attends to every key).
inline bool tile_needed(const attention_config& c, std::int64_t i1, std::int64_t j0, bool has_keyless_attend_all) {
  return !c.causal || j0 <= i1 - 1 || has_keyless_attend_all;
}

// Scaled scores of a [qi x kj] tile with masked entries at -inf. Rows without keys get 0 under
// attend_all (uniform probabilities, as the finite minimum added to every score gives).
inline void tile_scores(const attention_config& c, const attention_segment& seg, std::int64_t i0, std::int64_t j0,
                        const attn_cmap& qt, const attn_cmap& kt, const std::uint8_t* keyless, attn_matrix& s) {
  s.noalias() = qt * kt.transpose();
  s *= c.scale;
  if (c.key_valid == nullptr && (!c.causal || j0 + s.cols() - 1 <= i0)) return;  // nothing masked here
  const float masked = -std::numeric_limits<float>::infinity();
  for (std::int64_t r = 0; r < s.rows(); ++r) {
    const std::int64_t i = i0 + r;
    float* row = s.data() + r * s.cols();
    if (keyless[seg.start + i] != 0) {
      std::fill_n(row, s.cols(), c.masked_rows == masked_row_policy::attend_all ? 0.0f : masked);
      continue;
    }
    for (std::int64_t x = 0; x < s.cols(); ++x) {
      const std::int64_t j = j0 + x;
      const bool ok = (!c.causal || j <= i) && (c.key_valid == nullptr || c.key_valid[seg.start + j] != 0);
      if (!ok) row[x] = masked;
    }
  }
}

// Probabilities of a score tile from the saved log-sum-exp rows (backward): exp(s - lse), the
// keyless rows uniform 1/L (attend_all) or 0 (zero).
inline void tile_probabilities(const attention_config& c, const attention_segment& seg, std::int64_t i0,
                               const float* lse_rows, const std::uint8_t* keyless, attn_matrix& s) {
  for (std::int64_t r = 0; r < s.rows(); ++r) {
    float* row = s.data() + r * s.cols();
    if (keyless[seg.start + i0 + r] != 0) {
      const float p = c.masked_rows == masked_row_policy::attend_all ? 1.0f / static_cast<float>(seg.length) : 0.0f;
      std::fill_n(row, s.cols(), p);
      continue;
    }
    const float l = lse_rows[i0 + r];
    for (std::int64_t x = 0; x < s.cols(); ++x) row[x] = std::exp(row[x] - l);
  }
}

inline bool any_keyless_attend_all(const attention_config& c, const std::uint8_t* keyless, std::int64_t first,
                                   std::int64_t count) {
  if (c.masked_rows != masked_row_policy::attend_all) return false;
  return std::any_of(keyless + first, keyless + first + count, [](std::uint8_t x) { return x != 0; });
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
  const std::vector<std::uint8_t> keyless = detail::rows_without_keys(c, segments, q.rows);
  const std::vector<detail::attn_tile_task> tasks = detail::tile_tasks(segments, c.heads, attention_query_tile);
  const float inf = std::numeric_limits<float>::infinity();
  default_thread_pool().parallel_for(static_cast<std::int64_t>(tasks.size()), 1, [&](std::int64_t t0, std::int64_t t1) {
    detail::attn_matrix s, acc;
    Eigen::VectorXf m, l, alpha;
    for (std::int64_t t = t0; t < t1; ++t) {
      const detail::attn_tile_task& task = tasks[static_cast<std::size_t>(t)];
      const attention_segment& seg = segments[static_cast<std::size_t>(task.segment)];
      const std::int64_t h = task.head, g = h / group, i0 = task.start, bq = task.length;
      const std::int64_t row0 = seg.start + i0;
      detail::attn_cmap qt(q.row(row0) + h * d, bq, d, Eigen::OuterStride<>(q.ld));
      const bool wide = detail::any_keyless_attend_all(c, keyless.data(), row0, bq);
      acc.setZero(bq, d);
      m.setConstant(bq, -inf);
      l.setZero(bq);
      alpha.resize(bq);
      for (std::int64_t j0 = 0; j0 < seg.length; j0 += attention_key_tile) {
        if (!detail::tile_needed(c, i0 + bq, j0, wide)) break;
        const std::int64_t bk = std::min(attention_key_tile, seg.length - j0);
        detail::attn_cmap kt(k.row(seg.start + j0) + g * d, bk, d, Eigen::OuterStride<>(k.ld));
        detail::attn_cmap vt(v.row(seg.start + j0) + g * d, bk, d, Eigen::OuterStride<>(v.ld));
        s.resize(bq, bk);
        detail::tile_scores(c, seg, i0, j0, qt, kt, keyless.data(), s);
        // Online softmax: rescale what earlier key tiles added by exp(old max - new max).
        for (std::int64_t r = 0; r < bq; ++r) {
          float* row = s.data() + r * bk;
          float mt = -inf;
          for (std::int64_t x = 0; x < bk; ++x) mt = std::max(mt, row[x]);
          const float m_new = std::max(m(r), mt);
          if (m_new == -inf) {  // nothing allowed yet in this row
            std::fill_n(row, bk, 0.0f);
            alpha(r) = 1.0f;
            continue;
          }
          float sum = 0.0f;
          for (std::int64_t x = 0; x < bk; ++x) {
            row[x] = std::exp(row[x] - m_new);
            sum += row[x];
          }
          alpha(r) = std::exp(m(r) - m_new);
          l(r) = l(r) * alpha(r) + sum;
          m(r) = m_new;
        }
        acc.array().colwise() *= alpha.array();
        acc.noalias() += s * vt;
      }
      detail::attn_map ot(o.row(row0) + h * d, bq, d, Eigen::OuterStride<>(o.ld));
      for (std::int64_t r = 0; r < bq; ++r) {
        float* row_lse = lse + h * q.rows + row0 + r;
        if (keyless[static_cast<std::size_t>(row0 + r)] != 0 || l(r) == 0.0f) {
          // attend_all: acc is the plain sum of v over the segment (all scores 0, m = 0).
          if (c.masked_rows == masked_row_policy::attend_all && l(r) > 0.0f) {
            ot.row(r) = acc.row(r) / l(r);
          } else {
            ot.row(r).setZero();
          }
          *row_lse = inf;
          continue;
        }
        ot.row(r) = acc.row(r) * (1.0f / l(r));
        *row_lse = m(r) + std::log(l(r));
      }
    }
  });
}

// dq [rows, heads·dim], dk/dv [rows, kv_heads·dim] are overwritten. Two tiled passes recompute
// the probabilities from lse: one over query tiles (dq), one over key tiles (dk, dv), so each
// gradient row is again reduced by one worker in a fixed order. D_i = dO_i · O_i replaces the
// row sums of P ∘ dP.
inline void attention_backward(const attention_config& c, const std::vector<attention_segment>& segments,
                               const const_matrix_view& q, const const_matrix_view& k, const const_matrix_view& v,
                               const const_matrix_view& o, const float* lse, const const_matrix_view& d_o,
                               const matrix_view& dq, const matrix_view& dk, const matrix_view& dv) {
  detail::check_attention(c, q, k, v);
  const std::int64_t d = c.head_dim;
  const std::int64_t group = c.heads / c.kv_heads;
  const std::int64_t rows = q.rows;
  const std::vector<std::uint8_t> keyless = detail::rows_without_keys(c, segments, rows);
  std::vector<float> delta(static_cast<std::size_t>(c.heads * rows));
  default_thread_pool().parallel_for(rows, 64, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t i = r0; i < r1; ++i) {
      for (std::int64_t h = 0; h < c.heads; ++h) {
        float s = 0.0f;
        for (std::int64_t e = 0; e < d; ++e) s += d_o(i, h * d + e) * o(i, h * d + e);
        delta[static_cast<std::size_t>(h * rows + i)] = s;
      }
    }
  });

  // dq: per query tile, stream the key tiles.
  const std::vector<detail::attn_tile_task> q_tasks = detail::tile_tasks(segments, c.heads, attention_query_tile);
  default_thread_pool().parallel_for(static_cast<std::int64_t>(q_tasks.size()), 1, [&](std::int64_t t0, std::int64_t t1) {
    detail::attn_matrix p, dp, acc;
    for (std::int64_t t = t0; t < t1; ++t) {
      const detail::attn_tile_task& task = q_tasks[static_cast<std::size_t>(t)];
      const attention_segment& seg = segments[static_cast<std::size_t>(task.segment)];
      const std::int64_t h = task.head, g = h / group, i0 = task.start, bq = task.length;
      const std::int64_t row0 = seg.start + i0;
      detail::attn_cmap qt(q.row(row0) + h * d, bq, d, Eigen::OuterStride<>(q.ld));
      detail::attn_cmap dout(d_o.row(row0) + h * d, bq, d, Eigen::OuterStride<>(d_o.ld));
      const float* lse_seg = lse + h * rows + seg.start;
      const float* delta_rows = delta.data() + h * rows + row0;
      const bool wide = detail::any_keyless_attend_all(c, keyless.data(), row0, bq);
      acc.setZero(bq, d);
      for (std::int64_t j0 = 0; j0 < seg.length; j0 += attention_key_tile) {
        if (!detail::tile_needed(c, i0 + bq, j0, wide)) break;
        const std::int64_t bk = std::min(attention_key_tile, seg.length - j0);
        detail::attn_cmap kt(k.row(seg.start + j0) + g * d, bk, d, Eigen::OuterStride<>(k.ld));
        detail::attn_cmap vt(v.row(seg.start + j0) + g * d, bk, d, Eigen::OuterStride<>(v.ld));
        p.resize(bq, bk);
        detail::tile_scores(c, seg, i0, j0, qt, kt, keyless.data(), p);
        detail::tile_probabilities(c, seg, i0, lse_seg, keyless.data(), p);
        dp.noalias() = dout * vt.transpose();
        for (std::int64_t r = 0; r < bq; ++r) {
          for (std::int64_t x = 0; x < bk; ++x) dp(r, x) = p(r, x) * (dp(r, x) - delta_rows[r]);
        }
        acc.noalias() += dp * kt;
      }
      detail::attn_map dqt(dq.row(row0) + h * d, bq, d, Eigen::OuterStride<>(dq.ld));
      dqt = acc * c.scale;
    }
  });

  // dk, dv: per key tile of a kv head, stream the query tiles of every head in its group.
  const std::vector<detail::attn_tile_task> k_tasks = detail::tile_tasks(segments, c.kv_heads, attention_key_tile);
  default_thread_pool().parallel_for(static_cast<std::int64_t>(k_tasks.size()), 1, [&](std::int64_t t0, std::int64_t t1) {
    detail::attn_matrix p, dp, dk_acc, dv_acc;
    for (std::int64_t t = t0; t < t1; ++t) {
      const detail::attn_tile_task& task = k_tasks[static_cast<std::size_t>(t)];
      const attention_segment& seg = segments[static_cast<std::size_t>(task.segment)];
      const std::int64_t g = task.head, j0 = task.start, bk = task.length;
      detail::attn_cmap kt(k.row(seg.start + j0) + g * d, bk, d, Eigen::OuterStride<>(k.ld));
      detail::attn_cmap vt(v.row(seg.start + j0) + g * d, bk, d, Eigen::OuterStride<>(v.ld));
      dk_acc.setZero(bk, d);
      dv_acc.setZero(bk, d);
      for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
        const float* lse_seg = lse + h * rows + seg.start;
        for (std::int64_t i0 = 0; i0 < seg.length; i0 += attention_query_tile) {
          const std::int64_t bq = std::min(attention_query_tile, seg.length - i0);
          const std::int64_t row0 = seg.start + i0;
          const bool wide = detail::any_keyless_attend_all(c, keyless.data(), row0, bq);
          if (!detail::tile_needed(c, i0 + bq, j0, wide)) continue;
          detail::attn_cmap qt(q.row(row0) + h * d, bq, d, Eigen::OuterStride<>(q.ld));
          detail::attn_cmap dout(d_o.row(row0) + h * d, bq, d, Eigen::OuterStride<>(d_o.ld));
          const float* delta_rows = delta.data() + h * rows + row0;
          p.resize(bq, bk);
          detail::tile_scores(c, seg, i0, j0, qt, kt, keyless.data(), p);
          detail::tile_probabilities(c, seg, i0, lse_seg, keyless.data(), p);
          dv_acc.noalias() += p.transpose() * dout;
          dp.noalias() = dout * vt.transpose();
          for (std::int64_t r = 0; r < bq; ++r) {
            for (std::int64_t x = 0; x < bk; ++x) dp(r, x) = p(r, x) * (dp(r, x) - delta_rows[r]);
          }
          dk_acc.noalias() += dp.transpose() * qt;
        }
      }
      detail::attn_map dkt(dk.row(seg.start + j0) + g * d, bk, d, Eigen::OuterStride<>(dk.ld));
      detail::attn_map dvt(dv.row(seg.start + j0) + g * d, bk, d, Eigen::OuterStride<>(dv.ld));
      dkt = dk_acc * c.scale;
      dvt = dv_acc;
    }
  });
}

}  // namespace aq::cpu
