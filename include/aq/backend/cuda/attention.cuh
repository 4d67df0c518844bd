// Scaled dot-product attention on the GPU, the counterpart of backend/cpu/attention.hpp: GQA over
// independent segments (cu_seqlens), causal + key-padding mask, both masked-row policies, a tiled
// online-softmax forward that saves the log-sum-exp rows, and the input-gradient backward.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "aq/backend/cuda/check.hpp"
#include "aq/backend/cuda/device_matrix.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"

namespace aq::cuda {

// Same meaning as cpu::masked_row_policy: a query row with no allowed key attends uniformly to
// every key of its segment (transformers' eager path) or yields zeros and no gradient (SDPA).
enum class masked_row_policy { attend_all, zero };

struct attention_config {
  std::int64_t heads = 0;
  std::int64_t kv_heads = 0;
  std::int64_t head_dim = 0;  // 16, 32, 64 or 128
  float scale = 1.0f;
  bool causal = false;
  const std::uint8_t* key_valid = nullptr;  // device, per row, 0 = padding key; nullptr = all valid
  masked_row_policy masked_rows = masked_row_policy::attend_all;
  // bf16 storage only: tile products on the tensor cores (bf16 P and dS, as FlashAttention-2)
  // instead of fp32 CUDA-core math; needs 4-byte aligned rows (even ld, aligned base pointers).
  bool tensor_cores = false;
};

// Segments as consecutive row ranges: segment s is rows [cu_seqlens[s], cu_seqlens[s+1]).
// cu_seqlens lives on the device; max_length (host) sizes the grid.
struct attention_segments {
  const int* cu_seqlens = nullptr;
  int count = 0;
  int max_length = 0;
};

namespace detail {

// 128 threads as 16 × 8: a thread owns rows ty·4 + i (i < 4) of a 64-row tile and columns
// tx + 8j of a 32-column tile or of the head dimension, so each row's partial results sit in
// 8 consecutive lanes and reduce with three shuffles.
inline constexpr int attn_threads = 128;
inline constexpr int attn_rows = 64;  // row tile (queries; keys in the dK/dV kernel)
inline constexpr int attn_cols = 32;  // column tile (keys; queries in the dK/dV kernel)

struct attn_args {
  const int* cu_seqlens;
  const std::uint8_t* key_valid;
  std::int64_t rows;  // all rows of q (the lse/delta row stride)
  int heads;
  int group;  // heads / kv_heads
  float scale;
  bool causal;
  bool attend_all;
};

template <int D>
struct attn_smem {
  static constexpr int ld = D + 1;  // odd stride: tile rows land on distinct banks
  static constexpr int ldp = attn_cols + 1;
};

// Copies rows [r0, r0+n) (n ≤ tile rows; the rest zero) of one head's columns into a fp32 tile.
template <int D, class T>
__device__ inline void attn_load_tile(float* dst, int tile_rows, const T* src, std::int64_t ld, std::int64_t col0,
                                      std::int64_t r0, int n) {
  for (int idx = threadIdx.x; idx < tile_rows * D; idx += attn_threads) {
    const int r = idx / D;
    const int d = idx % D;
    dst[r * attn_smem<D>::ld + d] = r < n ? to_float(src[(r0 + r) * ld + col0 + d]) : 0.0f;
  }
}

// acc[i][j] = Σ_k A[ty·4+i][k] · B[tx+8j][k] (A: row tile, B: column tile, both D wide).
template <int D>
__device__ inline void attn_dot(const float* a, const float* b, float (&acc)[4][4]) {
  const int ty = threadIdx.x / 8;
  const int tx = threadIdx.x % 8;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
#pragma unroll 8
  for (int k = 0; k < D; ++k) {
    float av[4], bv[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) av[i] = a[(ty * 4 + i) * attn_smem<D>::ld + k];
#pragma unroll
    for (int j = 0; j < 4; ++j) bv[j] = b[(tx + 8 * j) * attn_smem<D>::ld + k];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

// acc[i][j] += Σ_c P[ty·4+i][c] · V[c][tx+8j] (P: row tile × column tile, V: column tile × D).
template <int D>
__device__ inline void attn_accumulate(const float* p, const float* v, float (&acc)[4][D / 8]) {
  const int ty = threadIdx.x / 8;
  const int tx = threadIdx.x % 8;
#pragma unroll 4
  for (int c = 0; c < attn_cols; ++c) {
    float pv[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) pv[i] = p[(ty * 4 + i) * attn_smem<D>::ldp + c];
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      const float x = v[c * attn_smem<D>::ld + tx + 8 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[i][j] = fmaf(pv[i], x, acc[i][j]);
    }
  }
}

// Sum / max over the 8 lanes that share a row.
__device__ inline float attn_row_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  x += __shfl_xor_sync(0xffffffffu, x, 4);
  return x;
}
__device__ inline float attn_row_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 4));
  return x;
}

__device__ inline bool attn_allowed(const attn_args& a, const std::uint8_t* valid_tile, int q, int kv, int kv0,
                                    int length) {
  return kv < length && (!a.causal || kv <= q) && (a.key_valid == nullptr || valid_tile[kv - kv0] != 0);
}

// Probability of (query q, key kv) recomputed from the saved log-sum-exp (+inf: masked row).
__device__ inline float attn_prob(const attn_args& a, const std::uint8_t* valid_tile, int q, int kv, int kv0,
                                  int length, float s, float lse) {
  if (isinf(lse)) return a.attend_all && kv < length ? 1.0f / static_cast<float>(length) : 0.0f;
  return attn_allowed(a, valid_tile, q, kv, kv0, length) ? expf(s * a.scale - lse) : 0.0f;
}

template <int D>
__device__ inline void attn_load_valid(std::uint8_t* dst, int n_tile, const attn_args& a, std::int64_t r0, int n) {
  for (int idx = threadIdx.x; idx < n_tile; idx += attn_threads) {
    dst[idx] = idx < n && (a.key_valid == nullptr || a.key_valid[r0 + idx] != 0) ? 1 : 0;
  }
}

