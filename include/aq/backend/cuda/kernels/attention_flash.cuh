// Attention on the tensor cores, FlashAttention-2 style: bf16 operands, mma.sync m16n8k16 with fp32
// accumulation, scores and probabilities kept in registers (the C fragment of S is the A fragment
// of P·V), the streamed tiles double-buffered through cp.async. Forward, dQ and dK/dV kernels with
// the masks and masked-row policies of attention.cuh's CUDA-core kernels, which stay the fp32
// reference. P and dS are rounded to bf16 before their products, as in FlashAttention-2. No
// atomics: every output element is summed by one thread in a fixed order (bit-reproducible).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "aq/backend/cuda/kernels/attention_args.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/bf16.hpp"

namespace aq::cuda::detail {

inline constexpr int flash_threads = 128;  // 4 warps of 16 rows
inline constexpr int flash_rows = 64;      // the block's own rows (queries; keys in dK/dV)
inline constexpr int flash_cols = 64;      // streamed key tile of the forward and dQ kernels
inline constexpr float flash_log2e = 1.4426950408889634f;

// Streamed query tile of the dK/dV kernel: smaller at D = 128, where dK and dV hold 128 registers.
template <int D>
inline constexpr int flash_dkdv_cols = D > 64 ? 32 : 64;

using flash_u16 = std::uint16_t;  // bf16 bits

// ---- Warp-level primitives ---------------------------------------------------------------------

__device__ inline std::uint32_t flash_smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// c += a · b over a 16 × 8 × 16 step (a: 16 × 16 row-major fragment, b: 16 × 8 column fragment).
__device__ inline void flash_mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8 × 8 bf16 matrices from shared memory, one row address per lane (lanes 8i..8i+7: matrix i).
__device__ inline void flash_ldsm(std::uint32_t (&r)[4], const flash_u16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(flash_smem_addr(p))
               : "memory");
}
__device__ inline void flash_ldsm_trans(std::uint32_t (&r)[4], const flash_u16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(flash_smem_addr(p))
               : "memory");
}

