// Chunked cross-entropy over the 151,936-word vocabulary on the GPU against cpu::causal_lm_loss:
// (a) the online log-sum-exp kernels on given fp32 logits, chunk by chunk (chunks of 16384: nine
// full ones and a 4480-wide tail); (b) the LM head as the text decoder runs it: each logits chunk
// from the bf16 GEMM, never more than one chunk held, giving the loss and d_hidden.
// Tolerances: loss and fp32 dlogits ≤ 1e-5 relative (fp64 row sums on both sides); d_hidden ≤ 1e-2
// relative to its max |value| (dlogits enter the input-gradient GEMM as bf16).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "aq/backend/cpu/cross_entropy.hpp"
#include "aq/backend/cpu/gemm.hpp"
#include "aq/backend/cuda/kernels/cross_entropy.cuh"
#include "aq/backend/cuda/kernels/device_buffer.cuh"
#include "aq/backend/cuda/kernels/device_matrix.cuh"
#include "aq/backend/cuda/kernels/gemm_cublaslt.cuh"
#include "cuda_test_util.cuh"

namespace test_cross_entropy_cuda {

namespace {

using aq::bf16;
using aq::cuda::device_buffer;
using aq::cuda::device_matrix;
using namespace aq_test;

constexpr std::int64_t vocab = 151936;
constexpr std::int64_t chunk = 16384;
constexpr std::int64_t batch = 2, seq = 9, rows = batch * seq;

std::vector<std::int64_t> make_labels() {
  std::vector<std::int64_t> labels(static_cast<std::size_t>(rows));
  for (std::int64_t i = 0; i < rows; ++i) labels[static_cast<std::size_t>(i)] = (i * 7919 + 11) % vocab;
  labels[3] = -100;           // an ignored target
  labels[10] = vocab - 1;     // the last word (in the tail chunk)
  labels[12] = 0;             // the first word
  labels[14] = chunk;         // first column of the second chunk
  return labels;
}

void chunk_kernels_case() {
  const std::vector<std::int64_t> labels = make_labels();
  std::vector<float> logits = random_floats(static_cast<std::size_t>(rows * vocab), 1, 3.0f);
  std::vector<float> dlogits(logits.size());
  aq::matrix_view dl{dlogits.data(), rows, vocab, vocab};
  const aq::cpu::lm_loss ref = aq::cpu::causal_lm_loss({logits.data(), rows, vocab, vocab}, labels, batch, seq, &dl);

  const aq::cuda::lm_targets t = aq::cuda::causal_lm_targets(labels, batch, seq, vocab);
  expect(t.count == ref.targets, "target count " + std::to_string(t.count) + " equals the CPU's");
  device_buffer<float> d_logits(logits), d_grad(logits.size());
  device_buffer<std::int64_t> d_t(t.target);
  d_grad.fill_bytes(0xff);
  aq::cuda::cross_entropy_state state(rows);
  state.reset(nullptr);
  for (std::int64_t v0 = 0; v0 < vocab; v0 += chunk) {
    const std::int64_t w = std::min(chunk, vocab - v0);
    state.update(device_matrix<const float>{d_logits.data() + v0, rows, w, vocab}, v0, d_t.data(), nullptr);
  }
  state.finalize(d_t.data(), nullptr);
  for (std::int64_t v0 = 0; v0 < vocab; v0 += chunk) {
    const std::int64_t w = std::min(chunk, vocab - v0);
    state.gradient(device_matrix<const float>{d_logits.data() + v0, rows, w, vocab}, v0, d_t.data(), t.count,
                   device_matrix<float>{d_grad.data() + v0, rows, w, vocab}, nullptr);
  }
  const double loss = state.total.to_host()[0] / static_cast<double>(t.count);
  expect_close(std::fabs(loss - ref.loss) / std::fabs(ref.loss), 1e-5, "chunked loss over 151936 words vs CPU");
  expect_close(rel_err(d_grad.to_host(), dlogits), 1e-5, "chunked dlogits vs CPU");

  bool threw = false;
  try {
    std::vector<std::int64_t> bad = labels;
    bad[4] = vocab;
    (void)aq::cuda::causal_lm_targets(bad, batch, seq, vocab);
  } catch (const aq::error&) {
    threw = true;
  }
  expect(threw, "a label outside the vocabulary throws aq::error");
}

struct lm_head_result {
  double loss = 0.0;
  std::int64_t chunks = 0, columns = 0;  // dlogits chunks of the backward
};

// The decoder's chunked LM-head loss: each logits chunk from the bf16 GEMM into the online
// log-sum-exp; with d_hidden, each chunk recomputed for its bf16 dlogits, d_hidden accumulated.
lm_head_result lm_head_loss(aq::cuda::cublaslt_gemm& gemm, device_matrix<const bf16> hidden,
                            device_matrix<const bf16> head, const aq::cuda::lm_targets& targets,
                            device_matrix<float> d_hidden) {
  device_buffer<float> logits(static_cast<std::size_t>(rows * chunk));
  device_buffer<bf16> dlogits(static_cast<std::size_t>(rows * chunk));
  device_buffer<std::int64_t> t(targets.target);
  aq::cuda::cross_entropy_state state(rows);
  const auto for_each_chunk = [&](auto&& f) {
    for (std::int64_t v0 = 0; v0 < vocab; v0 += chunk) {
      const device_matrix<const bf16> w{head.row(v0), std::min(chunk, vocab - v0), head.cols, head.ld};
      const device_matrix<float> z{logits.data(), rows, w.rows, chunk};
      gemm.linear_forward(hidden, w, z);
      f(v0, w, z);
    }
  };
  lm_head_result out;
  state.reset(nullptr);
  for_each_chunk([&](std::int64_t v0, device_matrix<const bf16>, device_matrix<float> z) {
    state.update(z, v0, t.data(), nullptr);
  });
  state.finalize(t.data(), nullptr);
  if (d_hidden.rows > 0) {
    for_each_chunk([&](std::int64_t v0, device_matrix<const bf16> w, device_matrix<float> z) {
      const device_matrix<bf16> g{dlogits.data(), rows, z.cols, chunk};
      state.gradient(device_matrix<const float>(z), v0, t.data(), targets.count, g, nullptr);
      gemm.linear_backward_input(device_matrix<const bf16>(g), w, d_hidden, v0 > 0);
      ++out.chunks;
      out.columns += g.cols;
    });
  }
  out.loss = state.total.to_host()[0] / static_cast<double>(targets.count);
  return out;
}

void lm_head_case() {
  const std::int64_t hidden = 64;
  const std::vector<std::int64_t> labels = make_labels();
  const std::vector<float> h = bf16_rounded(random_floats(static_cast<std::size_t>(rows * hidden), 2));
  const std::vector<float> head = bf16_rounded(random_floats(static_cast<std::size_t>(vocab * hidden), 3, 0.5f));
  std::vector<float> logits(static_cast<std::size_t>(rows * vocab)), dlogits(logits.size()),
      dh(static_cast<std::size_t>(rows * hidden));
  const aq::const_matrix_view hv{h.data(), rows, hidden, hidden}, ev{head.data(), vocab, hidden, hidden};
  aq::cpu::linear_forward(hv, ev, {logits.data(), rows, vocab, vocab});
  aq::matrix_view dl{dlogits.data(), rows, vocab, vocab};
  const aq::cpu::lm_loss ref = aq::cpu::causal_lm_loss({logits.data(), rows, vocab, vocab}, labels, batch, seq, &dl);
  aq::cpu::linear_backward_input(dl, ev, {dh.data(), rows, hidden, hidden});

  aq::cuda::cublaslt_gemm gemm;
  device_buffer<bf16> d_h(to_bf16(h)), d_head(to_bf16(head));
  device_buffer<float> d_dh(dh.size());
  d_dh.fill_bytes(0xff);
  const aq::cuda::lm_targets targets = aq::cuda::causal_lm_targets(labels, batch, seq, vocab);
  const device_matrix<const bf16> hidden_view{d_h.data(), rows, hidden, hidden};
  const device_matrix<const bf16> head_view{d_head.data(), vocab, hidden, hidden};
  const lm_head_result result =
      lm_head_loss(gemm, hidden_view, head_view, targets, device_matrix<float>{d_dh.data(), rows, hidden, hidden});
  expect(targets.count == ref.targets, "LM head: target count");
  expect_close(std::fabs(result.loss - ref.loss) / std::fabs(ref.loss), 1e-5, "LM head chunked loss vs CPU");
  expect_close(rel_err(d_dh.to_host(), dh), 1e-2, "LM head d_hidden vs CPU");
  expect(result.chunks == 10 && result.columns == vocab, "dlogits delivered in 10 chunks covering the vocabulary");
  // Forward only (no d_hidden) gives the same loss, bit for bit.
  const lm_head_result again = lm_head_loss(gemm, hidden_view, head_view, targets, device_matrix<float>{});
  expect(again.loss == result.loss, "forward-only run reproduces the loss bit for bit");
}

}  // namespace

AQ_GPU_TEST("cuda cross entropy") {
  chunk_kernels_case();
  lm_head_case();
}

}  // namespace test_cross_entropy_cuda