// Forward: one block per (64-query tile, head, segment); online softmax over 32-key tiles.
template <class T, int D>
__global__ void __launch_bounds__(attn_threads) attention_forward_kernel(attn_args a, const T* q, std::int64_t ldq,
                                                                         const T* k, std::int64_t ldk, const T* v,
                                                                         std::int64_t ldv, T* o, std::int64_t ldo,
                                                                         float* lse) {
  using S = attn_smem<D>;
  const int seg = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / a.group;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int q0 = blockIdx.x * attn_rows;
  if (q0 >= length) return;
  extern __shared__ float smem[];
  float* sq = smem;
  float* sk = sq + attn_rows * S::ld;
  float* sv = sk + attn_cols * S::ld;
  float* sp = sv + attn_cols * S::ld;
  auto* svalid = reinterpret_cast<std::uint8_t*>(sp + attn_rows * S::ldp);
  const int ty = threadIdx.x / 8;
  const int tx = threadIdx.x % 8;

  attn_load_tile<D>(sq, attn_rows, q, ldq, static_cast<std::int64_t>(h) * D, start + q0, min(attn_rows, length - q0));
  float acc[4][D / 8];
  float m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) acc[i][j] = 0.0f;
  }
  const int kv_end = a.causal ? min(length, q0 + attn_rows) : length;
  for (int kv0 = 0; kv0 < kv_end; kv0 += attn_cols) {
    const int n = min(attn_cols, length - kv0);
    attn_load_tile<D>(sk, attn_cols, k, ldk, static_cast<std::int64_t>(g) * D, start + kv0, n);
    attn_load_tile<D>(sv, attn_cols, v, ldv, static_cast<std::int64_t>(g) * D, start + kv0, n);
    attn_load_valid<D>(svalid, attn_cols, a, start + kv0, n);
    __syncthreads();
    float s[4][4];
    attn_dot<D>(sq, sk, s);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qi = q0 + ty * 4 + i;
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int kj = kv0 + tx + 8 * j;
        s[i][j] = attn_allowed(a, svalid, qi, kj, kv0, length) ? s[i][j] * a.scale : -INFINITY;
        tile_max = fmaxf(tile_max, s[i][j]);
      }
      const float m_new = fmaxf(m[i], attn_row_max(tile_max));
      // Nothing allowed yet: keep the row at zero (exp of -inf would give NaN).
      const float alpha = m_new == -INFINITY ? 1.0f : expf(m[i] - m_new);
      float row = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float p = m_new == -INFINITY ? 0.0f : expf(s[i][j] - m_new);
        row += p;
        sp[(ty * 4 + i) * S::ldp + tx + 8 * j] = p;
      }
      l[i] = l[i] * alpha + row;  // per-lane partial; lanes of a row share alpha
      m[i] = m_new;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) acc[i][j] *= alpha;
    }
    __syncthreads();
    attn_accumulate<D>(sp, sv, acc);
    __syncthreads();
  }

  // Rows with no allowed key: under attend_all, the mean of V over the whole segment.
  bool masked_any = false;
#pragma unroll
  for (int i = 0; i < 4; ++i) masked_any |= (q0 + ty * 4 + i < length) && m[i] == -INFINITY;
  if (__syncthreads_or(masked_any) && a.attend_all) {
    const float uniform = 1.0f / static_cast<float>(length);
    for (int kv0 = 0; kv0 < length; kv0 += attn_cols) {
      const int n = min(attn_cols, length - kv0);
      attn_load_tile<D>(sv, attn_cols, v, ldv, static_cast<std::int64_t>(g) * D, start + kv0, n);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          sp[(ty * 4 + i) * S::ldp + tx + 8 * j] = m[i] == -INFINITY && tx + 8 * j < n ? uniform : 0.0f;
        }
      __syncthreads();
      attn_accumulate<D>(sp, sv, acc);
      __syncthreads();
    }
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int qi = q0 + ty * 4 + i;
    const float sum = attn_row_sum(l[i]);
    if (qi >= length) continue;
    const bool masked = m[i] == -INFINITY;
    const float inv = masked ? 1.0f : 1.0f / sum;  // masked rows hold their final value already
    T* out = o + (start + qi) * ldo + static_cast<std::int64_t>(h) * D;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) out[tx + 8 * j] = from_float<T>(acc[i][j] * inv);
    if (tx == 0) lse[h * a.rows + start + qi] = masked ? INFINITY : m[i] + logf(sum);
  }
}

// dQ (and delta = rowsum(dO∘O), written for the dK/dV kernel): one block per (64-query tile,
// head, segment), looping over 32-key tiles: dS = P∘(dP − delta), dQ = scale · dS·K.
template <class T, int D>
__global__ void __launch_bounds__(attn_threads)
    attention_backward_dq_kernel(attn_args a, const T* q, std::int64_t ldq, const T* k, std::int64_t ldk, const T* v,
                                 std::int64_t ldv, const T* o, std::int64_t ldo, const float* lse, const T* d_o,
                                 std::int64_t lddo, T* dq, std::int64_t lddq, float* delta) {
  using S = attn_smem<D>;
  const int seg = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / a.group;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int q0 = blockIdx.x * attn_rows;
  if (q0 >= length) return;
  extern __shared__ float smem[];
  float* sq = smem;
  float* sdo = sq + attn_rows * S::ld;
  float* sk = sdo + attn_rows * S::ld;
  float* sv = sk + attn_cols * S::ld;
  float* sds = sv + attn_cols * S::ld;
  auto* svalid = reinterpret_cast<std::uint8_t*>(sds + attn_rows * S::ldp);
  const int ty = threadIdx.x / 8;
  const int tx = threadIdx.x % 8;
  const std::int64_t qcol = static_cast<std::int64_t>(h) * D;
  const std::int64_t kcol = static_cast<std::int64_t>(g) * D;
  const int nq = min(attn_rows, length - q0);

  attn_load_tile<D>(sq, attn_rows, q, ldq, qcol, start + q0, nq);
  attn_load_tile<D>(sdo, attn_rows, d_o, lddo, qcol, start + q0, nq);
  __syncthreads();
  float row_lse[4], row_delta[4];
  bool masked_any = false;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty * 4 + i;
    float part = 0.0f;
    if (r < nq) {
      const T* orow = o + (start + q0 + r) * ldo + qcol;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) part = fmaf(sdo[r * S::ld + tx + 8 * j], to_float(orow[tx + 8 * j]), part);
    }
    row_delta[i] = attn_row_sum(part);
    row_lse[i] = r < nq ? lse[h * a.rows + start + q0 + r] : 0.0f;
    masked_any |= r < nq && isinf(row_lse[i]);
    if (r < nq && tx == 0) delta[h * a.rows + start + q0 + r] = row_delta[i];
  }
  // Masked rows under attend_all see every key of the segment, so they need all key tiles.
  const bool all_keys = __syncthreads_or(masked_any) && a.attend_all;
  const int kv_end = a.causal && !all_keys ? min(length, q0 + attn_rows) : length;

  float acc[4][D / 8];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < D / 8; ++j) acc[i][j] = 0.0f;
  for (int kv0 = 0; kv0 < kv_end; kv0 += attn_cols) {
    const int n = min(attn_cols, length - kv0);
    attn_load_tile<D>(sk, attn_cols, k, ldk, kcol, start + kv0, n);
    attn_load_tile<D>(sv, attn_cols, v, ldv, kcol, start + kv0, n);
    attn_load_valid<D>(svalid, attn_cols, a, start + kv0, n);
    __syncthreads();
    float s[4][4], dp[4][4];
    attn_dot<D>(sq, sk, s);
    attn_dot<D>(sdo, sv, dp);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qi = q0 + ty * 4 + i;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int kj = kv0 + tx + 8 * j;
        const float p = qi < length ? attn_prob(a, svalid, qi, kj, kv0, length, s[i][j], row_lse[i]) : 0.0f;
        sds[(ty * 4 + i) * S::ldp + tx + 8 * j] = p * (dp[i][j] - row_delta[i]);
      }
    }
    __syncthreads();
    attn_accumulate<D>(sds, sk, acc);
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty * 4 + i;
    if (r >= nq) continue;
    T* out = dq + (start + q0 + r) * lddq + qcol;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) out[tx + 8 * j] = from_float<T>(acc[i][j] * a.scale);
  }
}

