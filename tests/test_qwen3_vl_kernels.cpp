// CPU kernels of the Qwen3-VL model: forwards against naive float64 loops, input gradients
// against central finite differences of the forward (float64 accumulation of Σ g·y).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "aq/backend/cpu/attention.hpp"
#include "aq/backend/cpu/cross_entropy.hpp"
#include "aq/backend/cpu/gelu.hpp"
#include "aq/backend/cpu/gemm.hpp"
#include "aq/backend/cpu/layer_norm.hpp"
#include "aq/backend/cpu/rms_norm.hpp"
#include "aq/backend/cpu/rope.hpp"
#include "aq/backend/cpu/swiglu.hpp"
#include "aq/core/thread_pool.hpp"

namespace test_qwen3_vl_kernels {

namespace {

using namespace aq;

tensor random_tensor(std::vector<std::int64_t> shape, std::mt19937& rng, float scale = 1.0f) {
  tensor t(std::move(shape));
  std::normal_distribution<float> dist(0.0f, scale);
  for (float& v : t.storage()) v = dist(rng);
  return t;
}

double dot(const tensor& a, const tensor& b) {
  double s = 0.0;
  for (std::int64_t i = 0; i < a.numel(); ++i) s += static_cast<double>(a.data()[i]) * b.data()[i];
  return s;
}

double max_abs(const std::vector<double>& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// max |analytic − numeric| / max |numeric| for dL/dx, L = Σ g·f(x), central differences.
double gradient_error(tensor& x, const std::function<tensor()>& forward, const tensor& g, const tensor& analytic,
                      float h = 1e-2f) {
  std::vector<double> numeric(static_cast<std::size_t>(x.numel()));
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const float keep = x.data()[i];
    x.data()[i] = keep + h;
    const double up = dot(forward(), g);
    x.data()[i] = keep - h;
    const double down = dot(forward(), g);
    x.data()[i] = keep;
    numeric[static_cast<std::size_t>(i)] = (up - down) / (2.0 * h);
  }
  double diff = 0.0;
  for (std::size_t i = 0; i < numeric.size(); ++i) diff = std::max(diff, std::abs(numeric[i] - analytic.data()[i]));
  return diff / max_abs(numeric);
}

}  // namespace

TEST_CASE("linear forward and input gradient equal float64 loops, on one thread and many") {
  std::mt19937 rng(1);
  for (const auto [m, k, n] : {std::array<std::int64_t, 3>{3, 5, 1000}, {257, 33, 17}, {64, 96, 130}}) {
    const tensor x = random_tensor({m, k}, rng), w = random_tensor({n, k}, rng), dy = random_tensor({m, n}, rng);
    std::vector<float> bias(static_cast<std::size_t>(n));
    for (std::int64_t o = 0; o < n; ++o) bias[static_cast<std::size_t>(o)] = 0.01f * static_cast<float>(o);
    tensor y({m, n}), dx({m, k});
    cpu::linear_forward(x.matrix(), w.matrix(), y.matrix(), bias.data());
    cpu::linear_backward_input(dy.matrix(), w.matrix(), dx.matrix());
    double ey = 0.0, edx = 0.0;
    for (std::int64_t r = 0; r < m; ++r) {
      for (std::int64_t o = 0; o < n; ++o) {
        double s = bias[static_cast<std::size_t>(o)];
        for (std::int64_t i = 0; i < k; ++i) s += static_cast<double>(x.matrix()(r, i)) * w.matrix()(o, i);
        ey = std::max(ey, std::abs(s - y.matrix()(r, o)) / (1.0 + std::abs(s)));
      }
      for (std::int64_t i = 0; i < k; ++i) {
        double s = 0.0;
        for (std::int64_t o = 0; o < n; ++o) s += static_cast<double>(dy.matrix()(r, o)) * w.matrix()(o, i);
        edx = std::max(edx, std::abs(s - dx.matrix()(r, i)) / (1.0 + std::abs(s)));
      }
    }
    CHECK(ey < 1e-5);   // fp32 accumulation over ≤ 1000 terms
    CHECK(edx < 1e-5);
    // Deterministic: one thread gives the same bits as the pool (blocks are independent products).
    const unsigned threads = default_thread_pool().size();
    default_thread_pool().resize(1);
    tensor y1({m, n});
    cpu::linear_forward(x.matrix(), w.matrix(), y1.matrix(), bias.data());
    default_thread_pool().resize(threads);
    tensor y2({m, n});
    cpu::linear_forward(x.matrix(), w.matrix(), y2.matrix(), bias.data());
    CHECK(y2.storage() == y.storage());
  }
}

TEST_CASE("thread pool covers the range exactly once, also when nested") {
  thread_pool pool(4);
  std::vector<int> hits(1000, 0);
  pool.parallel_for(1000, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
    pool.parallel_for(3, 1, [](std::int64_t, std::int64_t) {});  // nested: runs inline
  });
  for (int h : hits) REQUIRE(h == 1);
}

