// Scaled dot-product attention on the GPU, the counterpart of backend/cpu/attention.hpp: GQA over
// independent segments (cu_seqlens), causal + key-padding mask, both masked-row policies, a tiled
// online-softmax forward that saves the log-sum-exp rows, and the input-gradient backward.
// Two kernel families with one set of semantics: the tensor-core kernels of attention_flash.cuh
// (bf16 storage, config.tensor_cores) and the fp32 CUDA-core kernels below, the reference for
// fp32 storage and for bf16 storage without tensor cores. The CUDA-core family keeps its tile
// products behind an MMA policy (fp32_cuda_core_policy).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "aq/backend/cuda/kernels/attention_args.cuh"
#include "aq/backend/cuda/kernels/attention_flash.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/fused_attention_library.hpp"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/model/attention_config.hpp"

namespace aq::cuda {

// Shared with the CPU backend (model/attention_config.hpp); key_valid is a device pointer here.
using aq::attention_config;
using aq::masked_row_policy;

namespace detail {

// 128 threads as 16 × 8: a thread owns rows ty·4 + i (i < 4) of a 64-row tile and columns
// tx + 8j of a 32-column tile or of the head dimension, so each row's partial results sit in
// 8 consecutive lanes and reduce with three shuffles.
inline constexpr int attn_threads = 128;
inline constexpr int attn_rows = 64;  // row tile (queries; keys in the dK/dV kernel)
inline constexpr int attn_cols = 32;  // column tile (keys; queries in the dK/dV kernel)

// ---- Tiles and products ------------------------------------------------------------------------
// fp32_cuda_core_policy<D> (D = head_dim) holds the shared tiles and the products over them:
//   ld, ldw            row stride of the Q/K/V/dO tiles and of the 64 × 32 P/dS tiles
//   load()             fills a tile from global rows (any storage type, converted to fp32)
//   scores, dot()      64 × 32 = A·Bᵀ product over D in registers, read per thread with at(i, j)
//   accumulator        64 × D sum of P·V-like products: zero(), accumulate(), and read_back()
//                      to hand each thread its elements (i, j)
// (The bf16 tensor-core kernels are attention_flash.cuh's.)

// fp32 tiles, products as fp32 FMAs on the CUDA cores into per-thread registers.
template <int D>
struct fp32_cuda_core_policy {
  static constexpr int head_dim = D;
  static constexpr int ld = D + 1;  // odd stride: tile rows land on distinct banks
  static constexpr int ldw = attn_cols + 1;
  __device__ static unsigned char* shared_memory() {
    extern __shared__ float attn_smem_fp32[];
    return reinterpret_cast<unsigned char*>(attn_smem_fp32);
  }

  // Copies rows [r0, r0+n) (n ≤ tile rows; the rest zero) of one head's columns into a fp32 tile.
  template <class T>
  __device__ static void load(float* dst, int tile_rows, const T* src, std::int64_t ld_src, std::int64_t col0,
                              std::int64_t r0, int n) {
    for (int idx = threadIdx.x; idx < tile_rows * D; idx += attn_threads) {
      const int r = idx / D;
      const int d = idx % D;
      dst[r * ld + d] = r < n ? to_float(src[(r0 + r) * ld_src + col0 + d]) : 0.0f;
    }
  }
  struct scores {
    float v[4][4];
    __device__ float at(int i, int j) const { return v[i][j]; }
  };
  // s[i][j] = Σ_k A[ty·4+i][k] · B[tx+8j][k] (A: row tile, B: column tile, both D wide).
  __device__ static void dot(const float* a, const float* b, scores& s) {
    const int ty = threadIdx.x / 8;
    const int tx = threadIdx.x % 8;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s.v[i][j] = 0.0f;
#pragma unroll 8
    for (int k = 0; k < D; ++k) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = a[(ty * 4 + i) * ld + k];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = b[(tx + 8 * j) * ld + k];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) s.v[i][j] = fmaf(av[i], bv[j], s.v[i][j]);
    }
  }