// 16 bytes global → shared without passing through registers; valid = false writes zeros.
__device__ inline void flash_copy16(flash_u16* dst, const flash_u16* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(flash_smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
// 4 bytes global → shared (one float of a row's saved statistics); valid = false writes zero.
__device__ inline void flash_copy4(float* dst, const float* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(flash_smem_addr(dst)), "l"(src),
               "r"(valid ? 4 : 0)
               : "memory");
}
__device__ inline void flash_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ inline void flash_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

__device__ inline std::uint32_t flash_pack(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const std::uint32_t*>(&v);
}

__device__ inline float flash_quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ inline float flash_quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

__device__ inline flash_u16* flash_shared() {
  extern __shared__ __align__(16) unsigned char flash_smem[];
  return reinterpret_cast<flash_u16*>(flash_smem);
}

// ---- Tiles -------------------------------------------------------------------------------------
// A tile is ROWS rows of one head's D columns in shared memory, row stride D + 8 (rows 16-byte
// aligned and ldmatrix rows on distinct banks).

template <int D>
inline constexpr int flash_ld = D + 8;

// Rows [r0, r0+n) of src's columns [col0, col0+D) into a ROWS-row tile, rows ≥ n zero. vec16:
// asynchronous 16-byte copies (rows 16-byte aligned), else synchronous 4-byte copies.
template <int D, int ROWS>
__device__ void flash_load(flash_u16* dst, const flash_u16* src, std::int64_t ld, std::int64_t col0,
                           std::int64_t r0, int n, bool vec16) {
  if (vec16) {
    constexpr int chunks = D / 8;
    for (int i = threadIdx.x; i < ROWS * chunks; i += flash_threads) {
      const int r = i / chunks;
      const int c = (i % chunks) * 8;
      const bool inside = r < n;
      flash_copy16(dst + r * flash_ld<D> + c, inside ? src + (r0 + r) * ld + col0 + c : src, inside);
    }
  } else {
    constexpr int pairs = D / 2;
    for (int i = threadIdx.x; i < ROWS * pairs; i += flash_threads) {
      const int r = i / pairs;
      const int c = (i % pairs) * 2;
      std::uint32_t x = 0;
      if (r < n) x = *reinterpret_cast<const std::uint32_t*>(src + (r0 + r) * ld + col0 + c);
      *reinterpret_cast<std::uint32_t*>(dst + r * flash_ld<D> + c) = x;
    }
  }
}

// The lane's ldmatrix row address for the 16 × 16 block at (r0, c0) of a tile read as an A operand,
// or (with .trans) as a B operand stored k-major: matrices (r0, c0), (r0+8, c0), (r0, c0+8), (r0+8, c0+8).
template <int D>
__device__ inline const flash_u16* flash_at_rows(const flash_u16* tile, int r0, int c0) {
  const int l = threadIdx.x % 32;
  return tile + (r0 + l % 16) * flash_ld<D> + c0 + (l / 16) * 8;
}
// ... for a B operand stored n-major (tile row = n): matrices (n0, k0), (n0, k0+8), (n0+8, k0), (n0+8, k0+8).
template <int D>
__device__ inline const flash_u16* flash_at_cols(const flash_u16* tile, int n0, int k0) {
  const int l = threadIdx.x % 32;
  return tile + (n0 + (l / 16) * 8 + l % 8) * flash_ld<D> + k0 + ((l / 8) % 2) * 8;
}

// ---- Warp products ---------------------------------------------------------------------------------
// A C fragment acc[N/8][4] holds a warp's 16 × N result: acc[j][e] is row lane/4 + 8·(e/2), column
// 8j + 2·(lane%4) + e%2.

// acc[16 × N] += A · Bᵀ: A rows a_row0.. of tile a, B an n-major tile (N rows), both K = D wide.
template <int D, int N>
__device__ void flash_gemm_abt(float (&acc)[N / 8][4], const flash_u16* a, int a_row0, const flash_u16* b) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    std::uint32_t af[4];
    flash_ldsm(af, flash_at_rows<D>(a, a_row0, kk * 16));
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      std::uint32_t bf[4];
      flash_ldsm(bf, flash_at_cols<D>(b, np * 16, kk * 16));
      flash_mma(acc[2 * np], af, bf[0], bf[1]);
      flash_mma(acc[2 * np + 1], af, bf[2], bf[3]);
    }
  }
}

// acc[16 × N] += A · Bᵀ with A's fragments in registers (K = D).
template <int D, int N>
__device__ void flash_gemm_regs_bt(float (&acc)[N / 8][4], const std::uint32_t (&af)[D / 16][4], const flash_u16* b) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      std::uint32_t bf[4];
      flash_ldsm(bf, flash_at_cols<D>(b, np * 16, kk * 16));
      flash_mma(acc[2 * np], af[kk], bf[0], bf[1]);
      flash_mma(acc[2 * np + 1], af[kk], bf[2], bf[3]);
    }
  }
}

// acc[16 × D] += A · B with A[16 × K] in registers and B a k-major tile (K rows of D columns).
template <int D, int K>
__device__ void flash_gemm_regs_b(float (&acc)[D / 8][4], const std::uint32_t (&af)[K / 16][4], const flash_u16* b) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
#pragma unroll
    for (int np = 0; np < D / 16; ++np) {
      std::uint32_t bf[4];
      flash_ldsm_trans(bf, flash_at_rows<D>(b, kk * 16, np * 16));
      flash_mma(acc[2 * np], af[kk], bf[0], bf[1]);
      flash_mma(acc[2 * np + 1], af[kk], bf[2], bf[3]);
    }
  }
}

// A C fragment [16 × N] rounded to bf16 as the A fragments of the next product (K = N).
template <int N>
__device__ void flash_to_a(std::uint32_t (&af)[N / 16][4], const float (&c)[N / 8][4]) {
#pragma unroll
  for (int kc = 0; kc < N / 16; ++kc) {
    af[kc][0] = flash_pack(c[2 * kc][0], c[2 * kc][1]);
    af[kc][1] = flash_pack(c[2 * kc][2], c[2 * kc][3]);
    af[kc][2] = flash_pack(c[2 * kc + 1][0], c[2 * kc + 1][1]);
    af[kc][3] = flash_pack(c[2 * kc + 1][2], c[2 * kc + 1][3]);
  }
}

