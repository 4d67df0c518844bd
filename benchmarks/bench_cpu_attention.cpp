// The CPU attention (aq::cpu::attention_forward/backward, tiled flash-attention style) against a
// full-matrix peer measured in the same run: S = QKᵀ, softmax, PV and the textbook backward through
// the stored [S x S] probabilities, one head at a time (the layout the CPU engine used before the
// tiles). One image's patches in one segment, unmasked, as the vision tower runs them. Prints time,
// the rate on the model FLOPs (12·S²·d per head: forward 4, backward 8), the process's peak
// resident memory after each phase (tiled phases first: peak RSS only grows) and the largest
// difference between the two outputs relative to the largest value.
//
//   build/benchmarks/bench_cpu_attention [max_patches]   (default 16384; 1 thread and all threads)
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <aq/backend/cpu/attention.hpp>
#include <aq/core/thread_pool.hpp>

namespace {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr std::int64_t heads = 4;
constexpr std::int64_t head_dim = 64;

struct inputs {
  matrix q, k, v, d_o;
};

inputs random_inputs(std::int64_t rows) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const auto fill = [&] {
    matrix m(rows, heads * head_dim);
    for (std::int64_t i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
    return m;
  };
  inputs in;
  in.q = fill();
  in.k = fill();
  in.v = fill();
  in.d_o = fill();
  return in;
}

struct outputs {
  matrix o, dq, dk, dv;
};

aq::const_matrix_view view(const matrix& m) { return {m.data(), m.rows(), m.cols(), m.cols()}; }
aq::matrix_view view(matrix& m) { return {m.data(), m.rows(), m.cols(), m.cols()}; }

outputs run_tiled(const inputs& in, float scale) {
  const std::int64_t rows = in.q.rows();
  aq::cpu::attention_config c;
  c.heads = heads;
  c.kv_heads = heads;
  c.head_dim = head_dim;
  c.scale = scale;
  const std::vector<aq::cpu::attention_segment> one_image{{0, rows}};
  outputs out{matrix(rows, heads * head_dim), matrix(rows, heads * head_dim), matrix(rows, heads * head_dim),
              matrix(rows, heads * head_dim)};
  std::vector<float> lse(static_cast<std::size_t>(heads * rows));
  aq::cpu::attention_forward(c, one_image, view(in.q), view(in.k), view(in.v), view(out.o), lse.data());
  aq::cpu::attention_backward(c, one_image, view(in.q), view(in.k), view(in.v), view(out.o), lse.data(), view(in.d_o),
                              view(out.dq), view(out.dk), view(out.dv));
  return out;
}

// The peer: every head's [rows x rows] scores and probabilities stored, as a plain implementation
// (or the autograd graph of transformers' eager attention) keeps them.
outputs run_full_matrix(const inputs& in, float scale) {
  const std::int64_t rows = in.q.rows();
  outputs out{matrix(rows, heads * head_dim), matrix(rows, heads * head_dim), matrix(rows, heads * head_dim),
              matrix(rows, heads * head_dim)};
  matrix p(rows, rows), dp(rows, rows);
  for (std::int64_t h = 0; h < heads; ++h) {
    const auto cols = [&](const matrix& m) { return m.middleCols(h * head_dim, head_dim); };
    p.noalias() = scale * cols(in.q) * cols(in.k).transpose();
    for (std::int64_t r = 0; r < rows; ++r) {
      auto row = p.row(r);
      row = (row.array() - row.maxCoeff()).exp();
      row /= row.sum();
    }
    out.o.middleCols(h * head_dim, head_dim).noalias() = p * cols(in.v);
    dp.noalias() = cols(in.d_o) * cols(in.v).transpose();
    for (std::int64_t r = 0; r < rows; ++r) {
      const float delta = p.row(r).dot(dp.row(r));
      dp.row(r) = p.row(r).array() * (dp.row(r).array() - delta);
    }
    out.dq.middleCols(h * head_dim, head_dim).noalias() = scale * dp * cols(in.k);
    out.dk.middleCols(h * head_dim, head_dim).noalias() = scale * dp.transpose() * cols(in.q);
    out.dv.middleCols(h * head_dim, head_dim).noalias() = p.transpose() * cols(in.d_o);
  }
  return out;
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

double relative_difference(const outputs& a, const outputs& b) {
  double diff = 0.0;
  double scale = 0.0;
  for (const auto& [x, y] : {std::pair{&a.o, &b.o}, {&a.dq, &b.dq}, {&a.dk, &b.dk}, {&a.dv, &b.dv}}) {
    diff = std::max(diff, static_cast<double>((*x - *y).cwiseAbs().maxCoeff()));
    scale = std::max(scale, static_cast<double>(y->cwiseAbs().maxCoeff()));
  }
  return diff / scale;
}

template <class F>
double seconds(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t max_patches = argc > 1 ? std::atoll(argv[1]) : 16384;
  const unsigned all_threads = aq::default_thread_pool().size();
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  std::vector<std::int64_t> sizes;
  for (std::int64_t s = 1024; s <= max_patches; s *= 4) sizes.push_back(s);

  std::printf("CPU attention, forward + input-gradient backward, %lld heads x %lld dims, one unmasked segment\n",
              static_cast<long long>(heads), static_cast<long long>(head_dim));
  std::printf("| patches | implementation | threads | time [s] | GFLOP/s | peak RSS after [MiB] | max rel diff |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::vector<outputs> tiled(sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const inputs in = random_inputs(sizes[i]);
    const double flop = 12.0 * static_cast<double>(sizes[i]) * static_cast<double>(sizes[i]) * head_dim * heads;
    for (const unsigned threads : {1u, all_threads}) {
      aq::default_thread_pool().resize(threads);
      const double t = seconds([&] { tiled[i] = run_tiled(in, scale); });
      std::printf("| %lld | tiled | %u | %.3f | %.1f | %.0f | |\n", static_cast<long long>(sizes[i]), threads, t,
                  flop / t * 1e-9, peak_rss_mib());
      if (threads == all_threads) break;
    }
  }
  aq::default_thread_pool().resize(1);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const inputs in = random_inputs(sizes[i]);
    const double flop = 12.0 * static_cast<double>(sizes[i]) * static_cast<double>(sizes[i]) * head_dim * heads;
    outputs full;
    const double t = seconds([&] { full = run_full_matrix(in, scale); });
    std::printf("| %lld | full matrix (peer) | 1 | %.3f | %.1f | %.0f | %.2e |\n", static_cast<long long>(sizes[i]), t,
                flop / t * 1e-9, peak_rss_mib(), relative_difference(tiled[i], full));
  }
  return 0;
}