// dK and dV: one block per (64-key tile, kv head, segment), looping over the group's heads and
// 32-query tiles, so every dK/dV element is summed by one thread in a fixed order (no atomics).
template <class T, int D>
__global__ void __launch_bounds__(attn_threads)
    attention_backward_dkdv_kernel(attn_args a, const T* q, std::int64_t ldq, const T* k, std::int64_t ldk,
                                   const T* v, std::int64_t ldv, const float* lse, const float* delta, const T* d_o,
                                   std::int64_t lddo, T* dk, std::int64_t lddk, T* dv, std::int64_t lddv) {
  using S = attn_smem<D>;
  const int seg = blockIdx.z;
  const int g = blockIdx.y;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int k0 = blockIdx.x * attn_rows;
  if (k0 >= length) return;
  extern __shared__ float smem[];
  float* sk = smem;
  float* sv = sk + attn_rows * S::ld;
  float* sq = sv + attn_rows * S::ld;
  float* sdo = sq + attn_cols * S::ld;
  float* sp = sdo + attn_cols * S::ld;
  float* sds = sp + attn_rows * S::ldp;
  float* slse = sds + attn_rows * S::ldp;
  float* sdelta = slse + attn_cols;
  auto* svalid = reinterpret_cast<std::uint8_t*>(sdelta + attn_cols);
  const int ty = threadIdx.x / 8;
  const int tx = threadIdx.x % 8;
  const std::int64_t kcol = static_cast<std::int64_t>(g) * D;
  const int nk = min(attn_rows, length - k0);

  attn_load_tile<D>(sk, attn_rows, k, ldk, kcol, start + k0, nk);
  attn_load_tile<D>(sv, attn_rows, v, ldv, kcol, start + k0, nk);
  attn_load_valid<D>(svalid, attn_rows, a, start + k0, nk);

  float dk_acc[4][D / 8], dv_acc[4][D / 8];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < D / 8; ++j) dk_acc[i][j] = dv_acc[i][j] = 0.0f;

  for (int h = g * a.group; h < (g + 1) * a.group; ++h) {
    const std::int64_t qcol = static_cast<std::int64_t>(h) * D;
    for (int q0 = 0; q0 < length; q0 += attn_cols) {
      const int nq = min(attn_cols, length - q0);
      // Causal: queries before this key tile see none of it, unless a masked row attends to all.
      bool masked_any = false;
      for (int idx = threadIdx.x; idx < attn_cols; idx += attn_threads) {
        const float x = idx < nq ? lse[h * a.rows + start + q0 + idx] : 0.0f;
        slse[idx] = x;
        sdelta[idx] = idx < nq ? delta[h * a.rows + start + q0 + idx] : 0.0f;
        masked_any |= isinf(x);
      }
      const bool all_keys = __syncthreads_or(masked_any) && a.attend_all;
      if (a.causal && !all_keys && q0 + nq - 1 < k0) continue;
      attn_load_tile<D>(sq, attn_cols, q, ldq, qcol, start + q0, nq);
      attn_load_tile<D>(sdo, attn_cols, d_o, lddo, qcol, start + q0, nq);
      __syncthreads();
      float s[4][4], dp[4][4];
      attn_dot<D>(sk, sq, s);   // s[i][j] = K[k0+ty·4+i] · Q[q0+tx+8j]
      attn_dot<D>(sv, sdo, dp);  // dp[i][j] = V · dO
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int qj = q0 + tx + 8 * j;
        const float row_lse = slse[tx + 8 * j];
        const float row_delta = sdelta[tx + 8 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int ki = k0 + ty * 4 + i;
          const float p = qj < length ? attn_prob(a, svalid, qj, ki, k0, length, s[i][j], row_lse) : 0.0f;
          sp[(ty * 4 + i) * S::ldp + tx + 8 * j] = p;
          sds[(ty * 4 + i) * S::ldp + tx + 8 * j] = p * (dp[i][j] - row_delta);
        }
      }
      __syncthreads();
      attn_accumulate<D>(sp, sdo, dv_acc);
      attn_accumulate<D>(sds, sq, dk_acc);
      __syncthreads();
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty * 4 + i;
    if (r >= nk) continue;
    T* krow = dk + (start + k0 + r) * lddk + kcol;
    T* vrow = dv + (start + k0 + r) * lddv + kcol;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      krow[tx + 8 * j] = from_float<T>(dk_acc[i][j] * a.scale);
      vrow[tx + 8 * j] = from_float<T>(dv_acc[i][j]);
    }
  }
}