// Writes a warp's 16 × D C fragment times factor to rows row0.. of out (only rows < rows_end).
template <int D>
__device__ void flash_store(const float (&acc)[D / 8][4], float factor, flash_u16* out, std::int64_t ld,
                            std::int64_t col0, std::int64_t row0, int local_row0, int rows_end) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = local_row0 + lane / 4 + 8 * half;
    if (r >= rows_end) continue;
    flash_u16* dst = out + (row0 + r) * ld + col0 + 2 * (lane % 4);
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      *reinterpret_cast<std::uint32_t*>(dst + 8 * nt) =
          flash_pack(acc[nt][2 * half] * factor, acc[nt][2 * half + 1] * factor);
    }
  }
}

// ---- Masks -------------------------------------------------------------------------------------

// The segment's first valid key (length if none; 0 without a key mask), for the whole block. A row
// has no allowed key exactly when it lies before it (causal) or when there is none (non-causal).
__device__ inline int flash_first_valid_key(const attn_args& a, std::int64_t start, int length) {
  if (a.key_valid == nullptr) return 0;
  __shared__ int first;
  if (threadIdx.x == 0) first = length;
  __syncthreads();
  int mine = length;
  for (int i = threadIdx.x; i < length; i += flash_threads) {
    if (a.key_valid[start + i] != 0) {
      mine = i;
      break;
    }
  }
  atomicMin(&first, mine);
  __syncthreads();
  return first;
}

__device__ inline bool flash_row_masked(const attn_args& a, int q, int first_valid, int length) {
  return a.key_valid != nullptr && (a.causal ? q < first_valid : first_valid >= length);
}

// Probability of (query q, key kv) from the scaled score x2 (log2 units) and the query's saved
// log-sum-exp (lse, natural log; +inf: a row with no allowed key).
__device__ inline float flash_prob(const attn_args& a, std::int64_t start, int q, int kv, int length, float x2,
                                   float lse) {
  if (isinf(lse)) return a.attend_all && kv < length ? 1.0f / static_cast<float>(length) : 0.0f;
  return attn_key_allowed(a, start, q, kv, length) ? exp2f(x2 - lse * flash_log2e) : 0.0f;
}

// ---- Kernels -----------------------------------------------------------------------------------

