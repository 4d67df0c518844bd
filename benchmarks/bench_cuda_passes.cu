// The memory-bound passes of the GPU score stage (norms, RoPE, SwiGLU, residual adds, fake
// quantization, the gradient-score reduce) at the Qwen3-VL-4B shapes of one 8 × 512 batch, each
// against a device-to-device copy timed in the same run: bytes each pass must read and write,
// its time, and its rate as a share of the copy's. Prints a table (and writes it to argv[1]).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/elementwise.cuh"
#include "aq/backend/cuda/kernels/fake_quant.cuh"
#include "aq/backend/cuda/kernels/gradient_score.cuh"
#include "aq/backend/cuda/kernels/qk_norm_rope.cuh"
#include "aq/backend/cuda/kernels/quantize_codes.cuh"
#include "aq/backend/cuda/kernels/rms_norm.cuh"
#include "aq/backend/cuda/kernels/rope.cuh"
#include "aq/backend/cuda/kernels/swiglu.cuh"
#include "aq/core/bf16.hpp"
#include "aq/quant/recipes.hpp"
#include "cuda_bench_util.cuh"

namespace {

using aq::bf16;
using aq::cuda::device_buffer;
using aq::cuda::device_matrix;
using aq::cuda::cview;
using aq::cuda::mview;
using aq_bench::random_buffer;
using aq_bench::time_ms;

}  // namespace