  using accumulator = float[4][D / 8];  // rows ty·4+i, columns tx+8j
  __device__ static void zero(accumulator& acc) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < D / 8; ++j) acc[i][j] = 0.0f;
  }
  // acc[i][j] += Σ_c P[ty·4+i][c] · V[c][tx+8j] (P: row tile × column tile, V: column tile × D).
  __device__ static void accumulate(const float* p, const float* v, accumulator& acc) {
    const int ty = threadIdx.x / 8;
    const int tx = threadIdx.x % 8;
#pragma unroll 4
    for (int c = 0; c < attn_cols; ++c) {
      float pv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) pv[i] = p[(ty * 4 + i) * ldw + c];
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        const float x = v[c * ld + tx + 8 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[i][j] = fmaf(pv[i], x, acc[i][j]);
      }
    }
  }
  // Hands out(which, i, j, x) element (i, j) of each accumulator (which: its index), straight
  // from the registers, all accumulators together.
  template <class Out, class... Acc>
  __device__ static void read_back(Out out, const Acc&... accs) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        int which = 0;
        (out(which++, i, j, accs[i][j]), ...);
      }
  }
};

// ---- Masks and reductions ----------------------------------------------------------------------

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

__device__ inline void attn_load_valid(std::uint8_t* dst, int n_tile, const attn_args& a, std::int64_t r0, int n) {
  for (int idx = threadIdx.x; idx < n_tile; idx += attn_threads) {
    dst[idx] = idx < n && (a.key_valid == nullptr || a.key_valid[r0 + idx] != 0) ? 1 : 0;
  }
}

// Shared-memory layouts as byte offsets, in order: the operand tiles, the weight tiles and the
// per-row values. bytes is the dynamic shared memory of the launch.
template <class P>
struct attn_tile_bytes {
  static constexpr std::size_t rows = attn_rows * P::ld * sizeof(float);
  static constexpr std::size_t cols = attn_cols * P::ld * sizeof(float);
  static constexpr std::size_t weights = attn_rows * P::ldw * sizeof(float);
};

template <class P>
struct attention_forward_smem {
  using B = attn_tile_bytes<P>;
  static constexpr std::size_t q = 0;
  static constexpr std::size_t k = q + B::rows;
  static constexpr std::size_t v = k + B::cols;
  static constexpr std::size_t p = v + B::cols;
  static constexpr std::size_t valid = p + B::weights;
  static constexpr std::size_t bytes = valid + attn_cols;
};

template <class P>
struct attention_dq_smem {
  using B = attn_tile_bytes<P>;
  static constexpr std::size_t q = 0;
  static constexpr std::size_t d_o = q + B::rows;
  static constexpr std::size_t k = d_o + B::rows;
  static constexpr std::size_t v = k + B::cols;
  static constexpr std::size_t ds = v + B::cols;
  static constexpr std::size_t valid = ds + B::weights;
  static constexpr std::size_t bytes = valid + attn_cols;
};

template <class P>
struct attention_dkdv_smem {
  using B = attn_tile_bytes<P>;
  static constexpr std::size_t k = 0;
  static constexpr std::size_t v = k + B::rows;
  static constexpr std::size_t q = v + B::rows;
  static constexpr std::size_t d_o = q + B::cols;
  static constexpr std::size_t p = d_o + B::cols;
  static constexpr std::size_t ds = p + B::weights;
  static constexpr std::size_t lse = ds + B::weights;
  static constexpr std::size_t delta = lse + attn_cols * sizeof(float);
  static constexpr std::size_t valid = delta + attn_cols * sizeof(float);
  static constexpr std::size_t bytes = valid + attn_rows;
};

template <class E>
__device__ inline E* attn_smem_at(unsigned char* smem, std::size_t offset) {
  return reinterpret_cast<E*>(smem + offset);
}