// Forward: one block per (64-query tile, head, segment), online softmax over 64-key tiles. A row
// with no allowed key gets lse +inf and, under attend_all, scores 0 on every key of the segment
// (uniform weights, exact 1s in bf16), else zeros.
template <int D>
__global__ void __launch_bounds__(flash_threads)
    flash_forward_kernel(attn_args a, bool vec16, const flash_u16* q, std::int64_t ldq, const flash_u16* k,
                         std::int64_t ldk, const flash_u16* v, std::int64_t ldv, flash_u16* o, std::int64_t ldo,
                         float* lse) {
  constexpr int tile = flash_rows * flash_ld<D>;
  const int h = blockIdx.y;
  const int g = h / a.group;
  const std::int64_t start = a.cu_seqlens[blockIdx.z];
  const int length = a.cu_seqlens[blockIdx.z + 1] - a.cu_seqlens[blockIdx.z];
  const int q0 = (gridDim.x - 1 - blockIdx.x) * flash_rows;  // the longest causal tiles first
  if (q0 >= length) return;
  flash_u16* sq = flash_shared();
  flash_u16* sk = sq + tile;      // two stages
  flash_u16* sv = sk + 2 * tile;  // two stages
  const int lane = threadIdx.x % 32;
  const int w = threadIdx.x / 32;
  const int first_valid = flash_first_valid_key(a, start, length);
  const int rq[2] = {q0 + 16 * w + lane / 4, q0 + 16 * w + lane / 4 + 8};
  const bool masked[2] = {flash_row_masked(a, rq[0], first_valid, length),
                          flash_row_masked(a, rq[1], first_valid, length)};
  const bool all_keys = a.attend_all && flash_row_masked(a, q0, first_valid, length);
  const int kv_end = a.causal && !all_keys ? min(length, q0 + flash_rows) : length;
  const int tiles = (kv_end + flash_cols - 1) / flash_cols;

  flash_load<D, flash_rows>(sq, q, ldq, static_cast<std::int64_t>(h) * D, start + q0, min(flash_rows, length - q0),
                            vec16);
  flash_load<D, flash_cols>(sk, k, ldk, static_cast<std::int64_t>(g) * D, start, min(flash_cols, length), vec16);
  flash_load<D, flash_cols>(sv, v, ldv, static_cast<std::int64_t>(g) * D, start, min(flash_cols, length), vec16);
  flash_commit();

  float acc[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};
  std::uint32_t qf[D / 16][4];
  const float scale2 = a.scale * flash_log2e;
  for (int t = 0; t < tiles; ++t) {
    flash_wait_all();
    __syncthreads();  // tile t landed; every warp is done with tile t-1, whose stage is refilled next
    if (t == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) flash_ldsm(qf[kk], flash_at_rows<D>(sq, 16 * w, 16 * kk));
    }
    if (t + 1 < tiles) {
      const int next = (t + 1) * flash_cols;
      const int stage = (t + 1) % 2;
      flash_load<D, flash_cols>(sk + stage * tile, k, ldk, static_cast<std::int64_t>(g) * D, start + next,
                                min(flash_cols, length - next), vec16);
      flash_load<D, flash_cols>(sv + stage * tile, v, ldv, static_cast<std::int64_t>(g) * D, start + next,
                                min(flash_cols, length - next), vec16);
      flash_commit();
    }
    const int kv0 = t * flash_cols;
    float s[flash_cols / 8][4] = {};
    flash_gemm_regs_bt<D, flash_cols>(s, qf, sk + (t % 2) * tile);

    const bool edge = a.key_valid != nullptr || kv0 + flash_cols > length || (a.causal && kv0 + flash_cols - 1 > q0);
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < flash_cols / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e / 2;
        const int kv = kv0 + 8 * j + 2 * (lane % 4) + e % 2;
        float x = s[j][e] * scale2;
        if (edge) {
          if (masked[r]) {
            x = a.attend_all && kv < length ? 0.0f : -INFINITY;
          } else if (!attn_key_allowed(a, start, rq[r], kv, length)) {
            x = -INFINITY;
          }
        }
        s[j][e] = x;
        tile_max[r] = fmaxf(tile_max[r], x);
      }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float m_new = fmaxf(m[r], flash_quad_max(tile_max[r]));
      alpha[r] = m_new == -INFINITY ? 1.0f : exp2f(m[r] - m_new);  // nothing allowed yet: stay at zero
      m[r] = m_new;
      l[r] *= alpha[r];
    }
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nt][e] *= alpha[e / 2];
#pragma unroll
    for (int j = 0; j < flash_cols / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = m[e / 2] == -INFINITY ? 0.0f : exp2f(s[j][e] - m[e / 2]);
        s[j][e] = p;
        l[e / 2] += p;  // per-lane partial; the quad is summed once at the end
      }
    std::uint32_t pf[flash_cols / 16][4];
    flash_to_a<flash_cols>(pf, s);
    flash_gemm_regs_b<D, flash_cols>(acc, pf, sv + (t % 2) * tile);
  }

  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] = flash_quad_sum(l[r]);
    inv[r] = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    if (rq[r] < length && lane % 4 == 0) {
      lse[h * a.rows + start + rq[r]] =
          masked[r] || m[r] == -INFINITY ? INFINITY : (m[r] + log2f(l[r])) / flash_log2e;
    }
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      acc[nt][2 * r] *= inv[r];
      acc[nt][2 * r + 1] *= inv[r];
    }
  }
  flash_store<D>(acc, 1.0f, o, ldo, static_cast<std::int64_t>(h) * D, start + q0, 16 * w, length - q0);
}

