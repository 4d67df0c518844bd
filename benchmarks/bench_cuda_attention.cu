// Times the tiled CUDA attention (forward, backward) on the Qwen3-VL-4B text shape (by default
// batch 8 × 512 tokens; `bench_cuda_attention REPS NAIVE_REPS BATCH TOKENS` for others; 32 query
// / 8 kv heads × 128, causal + left padding) against a naive reference
// measured in the same run (scores materialized in global memory, one thread per output
// element), and checks the two agree on that full shape. Prints ms and TFLOP/s (FlashAttention
// convention: forward 4·B·H·T²·D, halved for causal; backward 2.5× the forward). The tensor-core
// kernels are also timed without the key mask (the "no padding" rows; FLOPs counted as if unpadded).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "aq/backend/cuda/kernels/attention.cuh"
#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/core/bf16.hpp"
#include "cuda_bench_util.cuh"

namespace {

using aq::cuda::device_buffer;
using aq::cuda::from_float;
using aq::cuda::to_float;

struct shape {
  int batch, tokens, heads, kv_heads, dim;
  float scale;
  const std::uint8_t* valid;  // [batch·tokens]
  bool attend_all;
  __host__ __device__ int group() const { return heads / kv_heads; }
  __host__ __device__ std::int64_t qc() const { return static_cast<std::int64_t>(heads) * dim; }
  __host__ __device__ std::int64_t kc() const { return static_cast<std::int64_t>(kv_heads) * dim; }
};

// ---- naive reference: S, P and dS as [batch, heads, T, T] fp32 in global memory ----------------
__device__ inline bool allowed(const shape& s, int b, int i, int j) {
  return j <= i && s.valid[b * s.tokens + j] != 0;
}

template <class T>
__global__ void naive_scores(shape s, const T* q, const T* k, float* sc) {
  const std::int64_t n = static_cast<std::int64_t>(s.batch) * s.heads * s.tokens * s.tokens;
  for (std::int64_t x = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; x < n;
       x += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(x % s.tokens), i = static_cast<int>(x / s.tokens % s.tokens);
    const int h = static_cast<int>(x / s.tokens / s.tokens % s.heads), b = static_cast<int>(x / s.tokens / s.tokens / s.heads);
    const T* qr = q + (static_cast<std::int64_t>(b) * s.tokens + i) * s.qc() + h * s.dim;
    const T* kr = k + (static_cast<std::int64_t>(b) * s.tokens + j) * s.kc() + (h / s.group()) * s.dim;
    float acc = 0.0f;
    for (int d = 0; d < s.dim; ++d) acc = fmaf(to_float(qr[d]), to_float(kr[d]), acc);
    sc[x] = acc * s.scale;
  }
}

// One thread per row: masked softmax in place (S -> P), lse (+inf for a row without allowed key).
__global__ void naive_softmax(shape s, float* p, float* lse) {
  const std::int64_t rows = static_cast<std::int64_t>(s.batch) * s.heads * s.tokens;
  const std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const int i = static_cast<int>(r % s.tokens), b = static_cast<int>(r / s.tokens / s.heads);
  const int h = static_cast<int>(r / s.tokens % s.heads);
  float* row = p + r * s.tokens;
  const std::int64_t out = (static_cast<std::int64_t>(h) * s.batch + b) * s.tokens + i;  // lse is [heads, rows]
  float m = -INFINITY;
  for (int j = 0; j < s.tokens; ++j) {
    if (allowed(s, b, i, j)) m = fmaxf(m, row[j]);
  }
  if (m == -INFINITY) {
    for (int j = 0; j < s.tokens; ++j) row[j] = s.attend_all ? 1.0f / static_cast<float>(s.tokens) : 0.0f;
    lse[out] = INFINITY;
    return;
  }
  float sum = 0.0f;
  for (int j = 0; j < s.tokens; ++j) {
    row[j] = allowed(s, b, i, j) ? expf(row[j] - m) : 0.0f;
    sum += row[j];
  }
  for (int j = 0; j < s.tokens; ++j) row[j] /= sum;
  lse[out] = m + logf(sum);
}

// out[b, i, h, d] = scale · Σ_j M[b, h, i, j] · X[b, j, h/group, d] (O = P·V, dQ = dS·K).
template <class T>
__global__ void naive_rows_times_kv(shape s, const float* m, const T* x, T* out, float scale) {
  const std::int64_t n = static_cast<std::int64_t>(s.batch) * s.tokens * s.qc();
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(e % s.dim), h = static_cast<int>(e / s.dim % s.heads);
    const int i = static_cast<int>(e / s.qc() % s.tokens), b = static_cast<int>(e / s.qc() / s.tokens);
    const float* mr = m + ((static_cast<std::int64_t>(b) * s.heads + h) * s.tokens + i) * s.tokens;
    const T* xc = x + static_cast<std::int64_t>(b) * s.tokens * s.kc() + (h / s.group()) * s.dim + d;
    float acc = 0.0f;
    for (int j = 0; j < s.tokens; ++j) acc = fmaf(mr[j], to_float(xc[j * s.kc()]), acc);
    out[e] = from_float<T>(acc * scale);
  }
}