TEST_CASE("RMSNorm and LayerNorm input gradients match finite differences (rel 2e-3)") {
  std::mt19937 rng(2);
  tensor x = random_tensor({5, 24}, rng);
  const tensor w = random_tensor({24}, rng, 0.5f), b = random_tensor({24}, rng), g = random_tensor({5, 24}, rng);
  std::vector<float> r(5), mu(5);
  auto rms = [&] {
    tensor y({5, 24});
    cpu::rms_norm_forward(x.matrix(), w.data(), 1e-6f, y.matrix(), r.data());
    return y;
  };
  const tensor y = rms();
  for (std::int64_t i = 0; i < 5; ++i) {  // forward against float64
    double ms = 0.0;
    for (std::int64_t c = 0; c < 24; ++c) ms += static_cast<double>(x.matrix()(i, c)) * x.matrix()(i, c) / 24.0;
    for (std::int64_t c = 0; c < 24; ++c) {
      CHECK(std::abs(y.matrix()(i, c) - w.data()[c] * x.matrix()(i, c) / std::sqrt(ms + 1e-6)) < 1e-5);
    }
  }
  tensor dx({5, 24});
  cpu::rms_norm_backward(x.matrix(), w.data(), r.data(), g.matrix(), dx.matrix());
  CHECK(gradient_error(x, rms, g, dx) < 2e-3);

  auto ln = [&] {
    tensor out({5, 24});
    cpu::layer_norm_forward(x.matrix(), w.data(), b.data(), 1e-6f, out.matrix(), mu.data(), r.data());
    return out;
  };
  ln();
  cpu::layer_norm_backward(x.matrix(), w.data(), mu.data(), r.data(), g.matrix(), dx.matrix());
  CHECK(gradient_error(x, ln, g, dx) < 2e-3);
}