// delta = rowsum(dO ∘ O) of rows row0 + 16w .. +15 (global bf16), written to delta and handed to
// the lanes that own each row (lane/4 and lane/4 + 8).
template <int D>
__device__ void flash_row_deltas(const flash_u16* o, std::int64_t ldo, const flash_u16* d_o, std::int64_t lddo,
                                 std::int64_t col0, std::int64_t row0, int local_row0, int rows_end, float* delta,
                                 float (&mine)[2]) {
  const int lane = threadIdx.x % 32;
  mine[0] = mine[1] = 0.0f;
  for (int r = 0; r < 16; ++r) {
    const int local = local_row0 + r;
    if (local >= rows_end) break;
    float part = 0.0f;
    for (int d = 2 * lane; d < D; d += 64) {
      const __nv_bfloat162 x = *reinterpret_cast<const __nv_bfloat162*>(o + (row0 + local) * ldo + col0 + d);
      const __nv_bfloat162 y = *reinterpret_cast<const __nv_bfloat162*>(d_o + (row0 + local) * lddo + col0 + d);
      part = fmaf(__low2float(x), __low2float(y), part);
      part = fmaf(__high2float(x), __high2float(y), part);
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) part += __shfl_xor_sync(0xffffffffu, part, off);
    if (lane == 0) delta[row0 + local] = part;
    if (r == lane / 4) mine[0] = part;
    if (r == lane / 4 + 8) mine[1] = part;
  }
}

// dQ: one block per (64-query tile, head, segment) over 64-key tiles; also writes delta for dK/dV.
template <int D>
__global__ void __launch_bounds__(flash_threads)
    flash_dq_kernel(attn_args a, bool vec16, const flash_u16* q, std::int64_t ldq, const flash_u16* k,
                    std::int64_t ldk, const flash_u16* v, std::int64_t ldv, const flash_u16* o, std::int64_t ldo,
                    const float* lse, const flash_u16* d_o, std::int64_t lddo, flash_u16* dq, std::int64_t lddq,
                    float* delta) {
  constexpr int tile = flash_rows * flash_ld<D>;
  const int h = blockIdx.y;
  const int g = h / a.group;
  const std::int64_t start = a.cu_seqlens[blockIdx.z];
  const int length = a.cu_seqlens[blockIdx.z + 1] - a.cu_seqlens[blockIdx.z];
  const int q0 = (gridDim.x - 1 - blockIdx.x) * flash_rows;
  if (q0 >= length) return;
  flash_u16* sq = flash_shared();
  flash_u16* sdo = sq + tile;
  flash_u16* sk = sdo + tile;     // two stages
  flash_u16* sv = sk + 2 * tile;  // two stages
  const int lane = threadIdx.x % 32;
  const int w = threadIdx.x / 32;
  const std::int64_t qcol = static_cast<std::int64_t>(h) * D;
  const std::int64_t kcol = static_cast<std::int64_t>(g) * D;
  const int nq = min(flash_rows, length - q0);
  flash_load<D, flash_rows>(sq, q, ldq, qcol, start + q0, nq, vec16);
  flash_load<D, flash_rows>(sdo, d_o, lddo, qcol, start + q0, nq, vec16);
  flash_load<D, flash_cols>(sk, k, ldk, kcol, start, min(flash_cols, length), vec16);
  flash_load<D, flash_cols>(sv, v, ldv, kcol, start, min(flash_cols, length), vec16);
  flash_commit();

  float row_delta[2];
  flash_row_deltas<D>(o, ldo, d_o, lddo, qcol, start + q0, 16 * w, nq, delta + h * a.rows, row_delta);
  const int rq[2] = {q0 + 16 * w + lane / 4, q0 + 16 * w + lane / 4 + 8};
  float row_lse[2];
  bool masked_any = false;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_lse[r] = rq[r] < length ? lse[h * a.rows + start + rq[r]] : 0.0f;
    masked_any |= isinf(row_lse[r]);
  }
  // Rows with no allowed key see every key of the segment under attend_all.
  const bool all_keys = __syncthreads_or(masked_any) && a.attend_all;
  const int kv_end = a.causal && !all_keys ? min(length, q0 + flash_rows) : length;
  const int tiles = (kv_end + flash_cols - 1) / flash_cols;
  const float scale2 = a.scale * flash_log2e;

  float acc[D / 8][4] = {};
  std::uint32_t qf[D / 16][4], dof[D / 16][4];  // the warp's Q and dO rows, read once
  for (int t = 0; t < tiles; ++t) {
    flash_wait_all();
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        flash_ldsm(qf[kk], flash_at_rows<D>(sq, 16 * w, 16 * kk));
        flash_ldsm(dof[kk], flash_at_rows<D>(sdo, 16 * w, 16 * kk));
      }
    }
    if (t + 1 < tiles) {
      const int next = (t + 1) * flash_cols;
      const int stage = (t + 1) % 2;
      flash_load<D, flash_cols>(sk + stage * tile, k, ldk, kcol, start + next, min(flash_cols, length - next), vec16);
      flash_load<D, flash_cols>(sv + stage * tile, v, ldv, kcol, start + next, min(flash_cols, length - next), vec16);
      flash_commit();
    }
    const flash_u16* kt = sk + (t % 2) * tile;
    const int kv0 = t * flash_cols;
    float s[flash_cols / 8][4] = {};
    float dp[flash_cols / 8][4] = {};
    flash_gemm_regs_bt<D, flash_cols>(s, qf, kt);
    flash_gemm_regs_bt<D, flash_cols>(dp, dof, sv + (t % 2) * tile);
    const bool edge = a.key_valid != nullptr || all_keys || kv0 + flash_cols > length ||
                      (a.causal && kv0 + flash_cols - 1 > q0) || q0 + flash_rows > length;