// dS = P ∘ (dO·Vᵀ − rowsum(dO∘O)), in place of a copy of P.
template <class T>
__global__ void naive_ds(shape s, const T* d_o, const T* o, const T* v, float* p_to_ds) {
  const std::int64_t n = static_cast<std::int64_t>(s.batch) * s.heads * s.tokens * s.tokens;
  for (std::int64_t x = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; x < n;
       x += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(x % s.tokens), i = static_cast<int>(x / s.tokens % s.tokens);
    const int h = static_cast<int>(x / s.tokens / s.tokens % s.heads), b = static_cast<int>(x / s.tokens / s.tokens / s.heads);
    const std::int64_t qoff = (static_cast<std::int64_t>(b) * s.tokens + i) * s.qc() + h * s.dim;
    const T* vr = v + (static_cast<std::int64_t>(b) * s.tokens + j) * s.kc() + (h / s.group()) * s.dim;
    float dp = 0.0f, delta = 0.0f;
    for (int d = 0; d < s.dim; ++d) {
      dp = fmaf(to_float(d_o[qoff + d]), to_float(vr[d]), dp);
      delta = fmaf(to_float(d_o[qoff + d]), to_float(o[qoff + d]), delta);
    }
    p_to_ds[x] = p_to_ds[x] * (dp - delta);
  }
}

// out[b, j, g, d] = scale · Σ_{h∈g} Σ_i M[b, h, i, j] · X[b, i, h, d] (dV = Pᵀ·dO, dK = dSᵀ·Q).
template <class T>
__global__ void naive_cols_times_q(shape s, const float* m, const T* x, T* out, float scale) {
  const std::int64_t n = static_cast<std::int64_t>(s.batch) * s.tokens * s.kc();
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(e % s.dim), g = static_cast<int>(e / s.dim % s.kv_heads);
    const int j = static_cast<int>(e / s.kc() % s.tokens), b = static_cast<int>(e / s.kc() / s.tokens);
    float acc = 0.0f;
    for (int h = g * s.group(); h < (g + 1) * s.group(); ++h) {
      const float* mc = m + (static_cast<std::int64_t>(b) * s.heads + h) * s.tokens * s.tokens + j;
      const T* xc = x + static_cast<std::int64_t>(b) * s.tokens * s.qc() + h * s.dim + d;
      for (int i = 0; i < s.tokens; ++i) acc = fmaf(mc[static_cast<std::int64_t>(i) * s.tokens], to_float(xc[i * s.qc()]), acc);
    }
    out[e] = from_float<T>(acc * scale);
  }
}

// ---- helpers ----------------------------------------------------------------------------------
template <class F>
float median_ms(int reps, F f) {
  cudaEvent_t a, b;
  AQ_CUDA_CHECK(cudaEventCreate(&a));
  AQ_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    AQ_CUDA_CHECK(cudaEventRecord(a));
    f();
    AQ_CUDA_CHECK(cudaEventRecord(b));
    AQ_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0.0f;
    AQ_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  AQ_CUDA_CHECK(cudaEventDestroy(a));
  AQ_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

template <class T>
std::vector<float> download(const device_buffer<T>& b) {
  const auto h = b.to_host();
  std::vector<float> out(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) out[i] = to_float(h[i]);
  return out;
}

double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double err = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (std::isnan(d)) return std::nan("");
    err = std::max(err, d);
    scale = std::max(scale, std::fabs(static_cast<double>(ref[i])));
  }
  return scale > 0.0 ? err / scale : err;
}

