// Scaled dot-product attention on the GPU, the counterpart of backend/cpu/attention.hpp: GQA over
// independent segments (cu_seqlens), causal + key-padding mask, both masked-row policies, a tiled
// online-softmax forward that saves the log-sum-exp rows, and the input-gradient backward.
// One kernel family (forward, dQ, dK/dV) holds the tiling, masks, softmax and gradient steps; an
// MMA policy supplies the tile products and the precision of what they read: fp32 on the CUDA
// cores, or bf16 on the tensor cores (WMMA).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/model/attention_config.hpp"

namespace aq::cuda {

// Shared with the CPU backend (model/attention_config.hpp); key_valid is a device pointer here.
using aq::attention_config;
using aq::masked_row_policy;

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

// ---- MMA policies ------------------------------------------------------------------------------
// A policy<D> (D = head_dim) describes the shared tiles and the products over them:
//   operand, ld        Q/K/V/dO tile element and row stride; load() fills a tile from global rows,
//                      value() reads an element as fp32
//   weight, ldw        P/dS tile element (64 × 32) and row stride; to_weight() rounds into it
//   score_tile_bytes   fp32 64 × 32 tile a product S or dP passes through (0: registers)
//   staging_tile_bytes fp32 64 × D tile an accumulator is read back through (0: registers)
//   shared_memory()    the dynamic shared memory, declared with the type and alignment the tiles need
//   scores, dot()      64 × 32 = A·Bᵀ product over D, read per thread with at(i, j)
//   accumulator        64 × D sum of weight·operand products: zero(), accumulate(), and
//                      read_back() to hand each thread its elements (i, j)
//   add_product()      thread-owned fp32 acc[4][D/8] += P·V (the forward rescales acc per tile)
//   uniform_weight(), add_uniform_product(): a masked row's 1/L weights under attend_all
//   sync_products()    the barrier a product needs between its writers and readers

// fp32 tiles, products as fp32 FMAs on the CUDA cores into per-thread registers.
template <int D>
struct fp32_cuda_core_policy {
  static constexpr int head_dim = D;
  using operand = float;
  using weight = float;
  static constexpr int ld = D + 1;  // odd stride: tile rows land on distinct banks
  static constexpr int ldw = attn_cols + 1;
  static constexpr std::size_t score_tile_bytes = 0;
  static constexpr std::size_t staging_tile_bytes = 0;
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
  __device__ static float value(float x) { return x; }
  __device__ static float to_weight(float x) { return x; }

  struct scores {
    float v[4][4];
    __device__ explicit scores(float* /*tile: unused, the product stays in registers*/) {}
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
  __device__ static void sync_products() {}  // registers: each thread reads what it computed

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
  __device__ static void read_back(float* /*staging*/, Out out, const Acc&... accs) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        int which = 0;
        (out(which++, i, j, accs[i][j]), ...);
      }
  }

  __device__ static void add_product(const float* p, const float* v, float (&acc)[4][D / 8], float* /*staging*/) {
    accumulate(p, v, acc);
  }
  // 1/L goes into P itself.
  __device__ static float uniform_weight(float uniform) { return uniform; }
  __device__ static void add_uniform_product(const float* p, const float* v, float (&acc)[4][D / 8],
                                            float* staging, float /*uniform: already in p*/) {
    add_product(p, v, acc, staging);
  }
};

// bf16 tiles, products on the tensor cores (WMMA 16×16×16, fp32 accumulation) through fp32
// shared tiles that the per-thread softmax / dS code reads. P and dS are rounded to bf16 before
// their products, as in FlashAttention-2. Warp w computes rows 16w..16w+15, which are the rows
// its threads own.
using attn_half_t = std::uint16_t;  // bf16 bits in shared memory; WMMA reads them as __nv_bfloat16

__device__ inline const __nv_bfloat16* attn_wmma_ptr(const attn_half_t* p) {
  return reinterpret_cast<const __nv_bfloat16*>(p);
}