#pragma unroll
    for (int j = 0; j < flash_cols / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e / 2;
        const int kv = kv0 + 8 * j + 2 * (lane % 4) + e % 2;
        const float x2 = s[j][e] * scale2;
        float p;
        if (!edge) {
          p = exp2f(x2 - row_lse[r] * flash_log2e);
        } else {
          p = rq[r] < length ? flash_prob(a, start, rq[r], kv, length, x2, row_lse[r]) : 0.0f;
        }
        s[j][e] = p * (dp[j][e] - row_delta[r]);  // dS
      }
    std::uint32_t dsf[flash_cols / 16][4];
    flash_to_a<flash_cols>(dsf, s);
    flash_gemm_regs_b<D, flash_cols>(acc, dsf, kt);
  }
  flash_store<D>(acc, a.scale, dq, lddq, qcol, start + q0, 16 * w, nq);
}

// dK and dV: one block per (64-key tile, kv head, segment), over the group's heads and the query
// tiles that can see the keys, so every dK/dV element is summed by one thread in a fixed order.
template <int D>
__global__ void __launch_bounds__(flash_threads)
    flash_dkdv_kernel(attn_args a, bool vec16, const flash_u16* q, std::int64_t ldq, const flash_u16* k,
                      std::int64_t ldk, const flash_u16* v, std::int64_t ldv, const float* lse, const float* delta,
                      const flash_u16* d_o, std::int64_t lddo, flash_u16* dk, std::int64_t lddk, flash_u16* dv,
                      std::int64_t lddv) {
  constexpr int QT = flash_dkdv_cols<D>;
  constexpr int key_tile = flash_rows * flash_ld<D>;
  constexpr int query_tile = QT * flash_ld<D>;
  const int g = blockIdx.y;
  const std::int64_t start = a.cu_seqlens[blockIdx.z];
  const int length = a.cu_seqlens[blockIdx.z + 1] - a.cu_seqlens[blockIdx.z];
  const int k0 = blockIdx.x * flash_rows;
  if (k0 >= length) return;
  flash_u16* sk = flash_shared();
  flash_u16* sv = sk + key_tile;
  flash_u16* sq = sv + key_tile;          // two stages
  flash_u16* sdo = sq + 2 * query_tile;   // two stages
  // The query tile's lse and delta beside it (two stages each), so the softmax step reads them
  // from shared memory instead of waiting on global loads after its products.
  float* s_lse = reinterpret_cast<float*>(sdo + 2 * query_tile);
  float* s_delta = s_lse + 2 * QT;
  const int lane = threadIdx.x % 32;
  const int w = threadIdx.x / 32;
  const std::int64_t kcol = static_cast<std::int64_t>(g) * D;
  const int nk = min(flash_rows, length - k0);
  const int first_valid = flash_first_valid_key(a, start, length);
  flash_load<D, flash_rows>(sk, k, ldk, kcol, start + k0, nk, vec16);
  flash_load<D, flash_rows>(sv, v, ldv, kcol, start + k0, nk, vec16);

  // Work items: (head of the group, query tile), skipping causal tiles before the keys unless a
  // row with no allowed key (attend_all) sees all of them.
  const int q_tiles = (length + QT - 1) / QT;
  const int items = a.group * q_tiles;
  const auto needed = [&](int item) {
    const int q0 = (item % q_tiles) * QT;
    return !a.causal || q0 + QT - 1 >= k0 || (a.attend_all && flash_row_masked(a, q0, first_valid, length));
  };
  const auto next_needed = [&](int item) {
    while (item < items && !needed(item)) ++item;
    return item;
  };
  const auto load_item = [&](int item, int stage) {
    const std::int64_t qcol = static_cast<std::int64_t>(g * a.group + item / q_tiles) * D;
    const int q0 = (item % q_tiles) * QT;
    flash_load<D, QT>(sq + stage * query_tile, q, ldq, qcol, start + q0, min(QT, length - q0), vec16);
    flash_load<D, QT>(sdo + stage * query_tile, d_o, lddo, qcol, start + q0, min(QT, length - q0), vec16);
    const std::int64_t head_rows = static_cast<std::int64_t>(g * a.group + item / q_tiles) * a.rows + start + q0;
    for (int i = threadIdx.x; i < QT; i += flash_threads) {
      const bool inside = q0 + i < length;
      flash_copy4(s_lse + stage * QT + i, lse + (inside ? head_rows + i : 0), inside);
      flash_copy4(s_delta + stage * QT + i, delta + (inside ? head_rows + i : 0), inside);
    }
  };
  int item = next_needed(0);
  if (item < items) load_item(item, 0);
  flash_commit();

  const float scale2 = a.scale * flash_log2e;
  float dk_acc[D / 8][4] = {};
  float dv_acc[D / 8][4] = {};
  for (int step = 0; item < items; ++step) {
    flash_wait_all();
    __syncthreads();
    const int following = next_needed(item + 1);
    if (following < items) {
      load_item(following, (step + 1) % 2);
      flash_commit();
    }
    const int q0 = (item % q_tiles) * QT;
    const flash_u16* qt = sq + (step % 2) * query_tile;
    const flash_u16* dot = sdo + (step % 2) * query_tile;
    float st[QT / 8][4] = {};   // Sᵀ: keys × queries
    float dpt[QT / 8][4] = {};  // dPᵀ
    flash_gemm_abt<D, QT>(st, sk, 16 * w, qt);
    flash_gemm_abt<D, QT>(dpt, sv, 16 * w, dot);
    const bool edge = a.key_valid != nullptr || q0 + QT > length || k0 + flash_rows > length ||
                      (a.causal && q0 < k0 + flash_rows - 1);
#pragma unroll
    for (int j = 0; j < QT / 8; ++j)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int qi = q0 + 8 * j + 2 * (lane % 4) + c;
        const bool inside = qi < length;
        const float row_lse = s_lse[(step % 2) * QT + qi - q0];  // 0 past the segment
        const float row_delta = s_delta[(step % 2) * QT + qi - q0];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int e = 2 * half + c;
          const int kv = k0 + 16 * w + lane / 4 + 8 * half;
          const float x2 = st[j][e] * scale2;
          float p;
          if (!edge) {
            p = exp2f(x2 - row_lse * flash_log2e);
          } else {
            p = inside ? flash_prob(a, start, qi, kv, length, x2, row_lse) : 0.0f;
          }
          st[j][e] = p;
          dpt[j][e] = p * (dpt[j][e] - row_delta);  // dSᵀ
        }
      }
    std::uint32_t pf[QT / 16][4], dsf[QT / 16][4];
    flash_to_a<QT>(pf, st);
    flash_to_a<QT>(dsf, dpt);
    flash_gemm_regs_b<D, QT>(dv_acc, pf, dot);
    flash_gemm_regs_b<D, QT>(dk_acc, dsf, qt);
    item = following;
  }
  flash_store<D>(dk_acc, a.scale, dk, lddk, kcol, start + k0, 16 * w, nk);
  flash_store<D>(dv_acc, 1.0f, dv, lddv, kcol, start + k0, 16 * w, nk);
}