TEST_CASE("interleaved M-RoPE: axis pattern THW…TT, rotation is orthogonal and its backward is the inverse") {
  const std::array<std::int64_t, 3> section{24, 20, 20};
  std::string pattern;
  for (std::int64_t j = 0; j < 64; ++j) pattern += "THW"[cpu::mrope_axis(j, section)];
  CHECK(pattern == "THWTHWTHWTHWTHWTHWTHWTHWTHWTHWTHWTHWTHWTHWTHWTHWTHWTHWTHWTHWTTTT");
  const std::vector<float> inv = cpu::rope_inv_freq(16, 10000.0);
  CHECK(inv[1] == doctest::Approx(0.3162277638912201).epsilon(1e-7));  // torch's fp32 value
  std::vector<std::int64_t> pt{0, 3, 7}, ph{1, 4, 2}, pw{5, 0, 9};
  tensor cos, sin;
  cpu::mrope_tables(pt.data(), ph.data(), pw.data(), 3, inv, {4, 2, 2}, cos, sin);
  // pair 1 uses h, pair 2 uses w, pair 3 and 6, 7 use t
  CHECK(cos.matrix()(1, 1) == doctest::Approx(std::cos(4.0f * inv[1])));
  CHECK(cos.matrix()(2, 2) == doctest::Approx(std::cos(9.0f * inv[2])));
  CHECK(sin.matrix()(2, 7 + 8) == doctest::Approx(std::sin(7.0f * inv[7])));
  std::mt19937 rng(3);
  tensor x = random_tensor({3, 32}, rng);
  const tensor x0 = x;
  cpu::rope_forward(x.matrix(), 2, cos, sin);
  CHECK(dot(x, x) == doctest::Approx(dot(x0, x0)).epsilon(1e-5));
  cpu::rope_backward(x.matrix(), 2, cos, sin);  // transpose of a rotation = inverse
  for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(x.data()[i] == doctest::Approx(x0.data()[i]).epsilon(1e-5));
}

TEST_CASE("attention with GQA, causal + left padding: forward vs float64, gradients vs finite differences") {
  std::mt19937 rng(4);
  const std::int64_t B = 2, T = 5, nh = 4, nkv = 2, d = 8;
  tensor q = random_tensor({B * T, nh * d}, rng), k = random_tensor({B * T, nkv * d}, rng),
         v = random_tensor({B * T, nkv * d}, rng);
  const tensor g = random_tensor({B * T, nh * d}, rng);
  const std::vector<std::uint8_t> valid{0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  const std::vector<cpu::attention_segment> segs{{0, T}, {T, T}};
  for (const auto policy : {cpu::masked_row_policy::attend_all, cpu::masked_row_policy::zero}) {
    cpu::attention_config c{nh, nkv, d, 1.0f / std::sqrt(8.0f), true, valid.data(), policy};
    std::vector<float> lse(static_cast<std::size_t>(nh * B * T));
    auto fwd = [&] {
      tensor o({B * T, nh * d});
      cpu::attention_forward(c, segs, q.matrix(), k.matrix(), v.matrix(), o.matrix(), lse.data());
      return o;
    };
    const tensor o = fwd();
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t h = 0; h < nh; ++h) {
        for (std::int64_t i = 0; i < T; ++i) {
          std::vector<double> p(static_cast<std::size_t>(T), 0.0);
          double z = 0.0;
          bool any = false;
          for (std::int64_t j = 0; j <= i; ++j) {
            if (valid[static_cast<std::size_t>(b * T + j)] == 0) continue;
            double s = 0.0;
            for (std::int64_t e = 0; e < d; ++e) s += static_cast<double>(q.matrix()(b * T + i, h * d + e)) * k.matrix()(b * T + j, (h / 2) * d + e);
            p[static_cast<std::size_t>(j)] = std::exp(s / std::sqrt(8.0));
            z += p[static_cast<std::size_t>(j)];
            any = true;
          }
          for (std::int64_t j = 0; j < T; ++j) {
            if (!any) p[static_cast<std::size_t>(j)] = policy == cpu::masked_row_policy::attend_all ? 1.0 / T : 0.0;
            else p[static_cast<std::size_t>(j)] /= z;
          }
          for (std::int64_t e = 0; e < d; ++e) {
            double out = 0.0;
            for (std::int64_t j = 0; j < T; ++j) out += p[static_cast<std::size_t>(j)] * v.matrix()(b * T + j, (h / 2) * d + e);
            CHECK(std::abs(out - o.matrix()(b * T + i, h * d + e)) < 1e-5);
          }
        }
      }
    }
    tensor dq({B * T, nh * d}), dk({B * T, nkv * d}), dv({B * T, nkv * d});
    cpu::attention_backward(c, segs, q.matrix(), k.matrix(), v.matrix(), o.matrix(), lse.data(), g.matrix(),
                            dq.matrix(), dk.matrix(), dv.matrix());
    CHECK(gradient_error(v, fwd, g, dv) < 2e-3);
    // Fully masked rows under attend_all: the scores are constant in the forward (finite minimum
    // added), so their q/k gradients are what autograd would give through the softmax, not a
    // finite difference; check q/k on rows/keys that only see real scores.
    if (policy == cpu::masked_row_policy::zero) {
      CHECK(gradient_error(q, fwd, g, dq) < 2e-3);
      CHECK(gradient_error(k, fwd, g, dk) < 2e-3);
      for (std::int64_t e = 0; e < nh * d; ++e) CHECK(dq.matrix()(0, e) == 0.0f);  // padded query: no gradient
    } else {
      // Rows of batch 1 have no padding: their dq must match finite differences.
      for (std::int64_t i = B * T / 2; i < B * T; ++i) {
        for (std::int64_t e = 0; e < nh * d; ++e) {
          const float keep = q.matrix()(i, e);
          q.matrix()(i, e) = keep + 1e-2f;
          const double up = dot(fwd(), g);
          q.matrix()(i, e) = keep - 1e-2f;
          const double down = dot(fwd(), g);
          q.matrix()(i, e) = keep;
          CHECK(std::abs((up - down) / 2e-2 - dq.matrix()(i, e)) < 2e-3 * (1.0 + std::abs(dq.matrix()(i, e))));
        }
      }
    }
  }
}