using attn_frag_acc = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;
using attn_frag_a = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major>;
using attn_frag_bt =
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::col_major>;
using attn_frag_b = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major>;

template <int D>
struct bf16_wmma_policy {
  static constexpr int head_dim = D;
  using operand = attn_half_t;
  using weight = attn_half_t;
  static constexpr int ld = D + 8;            // bf16 operand tiles (16-byte multiple)
  static constexpr int ldw = attn_cols + 8;   // bf16 64 × 32 probability / dS tiles
  static constexpr int ldc = attn_cols + 4;   // fp32 64 × 32 product tiles
  static constexpr int ldo = D + 4;           // fp32 64 × D product tiles
  static constexpr std::size_t score_tile_bytes = attn_rows * ldc * sizeof(float);
  static constexpr std::size_t staging_tile_bytes = attn_rows * ldo * sizeof(float);
  __device__ static unsigned char* shared_memory() {
    extern __shared__ __align__(128) unsigned char attn_smem_wmma[];  // WMMA pointers: 32-byte aligned
    return attn_smem_wmma;
  }

  // Copies rows [r0, r0+n) of one head into a bf16 tile (the rest zero), two elements per load.
  __device__ static void load(attn_half_t* dst, int tile_rows, const bf16* src, std::int64_t ld_src,
                              std::int64_t col0, std::int64_t r0, int n) {
    for (int idx = threadIdx.x; idx < tile_rows * (D / 2); idx += attn_threads) {
      const int r = idx / (D / 2);
      const int d = 2 * (idx % (D / 2));
      std::uint32_t pair = 0;
      if (r < n) pair = *reinterpret_cast<const std::uint32_t*>(src + (r0 + r) * ld_src + col0 + d);
      *reinterpret_cast<std::uint32_t*>(dst + r * ld + d) = pair;
    }
  }
  __device__ static float value(attn_half_t x) { return bf16_to_float(bf16::from_bits(x)); }
  __device__ static attn_half_t to_weight(float x) { return float_to_bf16(x).bits; }

  struct scores {
    float* tile;  // fp32 [64][ldc]
    __device__ explicit scores(float* t) : tile(t) {}
    __device__ float at(int i, int j) const {
      const int ty = threadIdx.x / 8;
      const int tx = threadIdx.x % 8;
      return tile[(ty * 4 + i) * ldc + tx + 8 * j];
    }
  };
  // C[16w.., 0..32) = A[16w.., :] · B[0..32, :]ᵀ (A: 64-row bf16 tile, B: 32-row bf16 tile, both D wide),
  // stored to the fp32 [64][ldc] tile.
  __device__ static void dot(const attn_half_t* a, const attn_half_t* b, scores& s) {
    const int w = threadIdx.x / 32;
    attn_frag_acc acc[2];
    nvcuda::wmma::fill_fragment(acc[0], 0.0f);
    nvcuda::wmma::fill_fragment(acc[1], 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      attn_frag_a fa;
      nvcuda::wmma::load_matrix_sync(fa, attn_wmma_ptr(a + 16 * w * ld + 16 * kk), ld);
#pragma unroll
      for (int n = 0; n < 2; ++n) {
        attn_frag_bt fb;
        nvcuda::wmma::load_matrix_sync(fb, attn_wmma_ptr(b + 16 * n * ld + 16 * kk), ld);
        nvcuda::wmma::mma_sync(acc[n], fa, fb, acc[n]);
      }
    }
#pragma unroll
    for (int n = 0; n < 2; ++n) {
      nvcuda::wmma::store_matrix_sync(s.tile + 16 * w * ldc + 16 * n, acc[n], ldc, nvcuda::wmma::mem_row_major);
    }
  }
  __device__ static void sync_products() { __syncthreads(); }  // shared tiles