// ---- bf16 tensor-core kernels ------------------------------------------------------------------
// Same tiles, masks and thread ownership as above; the tile products run on the tensor cores
// (WMMA 16×16×16, bf16 operands, fp32 accumulation) and land in fp32 shared tiles that the same
// per-thread softmax / dS code reads. P and dS are rounded to bf16 before their products, as
// in FlashAttention-2. Warp w computes rows 16w..16w+15, which are the rows its threads own.
template <int D>
struct attn_tc_smem {
  static constexpr int ldh = D + 8;           // bf16 operand tiles (16-byte multiple)
  static constexpr int ldc = attn_cols + 4;   // fp32 64 × 32 product tiles
  static constexpr int ldph = attn_cols + 8;  // bf16 64 × 32 probability / dS tiles
  static constexpr int ldo = D + 4;           // fp32 64 × D product tiles
  static constexpr std::size_t c_bytes = attn_rows * ldc * sizeof(float);
  static constexpr std::size_t o_bytes = attn_rows * ldo * sizeof(float);
  static constexpr std::size_t rows_h_bytes = attn_rows * ldh * 2;
  static constexpr std::size_t cols_h_bytes = attn_cols * ldh * 2;
  static constexpr std::size_t p_bytes = attn_rows * ldph * 2;
};

using attn_half_t = std::uint16_t;  // bf16 bits in shared memory; WMMA reads them as __nv_bfloat16

// Copies rows [r0, r0+n) of one head into a bf16 tile (the rest zero), two elements per load.
template <int D>
__device__ inline void attn_load_tile_h(attn_half_t* dst, int tile_rows, const bf16* src, std::int64_t ld,
                                        std::int64_t col0, std::int64_t r0, int n) {
  for (int idx = threadIdx.x; idx < tile_rows * (D / 2); idx += attn_threads) {
    const int r = idx / (D / 2);
    const int d = 2 * (idx % (D / 2));
    std::uint32_t pair = 0;
    if (r < n) pair = *reinterpret_cast<const std::uint32_t*>(src + (r0 + r) * ld + col0 + d);
    *reinterpret_cast<std::uint32_t*>(dst + r * attn_tc_smem<D>::ldh + d) = pair;
  }
}

__device__ inline float attn_h2f(attn_half_t x) { return bf16_to_float(bf16::from_bits(x)); }
__device__ inline attn_half_t attn_f2h(float x) { return float_to_bf16(x).bits; }

__device__ inline const __nv_bfloat16* attn_wmma_ptr(const attn_half_t* p) {
  return reinterpret_cast<const __nv_bfloat16*>(p);
}

using attn_frag_acc = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;
using attn_frag_a = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major>;
using attn_frag_bt =
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::col_major>;
using attn_frag_b = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major>;

// C[16w.., 0..32) = A[16w.., :] · B[0..32, :]ᵀ (A: 64-row bf16 tile, B: 32-row bf16 tile, both D wide),
// stored to a fp32 [64][ldc] tile.
template <int D>
__device__ inline void attn_tc_dot(const attn_half_t* a, const attn_half_t* b, float* c) {
  using S = attn_tc_smem<D>;
  const int w = threadIdx.x / 32;
  attn_frag_acc acc[2];
  nvcuda::wmma::fill_fragment(acc[0], 0.0f);
  nvcuda::wmma::fill_fragment(acc[1], 0.0f);
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    attn_frag_a fa;
    nvcuda::wmma::load_matrix_sync(fa, attn_wmma_ptr(a + 16 * w * S::ldh + 16 * kk), S::ldh);
#pragma unroll
    for (int n = 0; n < 2; ++n) {
      attn_frag_bt fb;
      nvcuda::wmma::load_matrix_sync(fb, attn_wmma_ptr(b + 16 * n * S::ldh + 16 * kk), S::ldh);
      nvcuda::wmma::mma_sync(acc[n], fa, fb, acc[n]);
    }
  }
#pragma unroll
  for (int n = 0; n < 2; ++n) {
    nvcuda::wmma::store_matrix_sync(c + 16 * w * S::ldc + 16 * n, acc[n], S::ldc, nvcuda::wmma::mem_row_major);
  }
}

// acc[nt] += P[16w.., 0..32) · V[0..32, 16nt..16nt+16) (P: bf16 [64][ldph], V: bf16 [32][ldh]).
template <int D>
__device__ inline void attn_tc_accumulate(const attn_half_t* p, const attn_half_t* v, attn_frag_acc (&acc)[D / 16]) {
  using S = attn_tc_smem<D>;
  const int w = threadIdx.x / 32;
  attn_frag_a fa[2];
#pragma unroll
  for (int kk = 0; kk < 2; ++kk) {
    nvcuda::wmma::load_matrix_sync(fa[kk], attn_wmma_ptr(p + 16 * w * S::ldph + 16 * kk), S::ldph);
  }
#pragma unroll
  for (int nt = 0; nt < D / 16; ++nt) {
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      attn_frag_b fb;
      nvcuda::wmma::load_matrix_sync(fb, attn_wmma_ptr(v + 16 * kk * S::ldh + 16 * nt), S::ldh);
      nvcuda::wmma::mma_sync(acc[nt], fa[kk], fb, acc[nt]);
    }
  }
}

template <int D>
__device__ inline void attn_tc_store(const attn_frag_acc (&acc)[D / 16], float* out) {
  using S = attn_tc_smem<D>;
  const int w = threadIdx.x / 32;
#pragma unroll
  for (int nt = 0; nt < D / 16; ++nt) {
    nvcuda::wmma::store_matrix_sync(out + 16 * w * S::ldo + 16 * nt, acc[nt], S::ldo, nvcuda::wmma::mem_row_major);
  }
}