// Float64 attention over segments (probabilities, output, log-sum-exp and the three input
// gradients), written from the definition: no tiles, no online softmax.
struct attention_reference {
  std::vector<double> o, lse, dq, dk, dv;
};

attention_reference reference_attention(const cpu::attention_config& c, const std::vector<cpu::attention_segment>& segs,
                                        const tensor& q, const tensor& k, const tensor& v, const tensor& d_o) {
  const std::int64_t rows = q.dim(0), d = c.head_dim, group = c.heads / c.kv_heads;
  attention_reference r;
  r.o.assign(static_cast<std::size_t>(q.numel()), 0.0);
  r.dq.assign(static_cast<std::size_t>(q.numel()), 0.0);
  r.dk.assign(static_cast<std::size_t>(k.numel()), 0.0);
  r.dv.assign(static_cast<std::size_t>(k.numel()), 0.0);
  r.lse.assign(static_cast<std::size_t>(c.heads * rows), 0.0);
  const double scale = c.scale;
  for (const auto& seg : segs) {
    const std::int64_t L = seg.length;
    for (std::int64_t h = 0; h < c.heads; ++h) {
      const std::int64_t g = h / group;
      for (std::int64_t i = 0; i < L; ++i) {
        const std::int64_t qi = seg.start + i;
        std::vector<double> s(static_cast<std::size_t>(L), 0.0), p(static_cast<std::size_t>(L), 0.0);
        std::vector<bool> ok(static_cast<std::size_t>(L), false);
        double m = -1e300;
        bool any = false;
        for (std::int64_t j = 0; j < L; ++j) {
          const std::int64_t kj = seg.start + j;
          ok[static_cast<std::size_t>(j)] = (!c.causal || j <= i) && (c.key_valid == nullptr || c.key_valid[kj] != 0);
          if (!ok[static_cast<std::size_t>(j)]) continue;
          double x = 0.0;
          for (std::int64_t e = 0; e < d; ++e) x += static_cast<double>(q.matrix()(qi, h * d + e)) * k.matrix()(kj, g * d + e);
          s[static_cast<std::size_t>(j)] = x * scale;
          m = std::max(m, x * scale);
          any = true;
        }
        double z = 0.0;
        for (std::int64_t j = 0; j < L; ++j) {
          if (ok[static_cast<std::size_t>(j)]) z += std::exp(s[static_cast<std::size_t>(j)] - m);
        }
        for (std::int64_t j = 0; j < L; ++j) {
          if (!any) {
            p[static_cast<std::size_t>(j)] = c.masked_rows == cpu::masked_row_policy::attend_all ? 1.0 / static_cast<double>(L) : 0.0;
          } else if (ok[static_cast<std::size_t>(j)]) {
            p[static_cast<std::size_t>(j)] = std::exp(s[static_cast<std::size_t>(j)] - m) / z;
          }
        }
        r.lse[static_cast<std::size_t>(h * rows + qi)] = any ? m + std::log(z) : HUGE_VAL;
        // dP_ij = dO_i·v_j, dS = P ∘ (dP − Σ_j P dP).
        std::vector<double> dp(static_cast<std::size_t>(L), 0.0);
        double delta = 0.0;
        for (std::int64_t j = 0; j < L; ++j) {
          const std::int64_t kj = seg.start + j;
          for (std::int64_t e = 0; e < d; ++e) {
            r.o[static_cast<std::size_t>(qi * c.heads * d + h * d + e)] += p[static_cast<std::size_t>(j)] * v.matrix()(kj, g * d + e);
            dp[static_cast<std::size_t>(j)] += static_cast<double>(d_o.matrix()(qi, h * d + e)) * v.matrix()(kj, g * d + e);
          }
          delta += p[static_cast<std::size_t>(j)] * dp[static_cast<std::size_t>(j)];
        }
        for (std::int64_t j = 0; j < L; ++j) {
          const std::int64_t kj = seg.start + j;
          const double pj = p[static_cast<std::size_t>(j)];
          const double ds = pj * (dp[static_cast<std::size_t>(j)] - delta);
          for (std::int64_t e = 0; e < d; ++e) {
            r.dq[static_cast<std::size_t>(qi * c.heads * d + h * d + e)] += ds * scale * k.matrix()(kj, g * d + e);
            r.dk[static_cast<std::size_t>(kj * c.kv_heads * d + g * d + e)] += ds * scale * q.matrix()(qi, h * d + e);
            r.dv[static_cast<std::size_t>(kj * c.kv_heads * d + g * d + e)] += pj * d_o.matrix()(qi, h * d + e);
          }
        }
      }
    }
  }
  return r;
}