// Forward: one block per (64-query tile, head, segment); online softmax over 32-key tiles.
template <class P, class T>
__global__ void __launch_bounds__(attn_threads) attention_forward_kernel(attn_args a, const T* q, std::int64_t ldq,
                                                                         const T* k, std::int64_t ldk, const T* v,
                                                                         std::int64_t ldv, T* o, std::int64_t ldo,
                                                                         float* lse) {
  constexpr int D = P::head_dim;
  using L = attention_forward_smem<P>;
  const int seg = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / a.group;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int q0 = blockIdx.x * attn_rows;
  if (q0 >= length) return;
  unsigned char* attn_smem = P::shared_memory();
  float* sq = attn_smem_at<float>(attn_smem, L::q);
  float* sk = attn_smem_at<float>(attn_smem, L::k);
  float* sv = attn_smem_at<float>(attn_smem, L::v);
  float* sp = attn_smem_at<float>(attn_smem, L::p);
  auto* svalid = attn_smem_at<std::uint8_t>(attn_smem, L::valid);
  const int ty = threadIdx.x / 8;
  const int tx = threadIdx.x % 8;

  P::load(sq, attn_rows, q, ldq, static_cast<std::int64_t>(h) * D, start + q0, min(attn_rows, length - q0));
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
    P::load(sk, attn_cols, k, ldk, static_cast<std::int64_t>(g) * D, start + kv0, n);
    P::load(sv, attn_cols, v, ldv, static_cast<std::int64_t>(g) * D, start + kv0, n);
    attn_load_valid(svalid, attn_cols, a, start + kv0, n);
    __syncthreads();
    typename P::scores scores;
    P::dot(sq, sk, scores);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qi = q0 + ty * 4 + i;
      float s[4];
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int kj = kv0 + tx + 8 * j;
        s[j] = attn_allowed(a, svalid, qi, kj, kv0, length) ? scores.at(i, j) * a.scale : -INFINITY;
        tile_max = fmaxf(tile_max, s[j]);
      }
      const float m_new = fmaxf(m[i], attn_row_max(tile_max));
      // Nothing allowed yet: keep the row at zero (exp of -inf would give NaN).
      const float alpha = m_new == -INFINITY ? 1.0f : expf(m[i] - m_new);
      float row = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float p = m_new == -INFINITY ? 0.0f : expf(s[j] - m_new);
        row += p;
        sp[(ty * 4 + i) * P::ldw + tx + 8 * j] = p;
      }
      l[i] = l[i] * alpha + row;  // per-lane partial; lanes of a row share alpha
      m[i] = m_new;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) acc[i][j] *= alpha;
    }
    __syncthreads();
    P::accumulate(sp, sv, acc);
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
      P::load(sv, attn_cols, v, ldv, static_cast<std::int64_t>(g) * D, start + kv0, n);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          sp[(ty * 4 + i) * P::ldw + tx + 8 * j] =
              m[i] == -INFINITY && tx + 8 * j < n ? uniform : 0.0f;
        }
      __syncthreads();
      P::accumulate(sp, sv, acc);
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
template <class P, class T>
__global__ void __launch_bounds__(attn_threads)
    attention_backward_dq_kernel(attn_args a, const T* q, std::int64_t ldq, const T* k, std::int64_t ldk, const T* v,
                                 std::int64_t ldv, const T* o, std::int64_t ldo, const float* lse, const T* d_o,
                                 std::int64_t lddo, T* dq, std::int64_t lddq, float* delta) {
  constexpr int D = P::head_dim;
  using L = attention_dq_smem<P>;
  const int seg = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / a.group;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int q0 = blockIdx.x * attn_rows;
  if (q0 >= length) return;
  unsigned char* attn_smem = P::shared_memory();
  float* sq = attn_smem_at<float>(attn_smem, L::q);
  float* sdo = attn_smem_at<float>(attn_smem, L::d_o);
  float* sk = attn_smem_at<float>(attn_smem, L::k);
  float* sv = attn_smem_at<float>(attn_smem, L::v);
  float* sds = attn_smem_at<float>(attn_smem, L::ds);
  auto* svalid = attn_smem_at<std::uint8_t>(attn_smem, L::valid);
  const int ty = threadIdx.x / 8;
  const int tx = threadIdx.x % 8;
  const std::int64_t qcol = static_cast<std::int64_t>(h) * D;
  const std::int64_t kcol = static_cast<std::int64_t>(g) * D;
  const int nq = min(attn_rows, length - q0);

  P::load(sq, attn_rows, q, ldq, qcol, start + q0, nq);
  P::load(sdo, attn_rows, d_o, lddo, qcol, start + q0, nq);
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
      for (int j = 0; j < D / 8; ++j) {
        part = fmaf(sdo[r * P::ld + tx + 8 * j], to_float(orow[tx + 8 * j]), part);
      }
    }
    row_delta[i] = attn_row_sum(part);
    row_lse[i] = r < nq ? lse[h * a.rows + start + q0 + r] : 0.0f;
    masked_any |= r < nq && isinf(row_lse[i]);
    if (r < nq && tx == 0) delta[h * a.rows + start + q0 + r] = row_delta[i];
  }
  // Masked rows under attend_all see every key of the segment, so they need all key tiles.
  const bool all_keys = __syncthreads_or(masked_any) && a.attend_all;
  const int kv_end = a.causal && !all_keys ? min(length, q0 + attn_rows) : length;

  typename P::accumulator acc;
  P::zero(acc);
  for (int kv0 = 0; kv0 < kv_end; kv0 += attn_cols) {
    const int n = min(attn_cols, length - kv0);
    P::load(sk, attn_cols, k, ldk, kcol, start + kv0, n);
    P::load(sv, attn_cols, v, ldv, kcol, start + kv0, n);
    attn_load_valid(svalid, attn_cols, a, start + kv0, n);
    __syncthreads();
    typename P::scores s, dp;
    P::dot(sq, sk, s);
    P::dot(sdo, sv, dp);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qi = q0 + ty * 4 + i;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int kj = kv0 + tx + 8 * j;
        const float p = qi < length ? attn_prob(a, svalid, qi, kj, kv0, length, s.at(i, j), row_lse[i]) : 0.0f;
        sds[(ty * 4 + i) * P::ldw + tx + 8 * j] = p * (dp.at(i, j) - row_delta[i]);
      }
    }
    __syncthreads();
    P::accumulate(sds, sk, acc);
    __syncthreads();
  }
  P::read_back([&](int /*which*/, int i, int j, float x) {
    const int r = ty * 4 + i;
    if (r >= nq) return;
    T* out = dq + (start + q0 + r) * lddq + qcol;
    out[tx + 8 * j] = from_float<T>(x * a.scale);
  }, acc);
}