template <int D>
__global__ void __launch_bounds__(attn_threads)
    attention_forward_tc_kernel(attn_args a, const bf16* q, std::int64_t ldq, const bf16* k, std::int64_t ldk,
                                const bf16* v, std::int64_t ldv, bf16* o, std::int64_t ldo, float* lse) {
  using S = attn_tc_smem<D>;
  const int seg = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / a.group;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int q0 = blockIdx.x * attn_rows;
  if (q0 >= length) return;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  float* ss = reinterpret_cast<float*>(tc_smem);
  float* so = reinterpret_cast<float*>(tc_smem + S::c_bytes);
  auto* sq = reinterpret_cast<attn_half_t*>(tc_smem + S::c_bytes + S::o_bytes);
  auto* sk = reinterpret_cast<attn_half_t*>(tc_smem + S::c_bytes + S::o_bytes + S::rows_h_bytes);
  auto* sv = sk + attn_cols * S::ldh;
  auto* sp = sv + attn_cols * S::ldh;
  auto* svalid = reinterpret_cast<std::uint8_t*>(sp + attn_rows * S::ldph);
  const int ty = threadIdx.x / 8;
  const int tx = threadIdx.x % 8;

  attn_load_tile_h<D>(sq, attn_rows, q, ldq, static_cast<std::int64_t>(h) * D, start + q0, min(attn_rows, length - q0));
  float acc[4][D / 8];
  float m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) acc[i][j] = 0.0f;
  }
  const int kv_end = a.causal ? min(length, q0 + attn_rows) : length;
  for (int kv0 = 0; kv0 < kv_end; kv0 += attn_cols) {
    const int n = min(attn_cols, length - kv0);
    attn_load_tile_h<D>(sk, attn_cols, k, ldk, static_cast<std::int64_t>(g) * D, start + kv0, n);
    attn_load_tile_h<D>(sv, attn_cols, v, ldv, static_cast<std::int64_t>(g) * D, start + kv0, n);
    attn_load_valid<D>(svalid, attn_cols, a, start + kv0, n);
    __syncthreads();
    attn_tc_dot<D>(sq, sk, ss);
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qi = q0 + ty * 4 + i;
      float s[4];
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int kj = kv0 + tx + 8 * j;
        s[j] = attn_allowed(a, svalid, qi, kj, kv0, length) ? ss[(ty * 4 + i) * S::ldc + tx + 8 * j] * a.scale
                                                             : -INFINITY;
        tile_max = fmaxf(tile_max, s[j]);
      }
      const float m_new = fmaxf(m[i], attn_row_max(tile_max));
      const float alpha = m_new == -INFINITY ? 1.0f : expf(m[i] - m_new);
      float row = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float p = m_new == -INFINITY ? 0.0f : expf(s[j] - m_new);
        row += p;
        sp[(ty * 4 + i) * S::ldph + tx + 8 * j] = attn_f2h(p);
      }
      l[i] = l[i] * alpha + row;
      m[i] = m_new;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) acc[i][j] *= alpha;
    }
    __syncthreads();
    {
      attn_frag_acc pv[D / 16];
#pragma unroll
      for (int nt = 0; nt < D / 16; ++nt) nvcuda::wmma::fill_fragment(pv[nt], 0.0f);
      attn_tc_accumulate<D>(sp, sv, pv);
      attn_tc_store<D>(pv, so);
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < D / 8; ++j) acc[i][j] += so[(ty * 4 + i) * S::ldo + tx + 8 * j];
    __syncthreads();
  }

  // Rows with no allowed key, under attend_all: (1/L)·ΣV with exact 1s in the bf16 product.
  bool masked_any = false;
#pragma unroll
  for (int i = 0; i < 4; ++i) masked_any |= (q0 + ty * 4 + i < length) && m[i] == -INFINITY;
  if (__syncthreads_or(masked_any) && a.attend_all) {
    const float uniform = 1.0f / static_cast<float>(length);
    for (int kv0 = 0; kv0 < length; kv0 += attn_cols) {
      const int n = min(attn_cols, length - kv0);
      attn_load_tile_h<D>(sv, attn_cols, v, ldv, static_cast<std::int64_t>(g) * D, start + kv0, n);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          sp[(ty * 4 + i) * S::ldph + tx + 8 * j] = attn_f2h(m[i] == -INFINITY && tx + 8 * j < n ? 1.0f : 0.0f);
        }
      __syncthreads();
      {
        attn_frag_acc pv[D / 16];
#pragma unroll
        for (int nt = 0; nt < D / 16; ++nt) nvcuda::wmma::fill_fragment(pv[nt], 0.0f);
        attn_tc_accumulate<D>(sp, sv, pv);
        attn_tc_store<D>(pv, so);
      }
      __syncthreads();
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < D / 8; ++j) acc[i][j] += so[(ty * 4 + i) * S::ldo + tx + 8 * j] * uniform;
      __syncthreads();
    }
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int qi = q0 + ty * 4 + i;
    const float sum = attn_row_sum(l[i]);
    if (qi >= length) continue;
    const bool masked = m[i] == -INFINITY;
    const float inv = masked ? 1.0f : 1.0f / sum;
    bf16* out = o + (start + qi) * ldo + static_cast<std::int64_t>(h) * D;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) out[tx + 8 * j] = float_to_bf16(acc[i][j] * inv);
    if (tx == 0) lse[h * a.rows + start + qi] = masked ? INFINITY : m[i] + logf(sum);
  }
}

template <int D>
__global__ void __launch_bounds__(attn_threads)
    attention_backward_dq_tc_kernel(attn_args a, const bf16* q, std::int64_t ldq, const bf16* k, std::int64_t ldk,
                                    const bf16* v, std::int64_t ldv, const bf16* o, std::int64_t ldo, const float* lse,
                                    const bf16* d_o, std::int64_t lddo, bf16* dq, std::int64_t lddq, float* delta) {
  using S = attn_tc_smem<D>;
  const int seg = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / a.group;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int q0 = blockIdx.x * attn_rows;
  if (q0 >= length) return;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  float* ss = reinterpret_cast<float*>(tc_smem);
  float* sdp = reinterpret_cast<float*>(tc_smem + S::c_bytes);
  float* so = reinterpret_cast<float*>(tc_smem + 2 * S::c_bytes);
  auto* sq = reinterpret_cast<attn_half_t*>(tc_smem + 2 * S::c_bytes + S::o_bytes);
  auto* sdo = sq + attn_rows * S::ldh;
  auto* sk = sdo + attn_rows * S::ldh;
  auto* sv = sk + attn_cols * S::ldh;
  auto* sds = sv + attn_cols * S::ldh;
  auto* svalid = reinterpret_cast<std::uint8_t*>(sds + attn_rows * S::ldph);
  const int ty = threadIdx.x / 8;
  const int tx = threadIdx.x % 8;
  const std::int64_t qcol = static_cast<std::int64_t>(h) * D;
  const std::int64_t kcol = static_cast<std::int64_t>(g) * D;
  const int nq = min(attn_rows, length - q0);

  attn_load_tile_h<D>(sq, attn_rows, q, ldq, qcol, start + q0, nq);
  attn_load_tile_h<D>(sdo, attn_rows, d_o, lddo, qcol, start + q0, nq);
  __syncthreads();
  float row_lse[4], row_delta[4];
  bool masked_any = false;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty * 4 + i;
    float part = 0.0f;
    if (r < nq) {
      const bf16* orow = o + (start + q0 + r) * ldo + qcol;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        part = fmaf(attn_h2f(sdo[r * S::ldh + tx + 8 * j]), bf16_to_float(orow[tx + 8 * j]), part);
      }
    }
    row_delta[i] = attn_row_sum(part);
    row_lse[i] = r < nq ? lse[h * a.rows + start + q0 + r] : 0.0f;
    masked_any |= r < nq && isinf(row_lse[i]);
    if (r < nq && tx == 0) delta[h * a.rows + start + q0 + r] = row_delta[i];
  }
  const bool all_keys = __syncthreads_or(masked_any) && a.attend_all;
  const int kv_end = a.causal && !all_keys ? min(length, q0 + attn_rows) : length;

  attn_frag_acc acc[D / 16];