// max |actual − reference| / max |reference|
double relative_error(const tensor& actual, const std::vector<double>& ref) {
  double diff = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) diff = std::max(diff, std::abs(ref[i] - actual.data()[i]));
  return diff / max_abs(ref);
}

struct attention_result {
  tensor o, dq, dk, dv;
  std::vector<float> lse;
};

attention_result run_attention(const cpu::attention_config& c, const std::vector<cpu::attention_segment>& segs,
                               const tensor& q, const tensor& k, const tensor& v, const tensor& d_o) {
  const std::int64_t rows = q.dim(0);
  attention_result r{tensor({rows, q.dim(1)}), tensor({rows, q.dim(1)}), tensor({rows, k.dim(1)}),
                     tensor({rows, k.dim(1)}), std::vector<float>(static_cast<std::size_t>(c.heads * rows))};
  cpu::attention_forward(c, segs, q.matrix(), k.matrix(), v.matrix(), r.o.matrix(), r.lse.data());
  cpu::attention_backward(c, segs, q.matrix(), k.matrix(), v.matrix(), r.o.matrix(), r.lse.data(), d_o.matrix(),
                          r.dq.matrix(), r.dk.matrix(), r.dv.matrix());
  return r;
}

TEST_CASE("tiled attention equals float64 attention at lengths that are not tile multiples, bit-identical across thread counts") {
  std::mt19937 rng(11);
  struct attention_case {
    const char* name;
    std::vector<std::int64_t> lengths;
    std::int64_t heads, kv_heads, head_dim;
    bool causal;
    std::int64_t left_padding;  // padded keys at the start of the first segment (text batches)
    cpu::masked_row_policy policy;
  };
  const std::int64_t qt = cpu::attention_query_tile, kt = cpu::attention_key_tile;
  const std::vector<attention_case> cases{
      {"vision: images of 1, q_tile - 1, k_tile + 1 and 2 k_tile + 7 patches", {1, qt - 1, kt + 1, 2 * kt + 7}, 2, 2, 16,
       false, 0, cpu::masked_row_policy::attend_all},
      {"vision: one image of exactly two key tiles", {2 * kt}, 3, 3, 8, false, 0, cpu::masked_row_policy::attend_all},
      {"text: causal, no padding, GQA", {kt + qt + 3, 5}, 4, 2, 8, true, 0, cpu::masked_row_policy::zero},
      {"text: causal + left padding beyond a query tile, eager (attend_all)", {kt + 40, kt + 40}, 4, 2, 8, true, qt + 6,
       cpu::masked_row_policy::attend_all},
      {"text: causal + left padding beyond a query tile, sdpa (zero)", {kt + 40, kt + 40}, 4, 2, 8, true, qt + 6,
       cpu::masked_row_policy::zero},
  };
  for (const attention_case& tc : cases) {
    CAPTURE(tc.name);
    std::vector<cpu::attention_segment> segs;
    std::int64_t rows = 0;
    for (const std::int64_t L : tc.lengths) {
      segs.push_back({rows, L});
      rows += L;
    }
    std::vector<std::uint8_t> valid(static_cast<std::size_t>(rows), 1);
    for (std::int64_t i = 0; i < tc.left_padding; ++i) valid[static_cast<std::size_t>(i)] = 0;
    const cpu::attention_config c{tc.heads, tc.kv_heads, tc.head_dim,
                                  1.0f / std::sqrt(static_cast<float>(tc.head_dim)), tc.causal,
                                  tc.left_padding > 0 ? valid.data() : nullptr, tc.policy};
    const tensor q = random_tensor({rows, tc.heads * tc.head_dim}, rng, 1.5f);
    const tensor k = random_tensor({rows, tc.kv_heads * tc.head_dim}, rng, 1.5f);
    const tensor v = random_tensor({rows, tc.kv_heads * tc.head_dim}, rng);
    const tensor d_o = random_tensor({rows, tc.heads * tc.head_dim}, rng);
    const attention_reference ref = reference_attention(c, segs, q, k, v, d_o);
    const unsigned threads = default_thread_pool().size();
    default_thread_pool().resize(1);
    const attention_result one = run_attention(c, segs, q, k, v, d_o);
    default_thread_pool().resize(3);
    const attention_result three = run_attention(c, segs, q, k, v, d_o);
    default_thread_pool().resize(threads);
    // fp32 with float accumulation over at most 2·k_tile + 7 keys
    CHECK(relative_error(one.o, ref.o) < 5e-6);
    CHECK(relative_error(one.dq, ref.dq) < 1e-5);
    CHECK(relative_error(one.dk, ref.dk) < 1e-5);
    CHECK(relative_error(one.dv, ref.dv) < 1e-5);
    double lse_err = 0.0;
    for (std::size_t i = 0; i < ref.lse.size(); ++i) {
      if (std::isinf(ref.lse[i])) {
        CHECK(std::isinf(one.lse[i]));
      } else {
        lse_err = std::max(lse_err, std::abs(ref.lse[i] - one.lse[i]) / (1.0 + std::abs(ref.lse[i])));
      }
    }
    CHECK(lse_err < 1e-6);
    CHECK(three.o.storage() == one.o.storage());
    CHECK(three.lse == one.lse);
    CHECK(three.dq.storage() == one.dq.storage());
    CHECK(three.dk.storage() == one.dk.storage());
    CHECK(three.dv.storage() == one.dv.storage());
  }
}

