// CUDA attention forward and input-gradient backward against the CPU attention
// (backend/cpu/attention.hpp) on random data: GQA, head_dim 16/32/64/128, causal with left
// padding in a batch of 2 under both masked-row policies, causal and non-causal segments of
// different lengths (cu_seqlens, an empty one included), and fully padded segments.
// Every case runs on both kernel families: fp32 storage and bf16 storage on the fp32 CUDA-core
// kernels, bf16 storage on the tensor-core (mma.sync) kernels of attention_flash.cuh, whose results
// must differ from the CUDA-core ones on the same inputs (proof that they ran). A copy of each
// bf16 case with row strides that are not 16-byte multiples runs the tensor-core kernels' 4-byte
// tile copies instead of cp.async.
// Cases of equal segments of >= 256 rows without a mask also run on the registered fused-attention
// library (cuDNN's SDPA, when the build and the machine have it): its calls must rise, and with
// AQ_EXPECT_FUSED_ATTENTION=1 (the GPU machine's runs) a library that takes no call fails the test.
// AQ_CUDNN_PACKED_LSE=1 runs cuDNN with its packed lse layout and the copies to and from aq's.
// Tolerances (max |gpu − cpu| / max |cpu| per tensor): fp32 storage 1e-5, bf16 storage 1e-2
// (the CPU runs in fp32 on the bf16-rounded inputs). Outputs are NaN-poisoned before each run.
// Without a GPU it prints "no GPU, skipped" and succeeds (CI builds it, a GPU machine runs it).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_test_util.cuh"
#include "aq/backend/cpu/attention.hpp"
#include "aq/backend/cuda/kernels/attention.cuh"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/bf16.hpp"
#include "aq/core/tensor.hpp"

namespace test_attention_cuda {

namespace {

using aq_test::expect;
using aq_test::expect_close;
using aq_test::rel_err;

struct attention_case {
  std::string name;
  int heads, kv_heads, head_dim;
  bool causal;
  std::vector<int> lengths;  // segment lengths (consecutive rows)
  std::vector<int> left_pad;  // per segment, padding keys at its start (empty: no mask)
  bool zero_policy;
};

template <class T>
std::vector<T> to_storage(const std::vector<float>& v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return aq_test::to_bf16(v);
  }
}
template <class T>
std::vector<float> from_storage(const std::vector<T>& v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return aq_test::to_float(v);
  }
}

// lse: +inf exactly where the CPU has +inf, finite values within tol (relative to max |lse|).
double lse_err(const std::vector<float>& got, const std::vector<float>& ref, bool& inf_match) {
  inf_match = true;
  std::vector<float> g, r;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (std::isinf(ref[i]) || std::isinf(got[i])) {
      inf_match = inf_match && std::isinf(ref[i]) && std::isinf(got[i]) && got[i] > 0;
      continue;
    }
    g.push_back(got[i]);
    r.push_back(ref[i]);
  }
  return rel_err(g, r);
}

enum class kernels { cuda_cores, tensor_cores, fused_library };