#pragma unroll
  for (int nt = 0; nt < D / 16; ++nt) nvcuda::wmma::fill_fragment(acc[nt], 0.0f);
  for (int kv0 = 0; kv0 < kv_end; kv0 += attn_cols) {
    const int n = min(attn_cols, length - kv0);
    attn_load_tile_h<D>(sk, attn_cols, k, ldk, kcol, start + kv0, n);
    attn_load_tile_h<D>(sv, attn_cols, v, ldv, kcol, start + kv0, n);
    attn_load_valid<D>(svalid, attn_cols, a, start + kv0, n);
    __syncthreads();
    attn_tc_dot<D>(sq, sk, ss);
    attn_tc_dot<D>(sdo, sv, sdp);
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qi = q0 + ty * 4 + i;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int kj = kv0 + tx + 8 * j;
        const int e = (ty * 4 + i) * S::ldc + tx + 8 * j;
        const float p = qi < length ? attn_prob(a, svalid, qi, kj, kv0, length, ss[e], row_lse[i]) : 0.0f;
        sds[(ty * 4 + i) * S::ldph + tx + 8 * j] = attn_f2h(p * (sdp[e] - row_delta[i]));
      }
    }
    __syncthreads();
    attn_tc_accumulate<D>(sds, sk, acc);
    __syncthreads();
  }
  attn_tc_store<D>(acc, so);
  __syncthreads();
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty * 4 + i;
    if (r >= nq) continue;
    bf16* out = dq + (start + q0 + r) * lddq + qcol;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) out[tx + 8 * j] = float_to_bf16(so[r * S::ldo + tx + 8 * j] * a.scale);
  }
}

template <int D>
__global__ void __launch_bounds__(attn_threads)
    attention_backward_dkdv_tc_kernel(attn_args a, const bf16* q, std::int64_t ldq, const bf16* k, std::int64_t ldk,
                                      const bf16* v, std::int64_t ldv, const float* lse, const float* delta,
                                      const bf16* d_o, std::int64_t lddo, bf16* dk, std::int64_t lddk, bf16* dv,
                                      std::int64_t lddv) {
  using S = attn_tc_smem<D>;
  const int seg = blockIdx.z;
  const int g = blockIdx.y;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int k0 = blockIdx.x * attn_rows;
  if (k0 >= length) return;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  float* ss = reinterpret_cast<float*>(tc_smem);
  float* sdp = reinterpret_cast<float*>(tc_smem + S::c_bytes);
  float* so = reinterpret_cast<float*>(tc_smem + 2 * S::c_bytes);
  auto* sk = reinterpret_cast<attn_half_t*>(tc_smem + 2 * S::c_bytes + S::o_bytes);
  auto* sv = sk + attn_rows * S::ldh;
  auto* sq = sv + attn_rows * S::ldh;
  auto* sdo = sq + attn_cols * S::ldh;
  auto* sp = sdo + attn_cols * S::ldh;
  auto* sds = sp + attn_rows * S::ldph;
  auto* slse = reinterpret_cast<float*>(sds + attn_rows * S::ldph);
  float* sdelta = slse + attn_cols;
  auto* svalid = reinterpret_cast<std::uint8_t*>(sdelta + attn_cols);
  const int ty = threadIdx.x / 8;
  const int tx = threadIdx.x % 8;
  const std::int64_t kcol = static_cast<std::int64_t>(g) * D;
  const int nk = min(attn_rows, length - k0);

  attn_load_tile_h<D>(sk, attn_rows, k, ldk, kcol, start + k0, nk);
  attn_load_tile_h<D>(sv, attn_rows, v, ldv, kcol, start + k0, nk);
  attn_load_valid<D>(svalid, attn_rows, a, start + k0, nk);

  attn_frag_acc dk_acc[D / 16], dv_acc[D / 16];
#pragma unroll
  for (int nt = 0; nt < D / 16; ++nt) {
    nvcuda::wmma::fill_fragment(dk_acc[nt], 0.0f);
    nvcuda::wmma::fill_fragment(dv_acc[nt], 0.0f);
  }
  for (int h = g * a.group; h < (g + 1) * a.group; ++h) {
    const std::int64_t qcol = static_cast<std::int64_t>(h) * D;
    for (int q0 = 0; q0 < length; q0 += attn_cols) {
      const int nq = min(attn_cols, length - q0);
      bool masked_any = false;
      for (int idx = threadIdx.x; idx < attn_cols; idx += attn_threads) {
        const float x = idx < nq ? lse[h * a.rows + start + q0 + idx] : 0.0f;
        slse[idx] = x;
        sdelta[idx] = idx < nq ? delta[h * a.rows + start + q0 + idx] : 0.0f;
        masked_any |= isinf(x);
      }
      const bool all_keys = __syncthreads_or(masked_any) && a.attend_all;
      if (a.causal && !all_keys && q0 + nq - 1 < k0) continue;
      attn_load_tile_h<D>(sq, attn_cols, q, ldq, qcol, start + q0, nq);
      attn_load_tile_h<D>(sdo, attn_cols, d_o, lddo, qcol, start + q0, nq);
      __syncthreads();
      attn_tc_dot<D>(sk, sq, ss);   // Sᵀ: keys × queries
      attn_tc_dot<D>(sv, sdo, sdp);  // dPᵀ
      __syncthreads();
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int qj = q0 + tx + 8 * j;
        const float row_lse = slse[tx + 8 * j];
        const float row_delta = sdelta[tx + 8 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int ki = k0 + ty * 4 + i;
          const int e = (ty * 4 + i) * S::ldc + tx + 8 * j;
          const float p = qj < length ? attn_prob(a, svalid, qj, ki, k0, length, ss[e], row_lse) : 0.0f;
          sp[(ty * 4 + i) * S::ldph + tx + 8 * j] = attn_f2h(p);
          sds[(ty * 4 + i) * S::ldph + tx + 8 * j] = attn_f2h(p * (sdp[e] - row_delta));
        }
      }
      __syncthreads();
      attn_tc_accumulate<D>(sp, sdo, dv_acc);
      attn_tc_accumulate<D>(sds, sq, dk_acc);
      __syncthreads();
    }
  }
  auto write_rows = [&](bf16* dst, std::int64_t ld, float factor) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = ty * 4 + i;
      if (r >= nk) continue;
      bf16* row = dst + (start + k0 + r) * ld + kcol;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) row[tx + 8 * j] = float_to_bf16(so[r * S::ldo + tx + 8 * j] * factor);
    }
  };
  attn_tc_store<D>(dk_acc, so);
  __syncthreads();
  write_rows(dk, lddk, a.scale);
  __syncthreads();
  attn_tc_store<D>(dv_acc, so);
  __syncthreads();
  write_rows(dv, lddv, 1.0f);
}