  using accumulator = attn_frag_acc[D / 16];
  __device__ static void zero(accumulator& acc) {
#pragma unroll
    for (int nt = 0; nt < D / 16; ++nt) nvcuda::wmma::fill_fragment(acc[nt], 0.0f);
  }
  // acc[nt] += P[16w.., 0..32) · V[0..32, 16nt..16nt+16) (P: bf16 [64][ldw], V: bf16 [32][ld]).
  __device__ static void accumulate(const attn_half_t* p, const attn_half_t* v, accumulator& acc) {
    const int w = threadIdx.x / 32;
    attn_frag_a fa[2];
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      nvcuda::wmma::load_matrix_sync(fa[kk], attn_wmma_ptr(p + 16 * w * ldw + 16 * kk), ldw);
    }
#pragma unroll
    for (int nt = 0; nt < D / 16; ++nt) {
#pragma unroll
      for (int kk = 0; kk < 2; ++kk) {
        attn_frag_b fb;
        nvcuda::wmma::load_matrix_sync(fb, attn_wmma_ptr(v + 16 * kk * ld + 16 * nt), ld);
        nvcuda::wmma::mma_sync(acc[nt], fa[kk], fb, acc[nt]);
      }
    }
  }
  __device__ static void store(const accumulator& acc, float* staging) {
    const int w = threadIdx.x / 32;
#pragma unroll
    for (int nt = 0; nt < D / 16; ++nt) {
      nvcuda::wmma::store_matrix_sync(staging + 16 * w * ldo + 16 * nt, acc[nt], ldo, nvcuda::wmma::mem_row_major);
    }
  }
  // Hands out(which, i, j, x) element (i, j) of each accumulator (which: its index), one
  // accumulator at a time through the staging tile.
  template <class Out, class... Acc>
  __device__ static void read_back(float* staging, Out out, const Acc&... accs) {
    int which = 0;
    const auto one = [&](const accumulator& acc) {
      if (which > 0) sync_products();  // the previous one is read: the staging tile is free again
      store(acc, staging);
      sync_products();
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < D / 8; ++j) out(which, i, j, staged(staging, i, j));
      ++which;
    };
    (one(accs), ...);
  }

  // The tile's P·V into fresh fragments, staged, then added to the thread-owned rows.
  __device__ static void add_product(const attn_half_t* p, const attn_half_t* v, float (&acc)[4][D / 8],
                                     float* staging) {
    stage_product(p, v, staging);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < D / 8; ++j) acc[i][j] += staged(staging, i, j);
  }
  // 1/L is rarely a bf16 value: P holds exact 1s and the fp32 product is scaled by 1/L.
  __device__ static float uniform_weight(float /*uniform*/) { return 1.0f; }
  __device__ static void add_uniform_product(const attn_half_t* p, const attn_half_t* v, float (&acc)[4][D / 8],
                                             float* staging, float uniform) {
    stage_product(p, v, staging);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < D / 8; ++j) acc[i][j] += staged(staging, i, j) * uniform;
  }

 private:
  __device__ static float staged(const float* staging, int i, int j) {
    const int ty = threadIdx.x / 8;
    const int tx = threadIdx.x % 8;
    return staging[(ty * 4 + i) * ldo + tx + 8 * j];
  }
  __device__ static void stage_product(const attn_half_t* p, const attn_half_t* v, float* staging) {
    {
      accumulator pv;
      zero(pv);
      accumulate(p, v, pv);
      store(pv, staging);
    }
    sync_products();
  }
};

// ---- Shared by every policy ----------------------------------------------------------------------

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

// Shared-memory layouts as byte offsets, in order: the fp32 product tiles first (WMMA wants
// aligned fp32 tiles; empty for the fp32 policy), then the operand tiles, the weight tiles and
// the per-row values. bytes is the dynamic shared memory of the launch.
template <class P>
struct attn_tile_bytes {
  static constexpr std::size_t rows = attn_rows * P::ld * sizeof(typename P::operand);
  static constexpr std::size_t cols = attn_cols * P::ld * sizeof(typename P::operand);
  static constexpr std::size_t weights = attn_rows * P::ldw * sizeof(typename P::weight);
};

