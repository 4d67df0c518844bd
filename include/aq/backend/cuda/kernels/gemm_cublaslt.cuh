// GEMMs of a linear layer on the GPU through cuBLASLt, with the row-major conventions of
// cpu::linear_forward / cpu::linear_backward_input: on bf16 operands (fp32 accumulation, bf16 or
// fp32 output) the forward Y = X·Wᵀ (+bias) and the input gradient dX = dY·W; on 1-byte codes
// (quantize_codes.cuh) the forward of a quantized recipe, e4m3 × e4m3 with fp32 accumulation or
// int8 × int8 with int32 accumulation. Plans (descriptors and the heuristic's algorithm) are
// cached per problem, so a model step pays the heuristic once per shape.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <type_traits>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"

namespace aq::cuda {

// One algorithm candidate as the heuristic returned it (benchmarks time several).
struct gemm_algo {
  cublasLtMatmulAlgo_t algo{};
  std::size_t workspace_bytes = 0;
};

namespace detail {

template <class T>
constexpr cudaDataType_t cuda_type();
template <>
constexpr cudaDataType_t cuda_type<float>() { return CUDA_R_32F; }
template <>
constexpr cudaDataType_t cuda_type<bf16>() { return CUDA_R_16BF; }
template <>
constexpr cudaDataType_t cuda_type<std::int32_t>() { return CUDA_R_32I; }

// Largest power of two (≤ 256) dividing the address: the heuristic must only offer kernels
// whose vector loads this pointer supports (column blocks of a wider matrix are less aligned).
inline std::uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

template <class Out>
__global__ void add_bias_kernel(Out* y, std::int64_t rows, std::int64_t cols, std::int64_t ld, const float* bias) {
  const std::int64_t n = rows * cols;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const std::int64_t r = i / cols;
    const std::int64_t c = i % cols;
    y[r * ld + c] = from_float<Out>(to_float(y[r * ld + c]) + bias[c]);
  }
}

// Column-major cuBLASLt problem D[m, n] = op(A)[m, k]·op(B)[k, n] (+ C) and everything its plan
// depends on; the row-major operations map onto it without copies.
struct gemm_key {
  bool trans_a = false;
  std::int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldd = 0;
  cudaDataType_t out_type = CUDA_R_32F;
  bool bias = false;
  std::uint32_t align_a = 0, align_b = 0, align_d = 0;
  cudaDataType_t in_type = CUDA_R_16BF;  // A and B: bf16, or e4m3 / int8 codes
  bool scaled = false;                   // e4m3: D scaled by the A and B scale pointers

  auto tie() const {
    return std::tie(trans_a, m, n, k, lda, ldb, ldd, out_type, bias, align_a, align_b, align_d, in_type, scaled);
  }
  bool operator<(const gemm_key& o) const { return tie() < o.tie(); }
};

struct gemm_plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  std::vector<gemm_algo> algos;  // heuristic order; [0] is what the wrapper runs
  bool bias_in_epilogue = false;
  bool integer = false;  // int8 codes: int32 compute, alpha and beta

  gemm_plan() = default;
  gemm_plan(const gemm_plan&) = delete;
  gemm_plan& operator=(const gemm_plan&) = delete;
  ~gemm_plan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

struct heuristic_slot {
  cublasLtMatmulHeuristicResult_t result;
};
static_assert(sizeof(heuristic_slot) == sizeof(cublasLtMatmulHeuristicResult_t));

struct preference {
  cublasLtMatmulPreference_t pref = nullptr;
  preference() { AQ_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref)); }
  preference(const preference&) = delete;
  preference& operator=(const preference&) = delete;
  ~preference() { cublasLtMatmulPreferenceDestroy(pref); }
};

}  // namespace detail

// y[r, c] += bias[c] (fp32 bias) for an output formed without the bias epilogue.
template <class Out>
void add_bias(device_matrix<Out> y, const float* bias, cudaStream_t stream) {
  if (y.rows * y.cols == 0) return;
  constexpr unsigned block = 256;
  detail::add_bias_kernel<Out><<<grid_for(y.rows * y.cols, block), block, 0, stream>>>(y.data, y.rows, y.cols, y.ld, bias);
  AQ_CUDA_CHECK_LAUNCH();
}

