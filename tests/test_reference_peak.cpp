// ModelOpt's estimated peak (the default memory budget is half of it) against ModelOpt 0.39's
// measured peak_allocated on random-weight checkpoints of the 2B, 4B and 8B shapes (and the tiny
// one): never above the measurement, and within 11% of it on text (benchmarks/modelopt/results).
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <vector>

#include <aq/model/qwen3_vl/config_json.hpp>
#include <aq/model/qwen3_vl/parameters.hpp>

#include "cli/reference_peak.hpp"

namespace test_reference_peak {

namespace {

namespace fs = std::filesystem;
using aq::qwen3_vl::config;

config config_4b() { return aq::read_qwen3_vl_config(fs::path(AQ_TEST_FIXTURES) / "configs" / "qwen3_vl_4b_instruct.json"); }

// The decoder and vision tower shapes of a preset of benchmarks/modelopt/make_random_qwen3_vl.py
// (the real vocabulary; the vision tower's output is the decoder's width).
struct preset_shape {
  std::int64_t hidden, intermediate, layers, heads, kv_heads, head_dim;
  std::int64_t vision_depth, vision_hidden, vision_intermediate, vision_heads, positions;
  std::vector<std::int64_t> deepstack;
  bool tied;
};

config preset(const preset_shape& p) {
  config c = config_4b();
  c.text.hidden_size = p.hidden;
  c.text.intermediate_size = p.intermediate;
  c.text.num_hidden_layers = p.layers;
  c.text.num_attention_heads = p.heads;
  c.text.num_key_value_heads = p.kv_heads;
  c.text.head_dim = p.head_dim;
  c.vision.depth = p.vision_depth;
  c.vision.hidden_size = p.vision_hidden;
  c.vision.intermediate_size = p.vision_intermediate;
  c.vision.num_heads = p.vision_heads;
  c.vision.num_position_embeddings = p.positions;
  c.vision.out_hidden_size = p.hidden;
  c.vision.deepstack_visual_indexes = p.deepstack;
  c.tie_word_embeddings = p.tied;
  return c;
}

// Qwen3-VL-2B and -8B-Instruct's shapes (8B: lm_head untied), and the tiny preset (hidden 128).
config config_2b() { return preset({2048, 6144, 28, 16, 8, 128, 24, 1024, 4096, 16, 2304, {5, 11, 17}, true}); }
config config_8b() { return preset({4096, 12288, 36, 32, 8, 128, 27, 1152, 4304, 16, 2304, {8, 16, 24}, false}); }
config config_tiny() { return preset({128, 256, 4, 4, 2, 32, 2, 128, 256, 2, 256, {0}, true}); }

struct measured_peak {
  const char* run;
  config cfg;
  std::int64_t batch_tokens;
  double peak_allocated;  // bytes, ModelOpt 0.39 (torch.cuda.max_memory_allocated)
};

}  // namespace

TEST_CASE("the presets' parameter counts are transformers' (the estimate's weights)") {
  // random_init.json's num_parameters of each preset, as transformers counts them.
  CHECK(aq::qwen3_vl::count_parameters(config_2b()).total == 2'127'532'032);
  CHECK(aq::qwen3_vl::count_parameters(config_4b()).total == 4'437'815'808);
  CHECK(aq::qwen3_vl::count_parameters(config_8b()).total == 8'767'123'696);
}

TEST_CASE("ModelOpt's estimated peak is at most its measured one, and close to it") {
  const std::vector<measured_peak> runs = {
      {"peak_2b_b2", config_2b(), 2 * 512, 8198105088.0},
      {"peak_2b_b8", config_2b(), 8 * 512, 17941510144.0},
      {"peak_2b_b16", config_2b(), 16 * 512, 30925027328.0},
      {"peak_4b_b2", config_4b(), 2 * 512, 13110516736.0},
      {"peak_4b_b8", config_4b(), 8 * 512, 23078317056.0},
      {"peak_4b_b16", config_4b(), 16 * 512, 36363824128.0},
      {"4b_full_s2048", config_4b(), 2 * 2048, 23076232192.0},
      {"4b_full_s8192", config_4b(), 8192, 36359691264.0},
      {"peak_8b_b2", config_8b(), 2 * 512, 21071217664.0},
      {"peak_8b_b8", config_8b(), 8 * 512, 31419126784.0},
      {"peak_8b_b16", config_8b(), 16 * 512, 45207950336.0},
      {"tiny_fp8_int8_b8", config_tiny(), 8 * 128, 3266622464.0},
  };
  for (const measured_peak& r : runs) {
    CAPTURE(r.run);
    const double ratio = aq::autoquant::modelopt_peak_bytes(r.cfg, r.batch_tokens) / r.peak_allocated;
    CAPTURE(ratio);
    CHECK(ratio <= 1.0);
    CHECK(ratio >= 0.89);
  }
  // Image data: the vision tower's activations are left out, so the estimate stays below.
  const double images = aq::autoquant::modelopt_peak_bytes(config_4b(), 1959) / 17001484800.0;
  CHECK(images <= 1.0);
  CHECK(images >= 0.85);
}

TEST_CASE("the estimate grows with the batch and the model") {
  const config c = config_4b();
  CHECK(aq::autoquant::modelopt_peak_bytes(c, 0) == doctest::Approx(2.0 * 4'437'815'808));
  CHECK(aq::autoquant::modelopt_peak_bytes(c, 8192) - aq::autoquant::modelopt_peak_bytes(c, 4096) ==
        doctest::Approx(4096 * (20.0 * 151936 + 2.0 * 36 * 2560)));
  CHECK(aq::autoquant::modelopt_peak_bytes(config_8b(), 4096) > aq::autoquant::modelopt_peak_bytes(c, 4096));
}

}  // namespace test_reference_peak