template <class P>
struct attention_forward_smem {
  using B = attn_tile_bytes<P>;
  static constexpr std::size_t s = 0;
  static constexpr std::size_t staging = s + P::score_tile_bytes;
  static constexpr std::size_t q = staging + P::staging_tile_bytes;
  static constexpr std::size_t k = q + B::rows;
  static constexpr std::size_t v = k + B::cols;
  static constexpr std::size_t p = v + B::cols;
  static constexpr std::size_t valid = p + B::weights;
  static constexpr std::size_t bytes = valid + attn_cols;
};

template <class P>
struct attention_dq_smem {
  using B = attn_tile_bytes<P>;
  static constexpr std::size_t s = 0;
  static constexpr std::size_t dp = s + P::score_tile_bytes;
  static constexpr std::size_t staging = dp + P::score_tile_bytes;
  static constexpr std::size_t q = staging + P::staging_tile_bytes;
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
  static constexpr std::size_t s = 0;
  static constexpr std::size_t dp = s + P::score_tile_bytes;
  static constexpr std::size_t staging = dp + P::score_tile_bytes;
  static constexpr std::size_t k = staging + P::staging_tile_bytes;
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
  using op = typename P::operand;
  const int seg = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / a.group;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int q0 = blockIdx.x * attn_rows;
  if (q0 >= length) return;
  unsigned char* attn_smem = P::shared_memory();
  float* ss = attn_smem_at<float>(attn_smem, L::s);
  float* so = attn_smem_at<float>(attn_smem, L::staging);
  op* sq = attn_smem_at<op>(attn_smem, L::q);
  op* sk = attn_smem_at<op>(attn_smem, L::k);
  op* sv = attn_smem_at<op>(attn_smem, L::v);
  auto* sp = attn_smem_at<typename P::weight>(attn_smem, L::p);
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
    typename P::scores scores(ss);
    P::dot(sq, sk, scores);
    P::sync_products();
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
        sp[(ty * 4 + i) * P::ldw + tx + 8 * j] = P::to_weight(p);
      }
      l[i] = l[i] * alpha + row;  // per-lane partial; lanes of a row share alpha
      m[i] = m_new;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) acc[i][j] *= alpha;
    }
    __syncthreads();
    P::add_product(sp, sv, acc, so);
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
              P::to_weight(m[i] == -INFINITY && tx + 8 * j < n ? P::uniform_weight(uniform) : 0.0f);
        }
      __syncthreads();
      P::add_uniform_product(sp, sv, acc, so, uniform);
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
  using op = typename P::operand;
  const int seg = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / a.group;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int q0 = blockIdx.x * attn_rows;
  if (q0 >= length) return;
  unsigned char* attn_smem = P::shared_memory();
  float* ss = attn_smem_at<float>(attn_smem, L::s);
  float* sdp = attn_smem_at<float>(attn_smem, L::dp);
  float* so = attn_smem_at<float>(attn_smem, L::staging);
  op* sq = attn_smem_at<op>(attn_smem, L::q);
  op* sdo = attn_smem_at<op>(attn_smem, L::d_o);
  op* sk = attn_smem_at<op>(attn_smem, L::k);
  op* sv = attn_smem_at<op>(attn_smem, L::v);
  auto* sds = attn_smem_at<typename P::weight>(attn_smem, L::ds);
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
        part = fmaf(P::value(sdo[r * P::ld + tx + 8 * j]), to_float(orow[tx + 8 * j]), part);
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
    typename P::scores s(ss), dp(sdp);
    P::dot(sq, sk, s);
    P::dot(sdo, sv, dp);
    P::sync_products();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qi = q0 + ty * 4 + i;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int kj = kv0 + tx + 8 * j;
        const float p = qi < length ? attn_prob(a, svalid, qi, kj, kv0, length, s.at(i, j), row_lse[i]) : 0.0f;
        sds[(ty * 4 + i) * P::ldw + tx + 8 * j] = P::to_weight(p * (dp.at(i, j) - row_delta[i]));
      }
    }
    __syncthreads();
    P::accumulate(sds, sk, acc);
    __syncthreads();
  }
  P::read_back(so, [&](int /*which*/, int i, int j, float x) {
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
  using op = typename P::operand;
  const int seg = blockIdx.z;
  const int g = blockIdx.y;
  const std::int64_t start = a.cu_seqlens[seg];
  const int length = a.cu_seqlens[seg + 1] - a.cu_seqlens[seg];
  const int k0 = blockIdx.x * attn_rows;
  if (k0 >= length) return;
  unsigned char* attn_smem = P::shared_memory();
  float* ss = attn_smem_at<float>(attn_smem, L::s);
  float* sdp = attn_smem_at<float>(attn_smem, L::dp);
  float* so = attn_smem_at<float>(attn_smem, L::staging);
  op* sk = attn_smem_at<op>(attn_smem, L::k);
  op* sv = attn_smem_at<op>(attn_smem, L::v);
  op* sq = attn_smem_at<op>(attn_smem, L::q);
  op* sdo = attn_smem_at<op>(attn_smem, L::d_o);
  auto* sp = attn_smem_at<typename P::weight>(attn_smem, L::p);
  auto* sds = attn_smem_at<typename P::weight>(attn_smem, L::ds);
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
      typename P::scores s(ss), dp(sdp);
      P::dot(sk, sq, s);   // s(i, j) = K[k0+ty·4+i] · Q[q0+tx+8j]
      P::dot(sv, sdo, dp);  // dp(i, j) = V · dO
      P::sync_products();
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int qj = q0 + tx + 8 * j;
        const float row_lse = slse[tx + 8 * j];
        const float row_delta = sdelta[tx + 8 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int ki = k0 + ty * 4 + i;
          const float p = qj < length ? attn_prob(a, svalid, qj, ki, k0, length, s.at(i, j), row_lse) : 0.0f;
          sp[(ty * 4 + i) * P::ldw + tx + 8 * j] = P::to_weight(p);
          sds[(ty * 4 + i) * P::ldw + tx + 8 * j] = P::to_weight(p * (dp.at(i, j) - row_delta));
        }
      }
      __syncthreads();
      P::accumulate(sp, sdo, dv_acc);
      P::accumulate(sds, sq, dk_acc);
      __syncthreads();
    }
  }
  P::read_back(so, [&](int which, int i, int j, float x) {
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

// Calls f.template operator()<Policy>() with the policy for head_dim (checked by check_attention)
// and storage: bf16_wmma_policy where the tensor cores run, fp32_cuda_core_policy otherwise.
template <class T, class F>
void attn_dispatch(std::int64_t head_dim, bool tensor_cores, F f) {
  const auto with_head_dim = [&]<int D>() {
    if constexpr (std::is_same_v<T, bf16>) {
      if (tensor_cores) {
        f.template operator()<bf16_wmma_policy<D>>();
        return;
      }
    }
    f.template operator()<fp32_cuda_core_policy<D>>();
  };
  switch (head_dim) {
    case 16: with_head_dim.template operator()<16>(); break;
    case 32: with_head_dim.template operator()<32>(); break;
    case 64: with_head_dim.template operator()<64>(); break;
    default: with_head_dim.template operator()<128>(); break;
  }
}

// Grid rows: one block per 64-row tile of the longest segment.
inline unsigned attn_row_tiles(const attention_segments& segs) {
  return static_cast<unsigned>((segs.max_length + attn_rows - 1) / attn_rows);
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
  detail::attn_dispatch<T>(c.head_dim, tensor_cores, [&]<class P>() {
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
  const detail::attn_args a = detail::make_args(c, segs, q.rows);
  detail::attn_dispatch<T>(c.head_dim, tensor_cores, [&]<class P>() {
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