template <class T>
void run_case(const attention_case& tc, std::uint32_t seed, kernels family = kernels::cuda_cores, int ld_extra = 0,
              std::int64_t workspace_limit = 0) {
  const bool tensor_cores = family != kernels::cuda_cores;
  const bool fused = family == kernels::fused_library;
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-2;
  const std::string label =
      tc.name +
      (std::is_same_v<T, float> ? " [fp32]"
                                : (fused ? " [bf16, fused library]" : (tensor_cores ? " [bf16, tensor cores]" : " [bf16]"))) +
      (ld_extra > 0 ? " [row stride +" + std::to_string(ld_extra) + "]" : "");
  int rows = 0;
  for (const int l : tc.lengths) rows += l;
  const int d = tc.head_dim;
  const int qc = tc.heads * d;
  const int kc = tc.kv_heads * d;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  // Inputs rounded to the storage type so that both sides see the same numbers.
  auto round = [](std::vector<float> v) { return from_storage<T>(to_storage<T>(v)); };
  const auto q = round(aq_test::random_floats(static_cast<std::size_t>(rows) * qc, seed, 1.5f));
  const auto k = round(aq_test::random_floats(static_cast<std::size_t>(rows) * kc, seed + 1, 1.5f));
  const auto v = round(aq_test::random_floats(static_cast<std::size_t>(rows) * kc, seed + 2));
  const auto d_o = round(aq_test::random_floats(static_cast<std::size_t>(rows) * qc, seed + 3));

  std::vector<std::uint8_t> valid(static_cast<std::size_t>(rows), 1);
  std::vector<aq::cpu::attention_segment> segs;
  std::vector<int> cu{0};
  for (std::size_t s = 0; s < tc.lengths.size(); ++s) {
    segs.push_back({cu.back(), tc.lengths[s]});
    if (!tc.left_pad.empty()) {
      for (int i = 0; i < tc.left_pad[s]; ++i) valid[static_cast<std::size_t>(cu.back() + i)] = 0;
    }
    cu.push_back(cu.back() + tc.lengths[s]);
  }
  const bool masked = !tc.left_pad.empty();

  // CPU reference (fp32).
  aq::cpu::attention_config cc;
  cc.heads = tc.heads;
  cc.kv_heads = tc.kv_heads;
  cc.head_dim = d;
  cc.scale = scale;
  cc.causal = tc.causal;
  cc.key_valid = masked ? valid.data() : nullptr;
  cc.masked_rows = tc.zero_policy ? aq::cpu::masked_row_policy::zero : aq::cpu::masked_row_policy::attend_all;
  std::vector<float> o_ref(q.size()), lse_ref(static_cast<std::size_t>(tc.heads) * rows);
  std::vector<float> dq_ref(q.size()), dk_ref(k.size()), dv_ref(v.size());
  const aq::const_matrix_view qv(q.data(), rows, qc, qc), kv(k.data(), rows, kc, kc), vv(v.data(), rows, kc, kc);
  aq::cpu::attention_forward(cc, segs, qv, kv, vv, aq::matrix_view{o_ref.data(), rows, qc, qc}, lse_ref.data());

  // GPU, rows ld_extra elements apart beyond their width.
  const int lq = qc + ld_extra;
  const int lk = kc + ld_extra;
  const auto strided = [rows](const std::vector<T>& v, int cols, int ld) {
    std::vector<T> out(static_cast<std::size_t>(rows) * ld);
    for (int r = 0; r < rows; ++r)
      std::copy_n(v.begin() + static_cast<std::ptrdiff_t>(r) * cols, cols, out.begin() + static_cast<std::ptrdiff_t>(r) * ld);
    return out;
  };
  const auto dense = [rows](const std::vector<T>& v, int cols, int ld) {
    std::vector<T> out(static_cast<std::size_t>(rows) * cols);
    for (int r = 0; r < rows; ++r)
      std::copy_n(v.begin() + static_cast<std::ptrdiff_t>(r) * ld, cols, out.begin() + static_cast<std::ptrdiff_t>(r) * cols);
    return out;
  };
  aq::cuda::device_buffer<T> dq_in(strided(to_storage<T>(q), qc, lq)), dk_in(strided(to_storage<T>(k), kc, lk));
  aq::cuda::device_buffer<T> dv_in(strided(to_storage<T>(v), kc, lk)), ddo(strided(to_storage<T>(d_o), qc, lq));
  const std::size_t q_elems = static_cast<std::size_t>(rows) * lq, k_elems = static_cast<std::size_t>(rows) * lk;
  aq::cuda::device_buffer<T> dout(q_elems), ddq(q_elems), ddk(k_elems), ddv(k_elems);
  aq::cuda::device_buffer<float> dlse(lse_ref.size()), ddelta(lse_ref.size());
  aq::cuda::device_buffer<std::uint8_t> dvalid(valid);
  aq::cuda::device_buffer<int> dcu(cu);
  for (auto* b : {&dout, &ddq, &ddk, &ddv}) b->fill_bytes(0xff);  // NaN poison: every element must be written
  dlse.fill_bytes(0xff);

  aq::cuda::attention_config gc;
  gc.heads = tc.heads;
  gc.kv_heads = tc.kv_heads;
  gc.head_dim = d;
  gc.scale = scale;
  gc.causal = tc.causal;
  gc.key_valid = masked ? dvalid.data() : nullptr;
  gc.masked_rows = tc.zero_policy ? aq::cuda::masked_row_policy::zero : aq::cuda::masked_row_policy::attend_all;
  gc.tensor_cores = tensor_cores;
  gc.fused_library = fused;
  gc.fused_workspace_limit = workspace_limit;
  aq::cuda::attention_segments gs;
  gs.cu_seqlens = dcu.data();
  gs.count = static_cast<int>(tc.lengths.size());
  for (const int l : tc.lengths) gs.max_length = std::max(gs.max_length, l);
  gs.equal_lengths = std::all_of(tc.lengths.begin(), tc.lengths.end(), [&](int l) { return l == gs.max_length; });
  aq::cuda::fused_attention_library* library = aq::cuda::registered_fused_attention_library();
  const std::int64_t calls_before = library != nullptr ? library->calls() : 0;

  using cview = aq::cuda::device_matrix<const T>;
  using mview = aq::cuda::device_matrix<T>;
  const cview gq(dq_in.data(), rows, qc, lq), gk(dk_in.data(), rows, kc, lk), gv(dv_in.data(), rows, kc, lk);
  const auto backward = [&](const aq::cuda::attention_config& config, T* dq_out, T* dk_out, T* dv_out, float* delta) {
    aq::cuda::attention_backward<T>(config, gs, gq, gk, gv, cview(dout.data(), rows, qc, lq), dlse.data(),
                                    cview(ddo.data(), rows, qc, lq), mview(dq_out, rows, qc, lq),
                                    mview(dk_out, rows, kc, lk), mview(dv_out, rows, kc, lk), delta);
    AQ_CUDA_CHECK(cudaDeviceSynchronize());
  };
  aq::cuda::attention_forward<T>(gc, gs, gq, gk, gv, mview(dout.data(), rows, qc, lq), dlse.data());
  // The backward is fed the GPU's own o and lse, as the model will.
  backward(gc, ddq.data(), ddk.data(), ddv.data(), ddelta.data());

  const auto o_gpu = from_storage<T>(dense(dout.to_host(), qc, lq));
  expect_close(rel_err(o_gpu, o_ref), tol, label + ": o");
  // The CPU backward gets the o the GPU backward consumed: with bf16 storage, delta = rowsum(dO∘o)
  // from the rounded o differs from the fp32 one, and dS = P∘(dP − delta) cancels for peaked rows,
  // which would test the storage type rather than the kernel (up to 1.1e-2 on dk here).
  aq::cpu::attention_backward(cc, segs, qv, kv, vv, aq::const_matrix_view(o_gpu.data(), rows, qc, qc), lse_ref.data(),
                              aq::const_matrix_view(d_o.data(), rows, qc, qc), aq::matrix_view{dq_ref.data(), rows, qc, qc},
                              aq::matrix_view{dk_ref.data(), rows, kc, kc}, aq::matrix_view{dv_ref.data(), rows, kc, kc});
  bool inf_match = false;
  const double lerr = lse_err(dlse.to_host(), lse_ref, inf_match);
  expect(inf_match, label + ": lse is +inf exactly on the rows without an allowed key");
  expect_close(lerr, std::is_same_v<T, float> ? 1e-5 : 2e-3, label + ": lse");
  const auto dq1 = from_storage<T>(dense(ddq.to_host(), qc, lq));
  const auto dk1 = from_storage<T>(dense(ddk.to_host(), kc, lk));
  const auto dv1 = from_storage<T>(dense(ddv.to_host(), kc, lk));
  expect_close(rel_err(dq1, dq_ref), tol, label + ": dq");
  expect_close(rel_err(dk1, dk_ref), tol, label + ": dk");
  expect_close(rel_err(dv1, dv_ref), tol, label + ": dv");

  // Deterministic: a second backward gives the same bits.
  backward(gc, ddq.data(), ddk.data(), ddv.data(), ddelta.data());
  const auto dk2 = from_storage<T>(dense(ddk.to_host(), kc, lk));
  const auto dq2 = from_storage<T>(dense(ddq.to_host(), qc, lq));
  expect(std::memcmp(dk1.data(), dk2.data(), dk1.size() * sizeof(float)) == 0 &&
             std::memcmp(dq1.data(), dq2.data(), dq1.size() * sizeof(float)) == 0,
         label + ": backward is bit-reproducible");

  if (fused) {
    // Forward, backward and the repeated backward: three calls, or none when the library (or its
    // cuDNN) is absent and aq's tensor-core kernels ran instead.
    const std::int64_t ran = library != nullptr ? library->calls() - calls_before : 0;
    const char* expected = std::getenv("AQ_EXPECT_FUSED_ATTENTION");
    if (workspace_limit > 0) {
      // A limit below any workspace: the library refuses the shape and aq's kernels run.
      expect(ran == 0, label + ": a 1-byte workspace limit leaves the call to aq's kernels");
    } else if (expected != nullptr && std::string(expected) == "1") {
      expect(ran == 3, label + ": the fused library ran forward and both backwards (" +
                           (library != nullptr ? library->describe() : std::string("none registered")) + ")");
    } else {
      expect(ran == 0 || ran == 3, label + ": the fused library ran all calls or none");
      if (ran == 0) std::printf("  %s: no fused-attention library took it, aq's kernels ran\n", label.c_str());
    }
  } else if (tensor_cores) {
    // The same inputs on the CUDA-core kernels: bf16 P and dS on the tensor cores round differently,
    // so identical bits everywhere would mean the tensor-core kernels did not run.
    aq::cuda::attention_config cuda_cores = gc;
    cuda_cores.tensor_cores = false;
    aq::cuda::device_buffer<T> o_cc(q_elems), dq_cc(q_elems), dk_cc(k_elems), dv_cc(k_elems);
    aq::cuda::device_buffer<float> lse_cc(lse_ref.size()), delta_cc(lse_ref.size());
    aq::cuda::attention_forward<T>(cuda_cores, gs, gq, gk, gv, mview(o_cc.data(), rows, qc, lq), lse_cc.data());
    backward(cuda_cores, dq_cc.data(), dk_cc.data(), dv_cc.data(), delta_cc.data());
    const auto differs = [&](const aq::cuda::device_buffer<T>& a, const aq::cuda::device_buffer<T>& b, int cols, int ld) {
      const auto x = dense(a.to_host(), cols, ld), y = dense(b.to_host(), cols, ld);
      return std::memcmp(x.data(), y.data(), x.size() * sizeof(T)) != 0;
    };
    expect(differs(dout, o_cc, qc, lq) || differs(ddq, dq_cc, qc, lq) || differs(ddk, dk_cc, kc, lk) ||
               differs(ddv, dv_cc, kc, lk),
           label + ": differs from the CUDA-core kernels in some bit (the tensor-core kernels ran)");
  }
}