TEST_CASE("SwiGLU and GELU (tanh, erf) gradients match finite differences") {
  std::mt19937 rng(5);
  tensor a = random_tensor({4, 16}, rng, 2.0f), b = random_tensor({4, 16}, rng);
  const tensor g = random_tensor({4, 16}, rng);
  auto sw = [&] {
    tensor y({4, 16});
    cpu::swiglu_forward(a.matrix(), b.matrix(), y.matrix());
    return y;
  };
  tensor da({4, 16}), db({4, 16});
  cpu::swiglu_backward(a.matrix(), b.matrix(), g.matrix(), da.matrix(), db.matrix());
  CHECK(gradient_error(a, sw, g, da) < 2e-3);
  CHECK(gradient_error(b, sw, g, db) < 2e-3);
  CHECK(cpu::gelu_tanh::value(1.0f) == doctest::Approx(0.8411920071).epsilon(1e-6));  // torch gelu(tanh)
  CHECK(cpu::gelu_erf::value(1.0f) == doctest::Approx(0.8413447461).epsilon(1e-6));   // torch gelu
  tensor dx({4, 16});
  auto gt = [&] {
    tensor y({4, 16});
    cpu::activation_forward<cpu::gelu_tanh>(a.matrix(), y.matrix());
    return y;
  };
  cpu::activation_backward<cpu::gelu_tanh>(a.matrix(), g.matrix(), dx.matrix());
  CHECK(gradient_error(a, gt, g, dx) < 2e-3);
  auto ge = [&] {
    tensor y({4, 16});
    cpu::activation_forward<cpu::gelu_erf>(a.matrix(), y.matrix());
    return y;
  };
  cpu::activation_backward<cpu::gelu_erf>(a.matrix(), g.matrix(), dx.matrix());
  CHECK(gradient_error(a, ge, g, dx) < 2e-3);
}