template <class T>
device_buffer<T> random_buffer(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<T> h(n);
  for (auto& x : h) x = from_float<T>(dist(rng));
  return device_buffer<T>(h);
}

// The same unpadded shape on the registered fused-attention library (cuDNN), when there is one:
// its first call (plan build included) and its median, and how far its results sit from aq's
// tensor-core kernels' (bf16 rounding apart, not bit for bit).
template <class T, class Fwd, class Bwd, class Row>
void fused_rows(aq::cuda::attention_config& c, Fwd& fwd, Bwd& bwd, device_buffer<T>& o, device_buffer<T>& dq,
                device_buffer<T>& dk, device_buffer<T>& dv, Row row, float t_nf, float t_nb, double fwd_flop,
                double bwd_flop, int reps) {
  aq::cuda::fused_attention_library* library = aq::cuda::registered_fused_attention_library();
  if constexpr (!std::is_same_v<T, aq::bf16>) return;
  if (library == nullptr) {
    std::printf("  (no fused-attention library in this build)\n");
    return;
  }
  fwd();
  bwd();
  AQ_CUDA_CHECK(cudaDeviceSynchronize());
  const auto o1 = download(o), dq1 = download(dq), dk1 = download(dk), dv1 = download(dv);
  c.fused_library = true;
  const std::int64_t calls = library->calls();
  cudaEvent_t t0, t1;
  AQ_CUDA_CHECK(cudaEventCreate(&t0));
  AQ_CUDA_CHECK(cudaEventCreate(&t1));
  AQ_CUDA_CHECK(cudaEventRecord(t0));
  fwd();
  bwd();
  AQ_CUDA_CHECK(cudaEventRecord(t1));
  AQ_CUDA_CHECK(cudaEventSynchronize(t1));
  float first_ms = 0.0f;
  AQ_CUDA_CHECK(cudaEventElapsedTime(&first_ms, t0, t1));
  if (library->calls() == calls) {
    std::printf("  fused library did not take the shape: %s\n", library->describe().c_str());
    c.fused_library = false;
    return;
  }
  const float t_ff = median_ms(reps, fwd), t_fb = median_ms(reps, bwd);
  row("forward", t_ff, t_nf, fwd_flop);
  row("backward", t_fb, t_nb, bwd_flop);
  row("fwd+bwd", t_ff + t_fb, t_nf + t_nb, fwd_flop + bwd_flop);
  std::printf("  %s: first forward + backward %.1f ms (plans built); vs aq's tensor-core kernels: rel err o %.2e, "
              "dq %.2e, dk %.2e, dv %.2e\n",
              library->describe().c_str(), first_ms, rel_err(download(o), o1), rel_err(download(dq), dq1),
              rel_err(download(dk), dk1), rel_err(download(dv), dv1));
  AQ_CUDA_CHECK(cudaEventDestroy(t0));
  AQ_CUDA_CHECK(cudaEventDestroy(t1));
  c.fused_library = false;
}