template <int D>
constexpr std::size_t attention_forward_tc_smem() {
  using S = attn_tc_smem<D>;
  return S::c_bytes + S::o_bytes + S::rows_h_bytes + 2 * S::cols_h_bytes + S::p_bytes + attn_cols;
}
template <int D>
constexpr std::size_t attention_dq_tc_smem() {
  using S = attn_tc_smem<D>;
  return 2 * S::c_bytes + S::o_bytes + 2 * S::rows_h_bytes + 2 * S::cols_h_bytes + S::p_bytes + attn_cols;
}
template <int D>
constexpr std::size_t attention_dkdv_tc_smem() {
  using S = attn_tc_smem<D>;
  return 2 * S::c_bytes + S::o_bytes + 2 * S::rows_h_bytes + 2 * S::cols_h_bytes + 2 * S::p_bytes +
         2 * attn_cols * sizeof(float) + attn_rows;
}

template <int D>
constexpr std::size_t attention_forward_smem() {
  return (attn_rows + 2 * attn_cols) * attn_smem<D>::ld * sizeof(float) +
         attn_rows * attn_smem<D>::ldp * sizeof(float) + attn_cols;
}
template <int D>
constexpr std::size_t attention_dq_smem() {
  return (2 * attn_rows + 2 * attn_cols) * attn_smem<D>::ld * sizeof(float) +
         attn_rows * attn_smem<D>::ldp * sizeof(float) + attn_cols;
}
template <int D>
constexpr std::size_t attention_dkdv_smem() {
  return (2 * attn_rows + 2 * attn_cols) * attn_smem<D>::ld * sizeof(float) +
         2 * attn_rows * attn_smem<D>::ldp * sizeof(float) + 2 * attn_cols * sizeof(float) + attn_rows;
}

template <class Kernel>
void attn_set_smem(Kernel kernel, std::size_t bytes) {
  AQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <class T>
void check_attention(const attention_config& c, const attention_segments& segs, const device_matrix<const T>& q,
                     const device_matrix<const T>& k, const device_matrix<const T>& v) {
  const std::int64_t d = c.head_dim;
  if (d != 16 && d != 32 && d != 64 && d != 128) {
    throw error("cuda attention: head_dim " + std::to_string(d) + " is not one of 16, 32, 64, 128");
  }
  if (c.heads <= 0 || c.kv_heads <= 0 || c.heads % c.kv_heads != 0 || q.cols != c.heads * d ||
      k.cols != c.kv_heads * d || v.cols != k.cols || k.rows != q.rows || v.rows != q.rows) {
    throw error("cuda attention: q [" + std::to_string(q.rows) + ", " + std::to_string(q.cols) + "], k [" +
                std::to_string(k.rows) + ", " + std::to_string(k.cols) + "], v [" + std::to_string(v.rows) + ", " +
                std::to_string(v.cols) + "] do not match heads " + std::to_string(c.heads) + ", kv_heads " +
                std::to_string(c.kv_heads) + ", head_dim " + std::to_string(d));
  }
  if (segs.count < 0 || segs.count > 65535 || segs.max_length < 0 || (segs.count > 0 && segs.cu_seqlens == nullptr)) {
    throw error("cuda attention: segments: count " + std::to_string(segs.count) + ", max_length " +
                std::to_string(segs.max_length) + " (cu_seqlens must hold count + 1 device ints)");
  }
  if (q.rows > INT32_MAX) throw error("cuda attention: " + std::to_string(q.rows) + " rows exceed the int32 range");
}

template <class T>
attn_args make_args(const attention_config& c, const attention_segments& segs, std::int64_t rows) {
  return {segs.cu_seqlens, c.key_valid,          rows, static_cast<int>(c.heads), static_cast<int>(c.heads / c.kv_heads),
          c.scale,         c.causal, c.masked_rows == masked_row_policy::attend_all};
}

// Whether the tensor-core kernels run: asked for, bf16 storage, and 4-byte aligned rows.
template <class T>
bool use_tensor_cores(const attention_config& c, std::initializer_list<device_matrix<const T>> views) {
  if (!c.tensor_cores) return false;
  if constexpr (!std::is_same_v<T, bf16>) {
    throw error("cuda attention: tensor_cores needs bf16 storage (fp32 storage runs in fp32)");
  } else {
    for (const auto& m : views) {
      if (reinterpret_cast<std::uintptr_t>(m.data) % 4 != 0 || m.ld % 2 != 0) {
        throw error("cuda attention: tensor_cores needs 4-byte aligned bf16 rows; got ld " + std::to_string(m.ld));
      }
    }
    return true;
  }
}

template <class F>
void attn_dispatch(std::int64_t head_dim, F f) {
  switch (head_dim) {
    case 16: f.template operator()<16>(); break;
    case 32: f.template operator()<32>(); break;
    case 64: f.template operator()<64>(); break;
    default: f.template operator()<128>(); break;  // checked by check_attention
  }
}

}  // namespace detail