int main(int argc, char** argv) {
  if (!aq_bench::gpu_present()) return 0;
  try {
    cudaDeviceProp prop{};
    AQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const std::int64_t N = 4096, H = 2560, I = 9728, heads = 32, hd = 128;  // 8 x 512 tokens, 4B
    constexpr double mb = 1e6;

    // The copy everything is measured against: 1 GiB each way.
    const std::int64_t copy_n = std::int64_t{1} << 28;
    device_buffer<float> copy_src = random_buffer<float>(copy_n, 1), copy_dst(static_cast<std::size_t>(copy_n));
    const double copy_bytes = 2.0 * 4.0 * static_cast<double>(copy_n);
    const double copy_ms = time_ms([&] {
      AQ_CUDA_CHECK(cudaMemcpyAsync(copy_dst.data(), copy_src.data(), static_cast<std::size_t>(copy_n) * 4,
                                    cudaMemcpyDeviceToDevice));
    });
    const double copy_rate = copy_bytes / (copy_ms * 1e-3) / 1e9;

    std::string table;
    char line[512];
    std::snprintf(line, sizeof(line),
                  "GPU: %s, %d SMs; %lld tokens; device-to-device copy %.0f GB/s (read + write); median of 15 x 10 calls\n\n",
                  prop.name, prop.multiProcessorCount, static_cast<long long>(N), copy_rate);
    table += line;
    table += "| pass | shape | MB moved | us | GB/s | of copy |\n|---|---|---:|---:|---:|---:|\n";
    const auto row = [&](const char* pass, const char* shape, double bytes, double ms) {
      const double rate = bytes / (ms * 1e-3) / 1e9;
      std::snprintf(line, sizeof(line), "| %s | %s | %.1f | %.1f | %.0f | %.0f%% |\n", pass, shape, bytes / mb, ms * 1e3,
                    rate, 100.0 * rate / copy_rate);
      table += line;
    };

    // Residual stream and norms (fp32 stream, bf16 GEMM operand).
    const device_buffer<float> h = random_buffer<float>(N * H, 2), o = random_buffer<float>(N * H, 3);
    const device_buffer<float> w = random_buffer<float>(I, 4, 1.0f), g32 = random_buffer<float>(N * H, 5);
    device_buffer<float> hs(static_cast<std::size_t>(N * H)), inv(static_cast<std::size_t>(N * heads));
    device_buffer<float> dx(static_cast<std::size_t>(N * H));
    device_buffer<bf16> a(static_cast<std::size_t>(N * H));
    const double nh = static_cast<double>(N * H);
    row("residual add (fp32)", "4096 x 2560", 12.0 * nh, time_ms([&] {
          aq::cuda::launch_elementwise(N, H, aq::cuda::detail::add_op{cview(h, N, H), cview(o, N, H), mview(hs, N, H)}, nullptr);
        }));
    row("RMSNorm forward (fp32 -> bf16)", "4096 x 2560", 6.0 * nh, time_ms([&] {
          aq::cuda::rms_norm_forward(cview(h, N, H), w.data(), 1e-6f, mview(a, N, H), inv.data());
        }));
    row("RMSNorm backward, accumulated (fp32)", "4096 x 2560", 16.0 * nh, time_ms([&] {
          aq::cuda::rms_norm_backward(cview(h, N, H), w.data(), inv.data(), cview(g32, N, H), mview(dx, N, H), true);
        }));

    // SwiGLU on fp32 gate/up outputs, bf16 operands and gradients.
    const device_buffer<float> gate = random_buffer<float>(N * I, 6), up = random_buffer<float>(N * I, 7);
    const device_buffer<bf16> d_act = random_buffer<bf16>(N * I, 8);
    device_buffer<bf16> act(static_cast<std::size_t>(N * I)), d_gate(static_cast<std::size_t>(N * I)),
        d_up(static_cast<std::size_t>(N * I));
    const double ni = static_cast<double>(N * I);
    row("SwiGLU forward", "4096 x 9728", 10.0 * ni,
        time_ms([&] { aq::cuda::swiglu_forward(cview(gate, N, I), cview(up, N, I), mview(act, N, I)); }));
    row("SwiGLU backward", "4096 x 9728", 14.0 * ni, time_ms([&] {
          aq::cuda::swiglu_backward(cview(gate, N, I), cview(up, N, I), cview(d_act, N, I), mview(d_gate, N, I),
                                    mview(d_up, N, I));
        }));

    // q heads: norm + RoPE forward and backward, fused, and the backward's unfused passes.
    const std::int64_t R = N * heads;
    const device_buffer<float> q = random_buffer<float>(R * hd, 9), cos = random_buffer<float>(N * hd, 10),
                               sin = random_buffer<float>(N * hd, 11);
    const device_buffer<bf16> dqb = random_buffer<bf16>(R * hd, 12);
    device_buffer<bf16> qb(static_cast<std::size_t>(R * hd)), dq_raw(static_cast<std::size_t>(R * hd));
    device_buffer<float> dq(static_cast<std::size_t>(R * hd));
    const device_matrix<const float> C = cview(cos, N, hd), S = cview(sin, N, hd);
    const double nq = static_cast<double>(R * hd);
    row("q norm + RoPE forward (fp32 -> bf16)", "32 heads x 4096 x 128", 6.0 * nq, time_ms([&] {
          aq::cuda::qk_norm_rope_forward(cview(q, R, hd), heads, w.data(), 1e-6f, C, S, mview(qb, R, hd), inv.data());
        }));
    row("q RoPE + norm backward, fused (bf16 -> bf16)", "32 heads x 4096 x 128", 8.0 * nq, time_ms([&] {
          aq::cuda::qk_rope_norm_backward(cview(dqb, R, hd), heads, cview(q, R, hd), w.data(), inv.data(), C, S,
                                          mview(dq_raw, R, hd));
        }));
    row("q backward unfused: cast, RoPE, norm", "32 heads x 4096 x 128", 22.0 * nq, time_ms([&] {
          aq::cuda::launch_elementwise(R, hd, aq::cuda::detail::convert_op<bf16, float>{cview(dqb, R, hd), mview(dq, R, hd)},
                                       nullptr);
          aq::cuda::rope_backward(device_matrix<float>{dq.data(), N, heads * hd, heads * hd}, heads, C, S);
          aq::cuda::rms_norm_backward(cview(q, R, hd), w.data(), inv.data(), cview(dq, R, hd), mview(dq_raw, R, hd));
        }));

    // Fake quantization of X (bf16 -> bf16), per-tensor fp8 and int8, and a per-channel int8 weight.
    const device_buffer<bf16> x = random_buffer<bf16>(N * I, 13);
    device_buffer<bf16> xq(static_cast<std::size_t>(N * I));
    device_buffer<float> amax(static_cast<std::size_t>(I));
    AQ_CUDA_CHECK(cudaMemcpy(amax.data(), w.data(), static_cast<std::size_t>(I) * sizeof(float), cudaMemcpyDeviceToDevice));
    // Plain quantizer types (nvcc's host stub cannot name a kernel through a recipe's name string).
    const auto plain = []<class Q>(std::type_identity<Q>) {
      return std::type_identity<aq::quant::quantizer<typename Q::format_type, typename Q::granularity_type,
                                                     typename Q::scaling_type, Q::narrow_range>>{};
    };
    using fp8_input = typename decltype(plain(std::type_identity<aq::recipes::fp8_e4m3::input>{}))::type;
    using int8_input = typename decltype(plain(std::type_identity<aq::recipes::int8_w8a8::input>{}))::type;
    using int8_weight = typename decltype(plain(std::type_identity<aq::recipes::int8_w8a8::weight>{}))::type;
    const auto fq = [&]<class Q>(const char* pass) {
      row(pass, "4096 x 9728", 4.0 * ni, time_ms([&] {
            AQ_CUDA_CHECK((aq::cuda::fake_quantize<Q, bf16, bf16>(x.data(), xq.data(), N, I, amax.data())));
          }));
    };
    fq.template operator()<fp8_input>("fake-quant X, fp8 e4m3 per tensor");
    fq.template operator()<int8_input>("fake-quant X, int8 per tensor");
    row("fake-quant W, int8 per channel", "9728 x 2560", 4.0 * static_cast<double>(I * H), time_ms([&] {
          AQ_CUDA_CHECK((aq::cuda::fake_quantize<int8_weight, bf16, bf16>(x.data(), xq.data(), I, H, amax.data())));
        }));
    // The same quantizers writing 1-byte codes (and their factors) for the products on codes.
    device_buffer<std::uint8_t> codes(static_cast<std::size_t>(N * I));
    device_buffer<float> code_factors(static_cast<std::size_t>(I));
    const auto qc = [&]<class Q>(const char* pass, std::int64_t rows, std::int64_t cols) {
      row(pass, (std::to_string(rows) + " x " + std::to_string(cols)).c_str(), 3.0 * static_cast<double>(rows * cols),
          time_ms([&] {
            AQ_CUDA_CHECK((aq::cuda::quantize_codes<Q>(x.data(), codes.data(), rows, cols, amax.data(), code_factors.data(),
                                                       nullptr)));
          }));
    };
    qc.template operator()<fp8_input>("codes X, fp8 e4m3 per tensor", N, I);
    qc.template operator()<int8_input>("codes X, int8 per tensor", N, I);
    qc.template operator()<int8_weight>("codes W, int8 per channel", I, H);

    // The gradient-score reduce of two recipes: Y, Y_r (fp32) and dL/dY (bf16) once each.
    const device_buffer<float> y = random_buffer<float>(N * I, 14), y1 = random_buffer<float>(N * I, 15),
                               y2 = random_buffer<float>(N * I, 16);
    const device_buffer<bf16> gy = random_buffer<bf16>(N * I, 17);
    device_buffer<double> scores(2);
    aq::cuda::gradient_score_workspace ws;
    const std::vector<device_matrix<const float>> yrs{cview(y1, N, I), cview(y2, N, I)};
    row("score reduce, 2 recipes", "4096 x 9728", 14.0 * ni, time_ms([&] {
          aq::cuda::accumulate_gradient_scores(yrs, cview(y, N, I), cview(gy, N, I), aq::cuda::score_difference::fp32,
                                               scores.data(), ws);
        }));
    // Products of int8 codes leave int32 accumulators: scaled by a pass of their own (read and
    // write) before, by the score reduce's reads now (per-column factors and a bias).
    const device_buffer<float> factors = random_buffer<float>(I, 18), bias = random_buffer<float>(I, 19);
    const device_buffer<float> input_factor = random_buffer<float>(1, 20);
    device_buffer<float> acc(static_cast<std::size_t>(N * I));
    row("dequantize an int32 product (per column)", "4096 x 9728", 8.0 * ni, time_ms([&] {
          aq::cuda::dequantize_product(device_matrix<std::int32_t>{reinterpret_cast<std::int32_t*>(acc.data()), N, I, I},
                                       input_factor.data(), factors.data(), true, nullptr);
        }));
    const aq::cuda::product_scaling int8_scaling{input_factor.data(), factors.data(), true, true, bias.data()};
    row("score reduce, 2 recipes, one int8 product scaled in it", "4096 x 9728", 14.0 * ni, time_ms([&] {
          aq::cuda::accumulate_gradient_scores(yrs, cview(y, N, I), cview(gy, N, I), aq::cuda::score_difference::fp32,
                                               scores.data(), ws, nullptr, {aq::cuda::product_scaling{}, int8_scaling});
        }));
    AQ_CUDA_CHECK(cudaDeviceSynchronize());
    std::printf("%s", table.c_str());
    if (argc > 1) std::ofstream(argv[1]) << table;
  } catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
  }
  return 0;
}