TEST_CASE("causal LM loss shifts labels, ignores -100, averages over valid targets; gradient is (p - onehot)/N") {
  std::mt19937 rng(6);
  tensor z = random_tensor({6, 7}, rng, 3.0f);
  const std::vector<std::int64_t> labels{-100, 2, 5, -100, 1, 3};  // batch 2 × seq 3
  tensor dz({6, 7});
  matrix_view dv = dz.matrix();
  const cpu::lm_loss l = cpu::causal_lm_loss(z.matrix(), labels, 2, 3, &dv);
  // targets: (row0,pos0)->2, (row0,pos1)->5, (row1,pos0)->1, (row1,pos1)->3 ; last positions none
  CHECK(l.targets == 4);
  double want = 0.0;
  const std::pair<int, int> pairs[] = {{0, 2}, {1, 5}, {3, 1}, {4, 3}};
  for (const auto& [r, y] : pairs) {
    double s = 0.0;
    for (int c = 0; c < 7; ++c) s += std::exp(static_cast<double>(z.matrix()(r, c)));
    want += std::log(s) - z.matrix()(r, y);
  }
  CHECK(l.loss == doctest::Approx(want / 4).epsilon(1e-7));
  for (int c = 0; c < 7; ++c) CHECK(dz.matrix()(2, c) == 0.0f);
  auto loss_only = [&] {
    tensor out({1});
    out.data()[0] = static_cast<float>(cpu::causal_lm_loss(z.matrix(), labels, 2, 3, nullptr).loss);
    return out;
  };
  tensor one({1}, 1.0f);
  CHECK(gradient_error(z, loss_only, one, dz, 1e-2f) < 2e-3);
  const std::vector<std::int64_t> none(6, -100);
  CHECK(std::isnan(cpu::causal_lm_loss(z.matrix(), none, 2, 3, nullptr).loss));
  const std::vector<std::int64_t> bad{0, 9, 0, 0, 0, 0};
  CHECK_THROWS_AS(cpu::causal_lm_loss(z.matrix(), bad, 2, 3, nullptr), aq::error);
}

}  // namespace test_qwen3_vl_kernels