void expect_throws_on_bad_head_dim() {
  aq::cuda::attention_config gc;
  gc.heads = 2;
  gc.kv_heads = 1;
  gc.head_dim = 48;
  aq::cuda::attention_segments gs;
  bool threw = false;
  try {
    aq::cuda::attention_forward<float>(gc, gs, {nullptr, 0, 96, 96}, {nullptr, 0, 48, 48}, {nullptr, 0, 48, 48},
                                       {nullptr, 0, 96, 96}, nullptr);
  } catch (const aq::error& e) {
    threw = std::string(e.what()).find("head_dim 48") != std::string::npos;
  }
  expect(threw, "head_dim 48 is rejected with a message naming it");
  gc.head_dim = 16;
  gc.tensor_cores = true;
  threw = false;
  try {
    aq::cuda::attention_forward<float>(gc, gs, {nullptr, 0, 32, 32}, {nullptr, 0, 16, 16}, {nullptr, 0, 16, 16},
                                       {nullptr, 0, 32, 32}, nullptr);
  } catch (const aq::error& e) {
    threw = std::string(e.what()).find("bf16") != std::string::npos;
  }
  expect(threw, "tensor cores with fp32 storage are rejected");
  threw = false;
  try {
    aq::cuda::attention_forward<aq::bf16>(gc, gs, {nullptr, 0, 32, 33}, {nullptr, 0, 16, 16}, {nullptr, 0, 16, 16},
                                          {nullptr, 0, 32, 33}, nullptr);
  } catch (const aq::error& e) {
    threw = std::string(e.what()).find("4-byte aligned") != std::string::npos;
  }
  expect(threw, "tensor cores with an odd bf16 row stride are rejected");
}

}  // namespace