// Owns the cuBLASLt handle, a workspace and the plan cache. Calls on one instance must not run
// concurrently on different streams (they share the workspace): use one instance per stream.
class cublaslt_gemm {
 public:
  // 32 MiB is what cuBLASLt's documentation recommends for Hopper.
  explicit cublaslt_gemm(std::size_t workspace_bytes = std::size_t{32} << 20) : workspace_(workspace_bytes) {
    AQ_CUBLAS_CHECK(cublasLtCreate(&handle_));
  }
  cublaslt_gemm(const cublaslt_gemm&) = delete;
  cublaslt_gemm& operator=(const cublaslt_gemm&) = delete;
  ~cublaslt_gemm() {
    plans_.clear();
    if (handle_ != nullptr) cublasLtDestroy(handle_);
  }

  // y[t, o] (+)= Σ_i x[t, i]·w[o, i] (+ bias[o]), x [M, K], w [N, K] (PyTorch's [out, in]), y [M, N].
  template <class Out>
  void linear_forward(device_matrix<const bf16> x, device_matrix<const bf16> w, device_matrix<Out> y,
                      const float* bias = nullptr, bool accumulate = false, cudaStream_t stream = nullptr) {
    const detail::gemm_key key = forward_key(x, w, y, bias);
    detail::gemm_plan& p = plan(key, 1);
    run(p, p.algos.front(), w.data, x.data, y.data, bias, accumulate, stream, y);
  }

  // dx[t, i] (+)= Σ_o dy[t, o]·w[o, i], dy [M, N], w [N, K], dx [M, K]: the input gradient.
  template <class Out>
  void linear_backward_input(device_matrix<const bf16> dy, device_matrix<const bf16> w, device_matrix<Out> dx,
                             bool accumulate = false, cudaStream_t stream = nullptr) {
    const detail::gemm_key key = backward_input_key(dy, w, dx);
    detail::gemm_plan& p = plan(key, 1);
    run(p, p.algos.front(), w.data, dy.data, dx.data, nullptr, accumulate, stream, dx);
  }

  // Up to max_count heuristic candidates for a forward problem ([0] is the wrapper's choice).
  template <class Out>
  std::vector<gemm_algo> forward_algos(device_matrix<const bf16> x, device_matrix<const bf16> w, device_matrix<Out> y,
                                       const float* bias, int max_count) {
    return plan(forward_key(x, w, y, bias), max_count).algos;
  }
  template <class Out>
  void linear_forward_with(const gemm_algo& algo, device_matrix<const bf16> x, device_matrix<const bf16> w,
                           device_matrix<Out> y, const float* bias = nullptr, bool accumulate = false,
                           cudaStream_t stream = nullptr) {
    detail::gemm_plan& p = plan(forward_key(x, w, y, bias), 1);
    run(p, algo, w.data, x.data, y.data, bias, accumulate, stream, y);
  }
  template <class Out>
  std::vector<gemm_algo> backward_input_algos(device_matrix<const bf16> dy, device_matrix<const bf16> w,
                                              device_matrix<Out> dx, int max_count) {
    return plan(backward_input_key(dy, w, dx), max_count).algos;
  }
  template <class Out>
  void linear_backward_input_with(const gemm_algo& algo, device_matrix<const bf16> dy, device_matrix<const bf16> w,
                                  device_matrix<Out> dx, bool accumulate = false, cudaStream_t stream = nullptr) {
    detail::gemm_plan& p = plan(backward_input_key(dy, w, dx), 1);
    run(p, algo, w.data, dy.data, dx.data, nullptr, accumulate, stream, dx);
  }

  // y[t, o] = Σ_i x[t, i]·w[o, i] on codes of `type`: CUDA_R_8F_E4M3 into fp32 y, times
  // *w_factor · *x_factor (device floats) when both are given; CUDA_R_8I into int32 y (the
  // factors then come after, quantize_codes.cuh's dequantize_product).
  // Returns false, computing nothing, when cuBLASLt has no kernel for the problem or refuses
  // every candidate at run time (its heuristic can offer kernels that then report
  // NOT_SUPPORTED): callers fall back to bf16 operands.
  template <class Out>
  [[nodiscard]] bool linear_forward_codes(cudaDataType_t type, device_matrix<const std::uint8_t> x,
                                          device_matrix<const std::uint8_t> w, device_matrix<Out> y,
                                          const float* x_factor, const float* w_factor, cudaStream_t stream) {
    detail::gemm_plan& p = code_plan(codes_key(type, x, w, y, x_factor != nullptr && w_factor != nullptr));
    return run_codes(p, w.data, x.data, y.data, w_factor, x_factor, stream);
  }