// ---- Launchers ----------------------------------------------------------------------------------

template <class Kernel>
void flash_set_smem(Kernel kernel, std::size_t bytes) {
  AQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// Whether every view's rows start 16-byte aligned (asynchronous 16-byte tile copies).
inline bool flash_vec16(std::initializer_list<device_matrix<const bf16>> views) {
  for (const auto& m : views) {
    if (reinterpret_cast<std::uintptr_t>(m.data) % 16 != 0 || m.ld % 8 != 0) return false;
  }
  return true;
}

inline const flash_u16* flash_bits(const bf16* p) { return reinterpret_cast<const flash_u16*>(p); }
inline flash_u16* flash_bits(bf16* p) { return reinterpret_cast<flash_u16*>(p); }

// Grid: (64-row tiles of the longest segment, heads, segments).
inline dim3 flash_grid(int max_length, std::int64_t heads, int segments) {
  return dim3(static_cast<unsigned>((max_length + flash_rows - 1) / flash_rows), static_cast<unsigned>(heads),
              static_cast<unsigned>(segments));
}

template <int D>
void flash_forward(const attn_args& a, int max_length, int segments, const device_matrix<const bf16>& q,
                   const device_matrix<const bf16>& k, const device_matrix<const bf16>& v,
                   const device_matrix<bf16>& o, float* lse, cudaStream_t stream) {
  const bool vec16 = flash_vec16({q, k, v});
  constexpr std::size_t smem = 5 * flash_rows * flash_ld<D> * sizeof(flash_u16);
  flash_set_smem(flash_forward_kernel<D>, smem);
  flash_forward_kernel<D><<<flash_grid(max_length, a.heads, segments), flash_threads, smem, stream>>>(
      a, vec16, flash_bits(q.data), q.ld, flash_bits(k.data), k.ld, flash_bits(v.data), v.ld, flash_bits(o.data),
      o.ld, lse);
  AQ_CUDA_CHECK_LAUNCH();
}

template <int D>
void flash_backward(const attn_args& a, int max_length, int segments, const device_matrix<const bf16>& q,
                    const device_matrix<const bf16>& k, const device_matrix<const bf16>& v,
                    const device_matrix<const bf16>& o, const float* lse, const device_matrix<const bf16>& d_o,
                    const device_matrix<bf16>& dq, const device_matrix<bf16>& dk, const device_matrix<bf16>& dv,
                    float* delta, cudaStream_t stream) {
  const bool vec16 = flash_vec16({q, k, v, d_o});
  constexpr std::size_t dq_smem = 6 * flash_rows * flash_ld<D> * sizeof(flash_u16);
  flash_set_smem(flash_dq_kernel<D>, dq_smem);
  flash_dq_kernel<D><<<flash_grid(max_length, a.heads, segments), flash_threads, dq_smem, stream>>>(
      a, vec16, flash_bits(q.data), q.ld, flash_bits(k.data), k.ld, flash_bits(v.data), v.ld, flash_bits(o.data),
      o.ld, lse, flash_bits(d_o.data), d_o.ld, flash_bits(dq.data), dq.ld, delta);
  AQ_CUDA_CHECK_LAUNCH();
  constexpr std::size_t dkdv_smem = (2 * flash_rows + 4 * flash_dkdv_cols<D>) * flash_ld<D> * sizeof(flash_u16) +
                                    4 * flash_dkdv_cols<D> * sizeof(float);
  flash_set_smem(flash_dkdv_kernel<D>, dkdv_smem);
  flash_dkdv_kernel<D><<<flash_grid(max_length, a.heads / a.group, segments), flash_threads, dkdv_smem, stream>>>(
      a, vec16, flash_bits(q.data), q.ld, flash_bits(k.data), k.ld, flash_bits(v.data), v.ld, lse, delta,
      flash_bits(d_o.data), d_o.ld, flash_bits(dk.data), dk.ld, flash_bits(dv.data), dv.ld);
  AQ_CUDA_CHECK_LAUNCH();
}

}  // namespace aq::cuda::detail