// dK and dV: one block per (64-key tile, kv head, segment), looping over the group's heads and
// 32-query tiles, so every dK/dV element is summed by one thread in a fixed order (no atomics).
template <class P, class T>
__global__ void __launch_bounds__(attn_threads)
    attention_backward_dkdv_kernel(attn_args a, const T* q, std::int64_t ldq, const T* k, std::int64_t ldk,
                                   const T* v, std::int64_t ldv, const float* lse, const float* delta, const T* d_o,
                                   std::int64_t lddo, T* dk, std::int64_t lddk, T* dv, std::int64_t lddv) {
  constexpr int D = P::head_dim;
  using L = attention_dkdv_smem<P>;
  const int seg = blockIdx.z;
  const int g = blockIdx.y;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int k0 = blockIdx.x * attn_rows;
  if (k0 >= length) return;
  unsigned char* attn_smem = P::shared_memory();
  float* sk = attn_smem_at<float>(attn_smem, L::k);
  float* sv = attn_smem_at<float>(attn_smem, L::v);
  float* sq = attn_smem_at<float>(attn_smem, L::q);
  float* sdo = attn_smem_at<float>(attn_smem, L::d_o);
  float* sp = attn_smem_at<float>(attn_smem, L::p);
  float* sds = attn_smem_at<float>(attn_smem, L::ds);
  float* slse = attn_smem_at<float>(attn_smem, L::lse);
  float* sdelta = attn_smem_at<float>(attn_smem, L::delta);
  auto* svalid = attn_smem_at<std::uint8_t>(attn_smem, L::valid);
  const int ty = threadIdx.x / 8;
  const int tx = threadIdx.x % 8;
  const std::int64_t kcol = static_cast<std::int64_t>(g) * D;
  const int nk = min(attn_rows, length - k0);

  P::load(sk, attn_rows, k, ldk, kcol, start + k0, nk);
  P::load(sv, attn_rows, v, ldv, kcol, start + k0, nk);
  attn_load_valid(svalid, attn_rows, a, start + k0, nk);

  typename P::accumulator dk_acc, dv_acc;
  P::zero(dk_acc);
  P::zero(dv_acc);
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
      P::load(sq, attn_cols, q, ldq, qcol, start + q0, nq);
      P::load(sdo, attn_cols, d_o, lddo, qcol, start + q0, nq);
      __syncthreads();
      typename P::scores s, dp;
      P::dot(sk, sq, s);   // s(i, j) = K[k0+ty·4+i] · Q[q0+tx+8j]
      P::dot(sv, sdo, dp);  // dp(i, j) = V · dO
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int qj = q0 + tx + 8 * j;
        const float row_lse = slse[tx + 8 * j];
        const float row_delta = sdelta[tx + 8 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int ki = k0 + ty * 4 + i;
          const float p = qj < length ? attn_prob(a, svalid, qj, ki, k0, length, s.at(i, j), row_lse) : 0.0f;
          sp[(ty * 4 + i) * P::ldw + tx + 8 * j] = p;
          sds[(ty * 4 + i) * P::ldw + tx + 8 * j] = p * (dp.at(i, j) - row_delta);
        }
      }
      __syncthreads();
      P::accumulate(sp, sdo, dv_acc);
      P::accumulate(sds, sq, dk_acc);
      __syncthreads();
    }
  }
  P::read_back([&](int which, int i, int j, float x) {
    const int r = ty * 4 + i;
    if (r >= nk) return;
    if (which == 0) {
      T* krow = dk + (start + k0 + r) * lddk + kcol;
      krow[tx + 8 * j] = from_float<T>(x * a.scale);
    } else {
      T* vrow = dv + (start + k0 + r) * lddv + kcol;
      vrow[tx + 8 * j] = from_float<T>(x);
    }
  }, dk_acc, dv_acc);
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