AQ_GPU_TEST("test_attention_cuda") {
  const std::vector<attention_case> cases = {
      {"GQA 4/2 x 16, one segment of 70, no mask", 4, 2, 16, false, {70}, {}, false},
      {"GQA 4/2 x 16, causal, one segment of 70", 4, 2, 16, true, {70}, {}, false},
      {"MHA 2/2 x 32, causal + left padding 0/21, batch 2 x 45, attend_all", 2, 2, 32, true, {45, 45}, {0, 21}, false},
      {"GQA 4/2 x 64, causal + left padding 3/70, batch 2 x 100, attend_all", 4, 2, 64, true, {100, 100}, {3, 70}, false},
      {"GQA 4/2 x 64, causal + left padding 3/70, batch 2 x 100, zero", 4, 2, 64, true, {100, 100}, {3, 70}, true},
      {"GQA 4/1 x 128, causal + left padding 0/40, batch 2 x 80, attend_all", 4, 1, 128, true, {80, 80}, {0, 40}, false},
      {"GQA 4/1 x 128, causal + left padding 0/40, batch 2 x 80, zero", 4, 1, 128, true, {80, 80}, {0, 40}, true},
      {"vision 2 x 64, segments 16/100/64/33, non-causal", 2, 2, 64, false, {16, 100, 64, 33}, {}, false},
      {"all keys padded in segment 2, non-causal, attend_all", 2, 1, 16, false, {40, 24}, {5, 24}, false},
  };
  // Masked-row policies and cu_seqlens corners; a second list so that the cases above keep
  // their seeds.
  const std::vector<attention_case> more_cases = {
      {"all keys padded in segment 2, non-causal, zero", 2, 1, 16, false, {40, 24}, {5, 24}, true},
      {"MHA 2/2 x 32, causal + left padding 0/21, batch 2 x 45, zero", 2, 2, 32, true, {45, 45}, {0, 21}, true},
      {"GQA 2/1 x 16, non-causal + left padding 40/0, batch 2 x 100, zero", 2, 1, 16, false, {100, 100}, {40, 0},
       true},
      {"GQA 4/2 x 32, causal, segments 70/33/1", 4, 2, 32, true, {70, 33, 1}, {}, false},
      {"GQA 4/2 x 64, causal + left padding 10/75, segments 50/90, attend_all", 4, 2, 64, true, {50, 90}, {10, 75},
       false},
      {"GQA 4/2 x 64, causal + left padding 10/75, segments 50/90, zero", 4, 2, 64, true, {50, 90}, {10, 75}, true},
      {"vision 2 x 128, segments 7/80/0/41 (one empty), non-causal", 2, 2, 128, false, {7, 80, 0, 41}, {}, false},
  };
  // Equal segments of >= 256 rows without a mask: the fused library's shapes (its plans take
  // 16-byte aligned rows, so the strided copy adds 8 elements).
  const std::vector<attention_case> fused_cases = {
      {"GQA 8/2 x 128, causal, batch 2 x 384", 8, 2, 128, true, {384, 384}, {}, false},
      {"GQA 4/1 x 64, causal, one segment of 1000", 4, 1, 64, true, {1000}, {}, false},
      {"vision 4 x 64, non-causal, 3 segments of 256", 4, 4, 64, false, {256, 256, 256}, {}, false},
      {"GQA 4/2 x 32, non-causal, batch 2 x 300", 4, 2, 32, false, {300, 300}, {}, false},
  };
  std::uint32_t seed = 1000;
  for (const auto& tc : cases) run_case<float>(tc, seed += 10);
  for (const auto& tc : cases) run_case<aq::bf16>(tc, seed += 10);
  for (const auto& tc : cases) run_case<aq::bf16>(tc, seed += 10, kernels::tensor_cores);
  for (const auto& tc : cases) run_case<aq::bf16>(tc, seed += 10, kernels::tensor_cores, 2);  // 4-byte tile copies
  for (const auto& tc : more_cases) {
    run_case<float>(tc, seed += 10);
    run_case<aq::bf16>(tc, seed += 10);
    run_case<aq::bf16>(tc, seed += 10, kernels::tensor_cores);
  }
  for (const auto& tc : fused_cases) {
    run_case<aq::bf16>(tc, seed += 10, kernels::tensor_cores);
    run_case<aq::bf16>(tc, seed += 10, kernels::fused_library);
    run_case<aq::bf16>(tc, seed += 10, kernels::fused_library, 8);
  }
  run_case<aq::bf16>(fused_cases.front(), seed += 10, kernels::fused_library, 0, 1);
  expect_throws_on_bad_head_dim();
}

}  // namespace test_attention_cuda