// o [rows, heads·dim] and lse [heads, rows] (log-sum-exp of each row's scaled scores, +inf for
// a row with no allowed key), like cpu::attention_forward. T is float or aq::bf16 storage; the
// arithmetic is fp32. Rows outside every segment are left untouched.
template <class T>
void attention_forward(const attention_config& c, const attention_segments& segs, const device_matrix<const T>& q,
                       const device_matrix<const T>& k, const device_matrix<const T>& v, const device_matrix<T>& o,
                       float* lse, cudaStream_t stream = nullptr) {
  detail::check_attention(c, segs, q, k, v);
  check_same_shape(q, device_matrix<const T>(o), "cuda attention_forward: o");
  // Validated before the empty-input return, so a bad configuration fails on every input.
  const bool tensor_cores = detail::use_tensor_cores<T>(c, {q, k, v, device_matrix<const T>(o)});
  if (segs.count == 0 || segs.max_length == 0) return;
  const detail::attn_args a = detail::make_args<T>(c, segs, q.rows);
  if (tensor_cores) {
    if constexpr (std::is_same_v<T, bf16>) {
      detail::attn_dispatch(c.head_dim, [&]<int D>() {
        const auto kernel = detail::attention_forward_tc_kernel<D>;
        constexpr std::size_t smem = detail::attention_forward_tc_smem<D>();
        detail::attn_set_smem(kernel, smem);
        const dim3 grid((segs.max_length + detail::attn_rows - 1) / detail::attn_rows, static_cast<unsigned>(c.heads),
                        static_cast<unsigned>(segs.count));
        kernel<<<grid, detail::attn_threads, smem, stream>>>(a, q.data, q.ld, k.data, k.ld, v.data, v.ld, o.data, o.ld,
                                                             lse);
        AQ_CUDA_CHECK_LAUNCH();
      });
    }
    return;
  }
  detail::attn_dispatch(c.head_dim, [&]<int D>() {
    const auto kernel = detail::attention_forward_kernel<T, D>;
    constexpr std::size_t smem = detail::attention_forward_smem<D>();
    detail::attn_set_smem(kernel, smem);
    const dim3 grid((segs.max_length + detail::attn_rows - 1) / detail::attn_rows, static_cast<unsigned>(c.heads),
                    static_cast<unsigned>(segs.count));
    kernel<<<grid, detail::attn_threads, smem, stream>>>(a, q.data, q.ld, k.data, k.ld, v.data, v.ld, o.data, o.ld,
                                                         lse);
    AQ_CUDA_CHECK_LAUNCH();
  });
}

// dq [rows, heads·dim], dk/dv [rows, kv_heads·dim] are overwritten (rows inside segments).
// delta is a device workspace of heads·rows floats (rowsum(dO∘O), kept for inspection).
template <class T>
void attention_backward(const attention_config& c, const attention_segments& segs, const device_matrix<const T>& q,
                        const device_matrix<const T>& k, const device_matrix<const T>& v,
                        const device_matrix<const T>& o, const float* lse, const device_matrix<const T>& d_o,
                        const device_matrix<T>& dq, const device_matrix<T>& dk, const device_matrix<T>& dv,
                        float* delta, cudaStream_t stream = nullptr) {
  detail::check_attention(c, segs, q, k, v);
  check_same_shape(q, o, "cuda attention_backward: o");
  check_same_shape(q, d_o, "cuda attention_backward: d_o");
  check_same_shape(q, device_matrix<const T>(dq), "cuda attention_backward: dq");
  check_same_shape(k, device_matrix<const T>(dk), "cuda attention_backward: dk");
  check_same_shape(k, device_matrix<const T>(dv), "cuda attention_backward: dv");
  const bool tensor_cores = detail::use_tensor_cores<T>(c, {q, k, v, o, d_o, device_matrix<const T>(dq),
                                                            device_matrix<const T>(dk), device_matrix<const T>(dv)});
  if (segs.count == 0 || segs.max_length == 0) return;
  const detail::attn_args a = detail::make_args<T>(c, segs, q.rows);
  if (tensor_cores) {
    if constexpr (std::is_same_v<T, bf16>) {
      detail::attn_dispatch(c.head_dim, [&]<int D>() {
        const unsigned tiles = static_cast<unsigned>((segs.max_length + detail::attn_rows - 1) / detail::attn_rows);
        const auto dq_kernel = detail::attention_backward_dq_tc_kernel<D>;
        constexpr std::size_t dq_smem = detail::attention_dq_tc_smem<D>();
        detail::attn_set_smem(dq_kernel, dq_smem);
        dq_kernel<<<dim3(tiles, static_cast<unsigned>(c.heads), static_cast<unsigned>(segs.count)),
                    detail::attn_threads, dq_smem, stream>>>(a, q.data, q.ld, k.data, k.ld, v.data, v.ld, o.data, o.ld,
                                                             lse, d_o.data, d_o.ld, dq.data, dq.ld, delta);
        AQ_CUDA_CHECK_LAUNCH();
        const auto dkdv_kernel = detail::attention_backward_dkdv_tc_kernel<D>;
        constexpr std::size_t dkdv_smem = detail::attention_dkdv_tc_smem<D>();
        detail::attn_set_smem(dkdv_kernel, dkdv_smem);
        dkdv_kernel<<<dim3(tiles, static_cast<unsigned>(c.kv_heads), static_cast<unsigned>(segs.count)),
                      detail::attn_threads, dkdv_smem, stream>>>(a, q.data, q.ld, k.data, k.ld, v.data, v.ld, lse,
                                                                 delta, d_o.data, d_o.ld, dk.data, dk.ld, dv.data,
                                                                 dv.ld);
        AQ_CUDA_CHECK_LAUNCH();
      });
    }
    return;
  }
  detail::attn_dispatch(c.head_dim, [&]<int D>() {
    const unsigned tiles = static_cast<unsigned>((segs.max_length + detail::attn_rows - 1) / detail::attn_rows);
    const auto dq_kernel = detail::attention_backward_dq_kernel<T, D>;
    constexpr std::size_t dq_smem = detail::attention_dq_smem<D>();
    detail::attn_set_smem(dq_kernel, dq_smem);
    dq_kernel<<<dim3(tiles, static_cast<unsigned>(c.heads), static_cast<unsigned>(segs.count)), detail::attn_threads,
                dq_smem, stream>>>(a, q.data, q.ld, k.data, k.ld, v.data, v.ld, o.data, o.ld, lse, d_o.data, d_o.ld,
                                   dq.data, dq.ld, delta);
    AQ_CUDA_CHECK_LAUNCH();
    const auto dkdv_kernel = detail::attention_backward_dkdv_kernel<T, D>;
    constexpr std::size_t dkdv_smem = detail::attention_dkdv_smem<D>();
    detail::attn_set_smem(dkdv_kernel, dkdv_smem);
    dkdv_kernel<<<dim3(tiles, static_cast<unsigned>(c.kv_heads), static_cast<unsigned>(segs.count)),
                  detail::attn_threads, dkdv_smem, stream>>>(a, q.data, q.ld, k.data, k.ld, v.data, v.ld, lse, delta,
                                                             d_o.data, d_o.ld, dk.data, dk.ld, dv.data, dv.ld);
    AQ_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace aq::cuda