inline attn_args make_args(const attention_config& c, const attention_segments& segs, std::int64_t rows) {
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

// Calls f.template operator()<D>() with head_dim as a constant (checked by check_attention).
template <class F>
void attn_head_dim(std::int64_t head_dim, F f) {
  switch (head_dim) {
    case 16: f.template operator()<16>(); break;
    case 32: f.template operator()<32>(); break;
    case 64: f.template operator()<64>(); break;
    default: f.template operator()<128>(); break;
  }
}

// Grid rows: one block per 64-row tile of the longest segment.
inline unsigned attn_row_tiles(const attention_segments& segs) {
  return static_cast<unsigned>((segs.max_length + attn_rows - 1) / attn_rows);
}

// The registered fused-attention library when it takes this call, else nullptr: asked for, a
// batch of equal segments filling q without a key mask, one row stride per role (q/o/dO/dQ and
// k/v/dK/dV), and 16-byte aligned rows (the library's vector loads).
inline fused_attention_library* fused_library_for(const attention_config& c, const attention_segments& segs,
                                                  std::initializer_list<device_matrix<const bf16>> q_like,
                                                  std::initializer_list<device_matrix<const bf16>> kv_like,
                                                  fused_attention_shape& shape) {
  fused_attention_library* library = registered_fused_attention_library();
  if (library == nullptr || !c.fused_library || c.key_valid != nullptr || !segs.equal_lengths) return nullptr;
  const auto& q = *q_like.begin();
  const auto& k = *kv_like.begin();
  if (q.rows != static_cast<std::int64_t>(segs.count) * segs.max_length) return nullptr;
  const auto aligned = [](const device_matrix<const bf16>& m, std::int64_t ld) {
    return m.ld == ld && ld % 8 == 0 && reinterpret_cast<std::uintptr_t>(m.data) % 16 == 0;
  };
  for (const auto& m : q_like) {
    if (!aligned(m, q.ld)) return nullptr;
  }
  for (const auto& m : kv_like) {
    if (!aligned(m, k.ld)) return nullptr;
  }
  shape = fused_attention_shape{segs.count, segs.max_length, static_cast<int>(c.heads), static_cast<int>(c.kv_heads),
                                static_cast<int>(c.head_dim), q.ld, k.ld, c.scale, c.causal, c.fused_workspace_limit};
  return library->accepts(shape) ? library : nullptr;
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
  const detail::attn_args a = detail::make_args(c, segs, q.rows);
  if constexpr (std::is_same_v<T, bf16>) {
    if (tensor_cores) {
      fused_attention_shape shape;
      if (auto* library = detail::fused_library_for(c, segs, {q, device_matrix<const T>(o)}, {k, v}, shape)) {
        library->forward(shape, q.data, k.data, v.data, o.data, lse, stream);
        return;
      }
      detail::attn_head_dim(c.head_dim, [&]<int D>() {
        detail::flash_forward<D>(a, segs.max_length, segs.count, q, k, v, o, lse, stream);
      });
      return;
    }
  }
  detail::attn_head_dim(c.head_dim, [&]<int D>() {
    using P = detail::fp32_cuda_core_policy<D>;
    const auto kernel = detail::attention_forward_kernel<P, T>;
    constexpr std::size_t smem = detail::attention_forward_smem<P>::bytes;
    detail::attn_set_smem(kernel, smem);
    const dim3 grid(detail::attn_row_tiles(segs), static_cast<unsigned>(c.heads), static_cast<unsigned>(segs.count));
    kernel<<<grid, detail::attn_threads, smem, stream>>>(a, q.data, q.ld, k.data, k.ld, v.data, v.ld, o.data, o.ld,
                                                         lse);
    AQ_CUDA_CHECK_LAUNCH();
  });
}

// dq [rows, heads·dim], dk/dv [rows, kv_heads·dim] are overwritten (rows inside segments).
// delta is a device workspace of heads·rows floats (rowsum(dO∘O), kept for inspection; the fused
// library keeps its own and leaves it alone). lse comes from attention_forward with the same
// config and segments; the library keeps aq's lse layout and values, so either implementation's
// backward reads either's forward.
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
  const detail::attn_args a = detail::make_args(c, segs, q.rows);
  if constexpr (std::is_same_v<T, bf16>) {
    if (tensor_cores) {
      fused_attention_shape shape;
      if (auto* library = detail::fused_library_for(c, segs, {q, o, d_o, device_matrix<const T>(dq)},
                                                    {k, v, device_matrix<const T>(dk), device_matrix<const T>(dv)},
                                                    shape)) {
        library->backward(shape, q.data, k.data, v.data, o.data, lse, d_o.data, dq.data, dk.data, dv.data, stream);
        return;
      }
      detail::attn_head_dim(c.head_dim, [&]<int D>() {
        detail::flash_backward<D>(a, segs.max_length, segs.count, q, k, v, o, lse, d_o, dq, dk, dv, delta, stream);
      });
      return;
    }
  }
  detail::attn_head_dim(c.head_dim, [&]<int D>() {
    using P = detail::fp32_cuda_core_policy<D>;
    const unsigned tiles = detail::attn_row_tiles(segs);
    const auto dq_kernel = detail::attention_backward_dq_kernel<P, T>;
    constexpr std::size_t dq_smem = detail::attention_dq_smem<P>::bytes;
    detail::attn_set_smem(dq_kernel, dq_smem);
    dq_kernel<<<dim3(tiles, static_cast<unsigned>(c.heads), static_cast<unsigned>(segs.count)), detail::attn_threads,
                dq_smem, stream>>>(a, q.data, q.ld, k.data, k.ld, v.data, v.ld, o.data, o.ld, lse, d_o.data, d_o.ld,
                                   dq.data, dq.ld, delta);
    AQ_CUDA_CHECK_LAUNCH();
    const auto dkdv_kernel = detail::attention_backward_dkdv_kernel<P, T>;
    constexpr std::size_t dkdv_smem = detail::attention_dkdv_smem<P>::bytes;
    detail::attn_set_smem(dkdv_kernel, dkdv_smem);
    dkdv_kernel<<<dim3(tiles, static_cast<unsigned>(c.kv_heads), static_cast<unsigned>(segs.count)),
                  detail::attn_threads, dkdv_smem, stream>>>(a, q.data, q.ld, k.data, k.ld, v.data, v.ld, lse, delta,
                                                             d_o.data, d_o.ld, dk.data, dk.ld, dv.data, dv.ld);
    AQ_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace aq::cuda
