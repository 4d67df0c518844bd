// Forward + backward (input gradients, observer off) throughput of the CPU Qwen3-VL text decoder
// on synthetic weights: a tiny shape and a ~100M-parameter shape, with all threads and with one
// thread measured in the same run, plus the process's peak resident memory (getrusage).
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <aq/backend/cpu/qwen3_vl/text_model.hpp>
#include <aq/core/thread_pool.hpp>

namespace {

using namespace aq;
using namespace aq::qwen3_vl;

struct shape {
  const char* name;
  text_config text;
  std::int64_t batch, seq, iterations;
};

text_weights synthetic_weights(const config& cfg) {
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  weight_source source;
  source.contains = [](const std::string&) { return false; };
  source.load = [&](const std::string& name, const std::vector<std::int64_t>& s) {
    tensor t(s);
    const float scale = s.size() == 2 ? 1.0f / std::sqrt(static_cast<float>(s[1])) : 0.1f;
    for (float& v : t.storage()) v = dist(rng) * scale + (s.size() == 1 && name.find("norm") != std::string::npos ? 1.0f : 0.0f);
    return t;
  };
  return load_text_weights(cfg, source);
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

std::int64_t parameters(const text_config& t) {
  const std::int64_t per_layer = t.hidden_size * t.num_attention_heads * t.head_dim * 2 +
                                 t.hidden_size * t.num_key_value_heads * t.head_dim * 2 +
                                 3 * t.hidden_size * t.intermediate_size + 2 * t.hidden_size + 2 * t.head_dim;
  return t.vocab_size * t.hidden_size + t.num_hidden_layers * per_layer + t.hidden_size;
}

}  // namespace

int main() {
  text_config tiny{};
  tiny.hidden_size = 48, tiny.intermediate_size = 96, tiny.num_hidden_layers = 3, tiny.num_attention_heads = 4;
  tiny.num_key_value_heads = 2, tiny.head_dim = 16, tiny.vocab_size = 211, tiny.rope_theta = 10000.0;
  tiny.mrope_section = {4, 2, 2};
  text_config m100{};
  m100.hidden_size = 768, m100.intermediate_size = 2048, m100.num_hidden_layers = 12, m100.num_attention_heads = 12;
  m100.num_key_value_heads = 4, m100.head_dim = 64, m100.vocab_size = 32000, m100.rope_theta = 5000000.0;
  m100.mrope_section = {16, 8, 8};
  const shape shapes[] = {{"tiny (3 layers, H 48)", tiny, 2, 16, 200}, {"~100M (12 layers, H 768)", m100, 2, 128, 2}};

  thread_pool& pool = default_thread_pool();
  const unsigned all_threads = pool.size();
  std::printf("CPU Qwen3-VL text decoder, fp32, forward + input-gradient backward of the mean LM loss\n\n");
  std::printf("| shape | params | tokens | threads | ms / step | tokens/s | vs 1 thread | peak RSS MiB |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const shape& s : shapes) {
    config cfg;
    cfg.text = s.text;
    cfg.tie_word_embeddings = true;
    const text_weights weights = synthetic_weights(cfg);
    const text_model model(cfg, weights);
    text_batch batch;
    batch.batch = s.batch;
    batch.seq = s.seq;
    std::mt19937 rng(7);
    std::uniform_int_distribution<std::int64_t> token(0, s.text.vocab_size - 1);
    for (std::int64_t i = 0; i < s.batch * s.seq; ++i) batch.input_ids.push_back(token(rng));
    batch.attention_mask.assign(batch.input_ids.size(), 1);
    for (std::int64_t i = 0; i < s.seq / 4; ++i) batch.attention_mask[static_cast<std::size_t>(i)] = 0;  // left padding
    batch.labels = batch.input_ids;
    double single = 0.0;
    for (const unsigned threads : {1u, all_threads}) {
      pool.resize(threads);
      model.run(batch);  // warm-up
      const auto start = std::chrono::steady_clock::now();
      double checksum = 0.0;
      for (std::int64_t it = 0; it < s.iterations; ++it) checksum += model.run(batch).loss;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double per_step = seconds / static_cast<double>(s.iterations);
      const double tps = static_cast<double>(s.batch * s.seq) / per_step;
      if (threads == 1) single = tps;
      std::printf("| %s | %.1fM | %lld | %u | %.2f | %.0f | %.2fx | %.0f |\n", s.name,
                  static_cast<double>(parameters(s.text)) / 1e6, static_cast<long long>(s.batch * s.seq), threads,
                  per_step * 1e3, tps, tps / single, peak_rss_mib());
      if (checksum != checksum) std::printf("(loss is NaN)\n");
      if (all_threads == 1) break;
    }
  }
  pool.resize(all_threads);
  return 0;
}