  // Whether the bias of this forward shape is fused into the GEMM epilogue (else a separate kernel).
  template <class Out>
  bool bias_fused(device_matrix<const bf16> x, device_matrix<const bf16> w, device_matrix<Out> y, const float* bias) {
    return plan(forward_key(x, w, y, bias), 1).bias_in_epilogue;
  }

  std::size_t cached_plans() const { return plans_.size(); }

 private:
  template <class Out>
  static detail::gemm_key forward_key(const device_matrix<const bf16>& x, const device_matrix<const bf16>& w,
                                      const device_matrix<Out>& y, const float* bias) {
    check_view(x, "cuda linear_forward: x");
    check_view(w, "cuda linear_forward: w");
    check_view(y, "cuda linear_forward: y");
    if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows) {
      throw error("cuda linear_forward: shapes x [" + std::to_string(x.rows) + ", " + std::to_string(x.cols) + "], w [" +
                  std::to_string(w.rows) + ", " + std::to_string(w.cols) + "] -> y [" + std::to_string(y.rows) + ", " +
                  std::to_string(y.cols) + "]");
    }
    // Column-major: Yᵀ[N, M] = (W stored K×N)ᵀ · (X stored K×M).
    return key_of(true, w.rows, w, x, y, bias != nullptr);
  }

  template <class Out>
  static detail::gemm_key backward_input_key(const device_matrix<const bf16>& dy, const device_matrix<const bf16>& w,
                                             const device_matrix<Out>& dx) {
    check_view(dy, "cuda linear_backward_input: dy");
    check_view(w, "cuda linear_backward_input: w");
    check_view(dx, "cuda linear_backward_input: dx");
    if (dy.cols != w.rows || dx.rows != dy.rows || dx.cols != w.cols) {
      throw error("cuda linear_backward_input: shapes dy [" + std::to_string(dy.rows) + ", " + std::to_string(dy.cols) +
                  "], w [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) + "] -> dx [" +
                  std::to_string(dx.rows) + ", " + std::to_string(dx.cols) + "]");
    }
    // Column-major: dXᵀ[K, M] = (W stored K×N) · (dY stored N×M).
    return key_of(false, w.cols, w, dy, dx, false);
  }

  template <class Out>
  static detail::gemm_key codes_key(cudaDataType_t type, const device_matrix<const std::uint8_t>& x,
                                    const device_matrix<const std::uint8_t>& w, const device_matrix<Out>& y, bool scaled) {
    check_view(x, "cuda linear_forward_codes: x");
    check_view(w, "cuda linear_forward_codes: w");
    check_view(y, "cuda linear_forward_codes: y");
    const cudaDataType_t out = detail::cuda_type<std::remove_const_t<Out>>();
    if ((type == CUDA_R_8F_E4M3 && out != CUDA_R_32F) || (type == CUDA_R_8I && (out != CUDA_R_32I || scaled)) ||
        (type != CUDA_R_8F_E4M3 && type != CUDA_R_8I)) {
      throw error("cuda linear_forward_codes: e4m3 codes give fp32 outputs, int8 codes unscaled int32 ones");
    }
    if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows) {
      throw error("cuda linear_forward_codes: shapes x [" + std::to_string(x.rows) + ", " + std::to_string(x.cols) +
                  "], w [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) + "] -> y [" +
                  std::to_string(y.rows) + ", " + std::to_string(y.cols) + "]");
    }
    detail::gemm_key key = key_of(true, w.rows, w, x, y, false);
    key.in_type = type;
    key.scaled = scaled;
    return key;
  }

  // D[m, n] = op(A)·B with B the row-major [n, k] operand b (stored k×n column-major), A the
  // weight a and D the output d.
  template <class In, class Out>
  static detail::gemm_key key_of(bool trans_a, std::int64_t m, const device_matrix<const In>& a,
                                 const device_matrix<const In>& b, const device_matrix<Out>& d, bool bias) {
    return {trans_a, m, b.rows, b.cols, a.ld, b.ld, d.ld, detail::cuda_type<std::remove_const_t<Out>>(), bias,
            detail::alignment_of(a.data), detail::alignment_of(b.data), detail::alignment_of(d.data)};
  }

  // Builds (or finds) the plan; asks the heuristic for at least `count` candidates.
  detail::gemm_plan& plan(const detail::gemm_key& key, int count) {
    auto it = plans_.find(key);
    if (it != plans_.end() && static_cast<int>(it->second->algos.size()) >= count) return *it->second;
    if (key.m <= 0 || key.n <= 0 || key.k <= 0) {
      throw error("cuda gemm: empty problem m=" + std::to_string(key.m) + ", n=" + std::to_string(key.n) +
                  ", k=" + std::to_string(key.k) + " (callers skip empty products)");
    }
    auto p = std::make_unique<detail::gemm_plan>();
    build(*p, key, count, key.bias);
    if (key.bias && p->algos.empty()) {
      // No kernel fuses this bias type: run without the epilogue and add the bias separately.
      p = std::make_unique<detail::gemm_plan>();
      build(*p, key, count, false);
    } else {
      p->bias_in_epilogue = key.bias;
    }
    if (p->algos.empty()) {
      throw error("cuda gemm: cuBLASLt has no algorithm for m=" + std::to_string(key.m) + ", n=" + std::to_string(key.n) +
                  ", k=" + std::to_string(key.k) + " (ld " + std::to_string(key.lda) + "/" + std::to_string(key.ldb) +
                  "/" + std::to_string(key.ldd) + ")");
    }
    auto& slot = plans_[key];
    slot = std::move(p);
    return *slot;
  }

  void build(detail::gemm_plan& p, const detail::gemm_key& key, int count, bool fuse_bias) {
    // int8 codes accumulate exactly in int32 (|code| ≤ 128, so up to 2^17 products fit).
    const bool integer = key.in_type == CUDA_R_8I;
    p.integer = integer;
    AQ_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, integer ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F,
                                             integer ? CUDA_R_32I : CUDA_R_32F));
    const cublasOperation_t ta = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = CUBLAS_OP_N;
    AQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    AQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (key.scaled) {
      // The heuristic must see scaled operands to offer kernels that apply the scales; the real
      // scale pointers replace this stand-in (any device address) at each run.
      const void* stand_in = workspace_.data();
      AQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &stand_in, sizeof(stand_in)));
      AQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &stand_in, sizeof(stand_in)));
    }
    if (fuse_bias) {
      const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
      const cudaDataType_t bias_type = CUDA_R_32F;  // fp32 bias, added before the output rounding
      AQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
      AQ_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
    }
    // Stored (untransposed) column-major extents of A and B.
    const std::int64_t a_rows = key.trans_a ? key.k : key.m;
    const std::int64_t a_cols = key.trans_a ? key.m : key.k;
    AQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, key.in_type, static_cast<std::uint64_t>(a_rows),
                                               static_cast<std::uint64_t>(a_cols), key.lda));
    AQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, key.in_type, static_cast<std::uint64_t>(key.k),
                                               static_cast<std::uint64_t>(key.n), key.ldb));
    AQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, key.out_type, static_cast<std::uint64_t>(key.m),
                                               static_cast<std::uint64_t>(key.n), key.ldd));

    detail::preference guard;
    cublasLtMatmulPreference_t pref = guard.pref;
    const std::uint64_t ws = workspace_.bytes();
    AQ_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    // C is D (accumulation reads the output in place).
    const std::pair<cublasLtMatmulPreferenceAttributes_t, std::uint32_t> alignments[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_d},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_d},
    };
    for (const auto& [attribute, bytes] : alignments) {
      AQ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &bytes, sizeof(bytes)));
    }

    // Wrapped in a named struct: nvcc's front end fails on std::vector of the anonymous C struct.
    std::vector<detail::heuristic_slot> results(static_cast<std::size_t>(count > 0 ? count : 1));
    int returned = 0;
    const cublasStatus_t status =
        cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.d, p.d, pref, static_cast<int>(results.size()),
                                       &results.data()->result, &returned);
    // An fp32 bias with a bf16 output is refused (INVALID_VALUE): the caller then adds the bias in a
    // separate kernel. Without a bias, only "no candidate" is left to the caller.
    if (fuse_bias && status != CUBLAS_STATUS_SUCCESS) return;
    if (status == CUBLAS_STATUS_NOT_SUPPORTED || (key.in_type != CUDA_R_16BF && status != CUBLAS_STATUS_SUCCESS)) return;
    AQ_CUBLAS_CHECK(status);
    for (int i = 0; i < returned; ++i) {
      const cublasLtMatmulHeuristicResult_t& r = results[static_cast<std::size_t>(i)].result;
      if (r.state != CUBLAS_STATUS_SUCCESS) continue;
      p.algos.push_back({r.algo, r.workspaceSize});
    }
  }

  template <class Out>
  void run(detail::gemm_plan& p, const gemm_algo& algo, const bf16* a, const bf16* b, Out* d, const float* bias,
           bool accumulate, cudaStream_t stream, const device_matrix<Out>& out) {
    if (algo.workspace_bytes > workspace_.bytes()) {
      throw error("cuda gemm: algorithm needs " + std::to_string(algo.workspace_bytes) + " workspace bytes, have " +
                  std::to_string(workspace_.bytes()));
    }
    if (p.bias_in_epilogue) {
      AQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    const float alpha = 1.0f;
    const float beta = accumulate ? 1.0f : 0.0f;
    AQ_CUBLAS_CHECK(cublasLtMatmul(handle_, p.desc, &alpha, a, p.a, b, p.b, &beta, d, p.d, d, p.d, &algo.algo,
                                   workspace_.data(), algo.workspace_bytes, stream));
    if (bias != nullptr && !p.bias_in_epilogue) {
      constexpr unsigned block = 256;
      detail::add_bias_kernel<Out><<<grid_for(out.rows * out.cols, block), block, 0, stream>>>(d, out.rows, out.cols,
                                                                                             out.ld, bias);
      AQ_CUDA_CHECK_LAUNCH();
    }
  }

  // The plan of a code GEMM, kept even without candidates so that a refusal is asked for once.
  detail::gemm_plan& code_plan(const detail::gemm_key& key) {
    auto& slot = plans_[key];
    if (slot == nullptr) {
      if (key.m <= 0 || key.n <= 0 || key.k <= 0) throw error("cuda gemm: empty code product (callers skip them)");
      slot = std::make_unique<detail::gemm_plan>();
      build(*slot, key, code_candidates, false);
    }
    return *slot;
  }

  // Tries the plan's candidates in heuristic order; the first that runs becomes the plan's choice.
  bool run_codes(detail::gemm_plan& p, const std::uint8_t* a, const std::uint8_t* b, void* d, const float* a_scale,
                 const float* b_scale, cudaStream_t stream) {
    if (a_scale != nullptr && b_scale != nullptr) {
      AQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof(a_scale)));
      AQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof(b_scale)));
    }
    const float alpha_f = 1.0f, beta_f = 0.0f;
    const std::int32_t alpha_i = 1, beta_i = 0;
    const void* alpha = p.integer ? static_cast<const void*>(&alpha_i) : static_cast<const void*>(&alpha_f);
    const void* beta = p.integer ? static_cast<const void*>(&beta_i) : static_cast<const void*>(&beta_f);
    while (!p.algos.empty()) {
      const gemm_algo& algo = p.algos.front();
      const cublasStatus_t status =
          algo.workspace_bytes > workspace_.bytes()
              ? CUBLAS_STATUS_NOT_SUPPORTED
              : cublasLtMatmul(handle_, p.desc, alpha, a, p.a, b, p.b, beta, d, p.d, d, p.d, &algo.algo,
                               workspace_.data(), algo.workspace_bytes, stream);
      if (status == CUBLAS_STATUS_SUCCESS) return true;
      if (status != CUBLAS_STATUS_NOT_SUPPORTED) AQ_CUBLAS_CHECK(status);
      p.algos.erase(p.algos.begin());
    }
    return false;
  }

  static constexpr int code_candidates = 8;

  cublasLtHandle_t handle_ = nullptr;
  device_buffer<std::byte> workspace_;
  std::map<detail::gemm_key, std::unique_ptr<detail::gemm_plan>> plans_;
};

}  // namespace aq::cuda