template <class T>
void run(const char* type_name, int flash_reps, int naive_reps, int B, int L) {
  const int H = 32, HKV = 8, D = 128;
  const std::int64_t rows = static_cast<std::int64_t>(B) * L;
  std::vector<std::uint8_t> valid(static_cast<std::size_t>(rows), 1);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < 16 * b; ++i) valid[static_cast<std::size_t>(b) * L + i] = 0;  // left padding 0..112
  std::vector<int> cu;
  for (int b = 0; b <= B; ++b) cu.push_back(b * L);
  device_buffer<std::uint8_t> dvalid(valid);
  device_buffer<int> dcu(cu);
  const shape s{B, L, H, HKV, D, 1.0f / std::sqrt(static_cast<float>(D)), dvalid.data(), true};

  auto q = random_buffer<T>(rows * s.qc(), 1), k = random_buffer<T>(rows * s.kc(), 2);
  auto v = random_buffer<T>(rows * s.kc(), 3), d_o = random_buffer<T>(rows * s.qc(), 4);
  device_buffer<T> o(rows * s.qc()), dq(rows * s.qc()), dk(rows * s.kc()), dv(rows * s.kc());
  device_buffer<float> lse(rows * H), delta(rows * H);
  device_buffer<T> o_ref(rows * s.qc()), dq_ref(rows * s.qc()), dk_ref(rows * s.kc()), dv_ref(rows * s.kc());
  const std::size_t tt = static_cast<std::size_t>(B) * H * L * L;
  device_buffer<float> p(tt), ds(tt), lse_ref(rows * H);

  aq::cuda::attention_config c;
  c.heads = H;
  c.kv_heads = HKV;
  c.head_dim = D;
  c.scale = s.scale;
  c.causal = true;
  c.key_valid = dvalid.data();
  const aq::cuda::attention_segments segs{dcu.data(), B, L, true};
  using cv = aq::cuda::device_matrix<const T>;
  using mv = aq::cuda::device_matrix<T>;
  const cv gq(q.data(), rows, s.qc(), s.qc()), gk(k.data(), rows, s.kc(), s.kc()), gv(v.data(), rows, s.kc(), s.kc());
  auto flash_fwd = [&] { aq::cuda::attention_forward<T>(c, segs, gq, gk, gv, mv(o.data(), rows, s.qc(), s.qc()), lse.data()); };
  auto flash_bwd = [&] {
    aq::cuda::attention_backward<T>(c, segs, gq, gk, gv, cv(o.data(), rows, s.qc(), s.qc()), lse.data(),
                                    cv(d_o.data(), rows, s.qc(), s.qc()), mv(dq.data(), rows, s.qc(), s.qc()),
                                    mv(dk.data(), rows, s.kc(), s.kc()), mv(dv.data(), rows, s.kc(), s.kc()), delta.data());
  };
  const unsigned grid = 132 * 16, block = 256;
  auto naive_fwd = [&] {
    naive_scores<T><<<grid, block>>>(s, q.data(), k.data(), p.data());
    naive_softmax<<<static_cast<unsigned>((rows * H + 255) / 256), 256>>>(s, p.data(), lse_ref.data());
    naive_rows_times_kv<T><<<grid, block>>>(s, p.data(), v.data(), o_ref.data(), 1.0f);
    AQ_CUDA_CHECK_LAUNCH();
  };
  auto naive_bwd = [&] {
    AQ_CUDA_CHECK(cudaMemcpyAsync(ds.data(), p.data(), tt * sizeof(float), cudaMemcpyDeviceToDevice));
    naive_ds<T><<<grid, block>>>(s, d_o.data(), o_ref.data(), v.data(), ds.data());
    naive_rows_times_kv<T><<<grid, block>>>(s, ds.data(), k.data(), dq_ref.data(), s.scale);
    naive_cols_times_q<T><<<grid, block>>>(s, ds.data(), q.data(), dk_ref.data(), s.scale);
    naive_cols_times_q<T><<<grid, block>>>(s, p.data(), d_o.data(), dv_ref.data(), 1.0f);
    AQ_CUDA_CHECK_LAUNCH();
  };

  naive_fwd();
  naive_bwd();
  AQ_CUDA_CHECK(cudaDeviceSynchronize());
  const float t_nf = median_ms(naive_reps, naive_fwd), t_nb = median_ms(naive_reps, naive_bwd);
  const double fwd_flop = 4.0 * B * H * static_cast<double>(L) * L * D * 0.5;
  const double bwd_flop = 2.5 * fwd_flop;
  auto tf = [](double flop, float ms) { return flop / (ms * 1e-3) / 1e12; };
  std::printf("\n%s storage, batch %d x %d tokens, %d/%d heads x %d, causal + left padding 0..%d\n", type_name, B, L,
              H, HKV, D, 16 * (B - 1));
  std::printf("%-26s %-9s %10s %9s %9s\n", "kernel", "pass", "ms", "TFLOP/s", "vs naive");
  auto row = [&](const char* kernel, const char* pass, float ms, float naive_ms, double flop) {
    std::printf("%-26s %-9s %10.3f %9.2f %8.1fx\n", kernel, pass, ms, tf(flop, ms), naive_ms / ms);
  };
  row("naive (materialized)", "forward", t_nf, t_nf, fwd_flop);
  row("naive (materialized)", "backward", t_nb, t_nb, bwd_flop);

  for (const bool tensor_cores : {false, true}) {
    if (tensor_cores && !std::is_same_v<T, aq::bf16>) continue;
    c.tensor_cores = tensor_cores;
    const char* name = tensor_cores ? "tiled, tensor cores" : "tiled, fp32 CUDA cores";
    o.fill_bytes(0xff);
    dq.fill_bytes(0xff);
    dk.fill_bytes(0xff);
    dv.fill_bytes(0xff);
    flash_fwd();
    flash_bwd();
    AQ_CUDA_CHECK(cudaDeviceSynchronize());
    const double eo = rel_err(download(o), download(o_ref)), edq = rel_err(download(dq), download(dq_ref));
    const double edk = rel_err(download(dk), download(dk_ref)), edv = rel_err(download(dv), download(dv_ref));
    // lse: +inf (rows without an allowed key) must coincide; the finite values are compared.
    auto l1 = download(lse), l2 = download(lse_ref);
    int inf_mismatch = 0;
    for (std::size_t i = 0; i < l1.size(); ++i) {
      if (std::isinf(l1[i]) || std::isinf(l2[i])) {
        inf_mismatch += !(std::isinf(l1[i]) && std::isinf(l2[i]));
        l1[i] = l2[i] = 0.0f;
      }
    }
    const double el = rel_err(l1, l2);
    const float t_ff = median_ms(flash_reps, flash_fwd), t_fb = median_ms(flash_reps, flash_bwd);
    row(name, "forward", t_ff, t_nf, fwd_flop);
    row(name, "backward", t_fb, t_nb, bwd_flop);
    row(name, "fwd+bwd", t_ff + t_fb, t_nf + t_nb, fwd_flop + bwd_flop);
    std::printf("  %s vs naive: rel err o %.2e, lse %.2e (%d +inf mismatches), dq %.2e, dk %.2e, dv %.2e\n", name, eo,
                el, inf_mismatch, edq, edk, edv);
    if (tensor_cores) {
      // The same shape with no key mask (texts that fill their sequence): no per-key checks.
      c.key_valid = nullptr;
      const float t_uf = median_ms(flash_reps, flash_fwd), t_ub = median_ms(flash_reps, flash_bwd);
      row("tensor cores, no padding", "forward", t_uf, t_nf, fwd_flop);
      row("tensor cores, no padding", "backward", t_ub, t_nb, bwd_flop);
      row("tensor cores, no padding", "fwd+bwd", t_uf + t_ub, t_nf + t_nb, fwd_flop + bwd_flop);
      fused_rows(c, flash_fwd, flash_bwd, o, dq, dk, dv, [&](const char* pass, float ms, float naive_ms, double flop) {
        row("cuDNN SDPA, no padding", pass, ms, naive_ms, flop);
      }, t_nf, t_nb, fwd_flop, bwd_flop, flash_reps);
      c.key_valid = dvalid.data();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (!aq_bench::gpu_present()) return 0;
  const int flash_reps = argc > 1 ? std::atoi(argv[1]) : 20;
  const int naive_reps = argc > 2 ? std::atoi(argv[2]) : 3;
  const int batch = argc > 3 ? std::atoi(argv[3]) : 8, tokens = argc > 4 ? std::atoi(argv[4]) : 512;
  if (flash_reps < 1 || naive_reps < 1 || batch < 1 || tokens < 16 * batch) {
    std::printf("usage: bench_cuda_attention [FLASH_REPS NAIVE_REPS [BATCH TOKENS]] (TOKENS >= 16 x BATCH)\n");
    return 2;
  }
  try {
    run<aq::bf16>("bf16", flash_reps, naive_reps, batch, tokens);
    run<float>("fp32", flash_reps, naive_reps, batch, tokens);
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
  return 0;
}
