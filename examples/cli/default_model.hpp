// The built-in default model: a small Qwen3-VL (real Qwen3 vocabulary, tiny decoder and vision
// tower) whose weights are generated deterministically in code from a seed, so the demo and the
// tests run anywhere in seconds without a checkpoint. Weights are bf16 values, like a checkpoint.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/core/tensor.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/schema.hpp"
#include "aq/model/qwen3_vl/text_weights.hpp"
#include "aq/model/qwen3_vl/vision_weights.hpp"

namespace aq::autoquant {

// Architecture of the default: Qwen3-VL's vocabulary and special tokens (so the real tokenizer
// drives it), 2 decoder layers of width 64, a 2-block vision tower with one DeepStack merger.
inline qwen3_vl::config default_model_config() {
  qwen3_vl::config cfg;
  qwen3_vl::text_config& t = cfg.text;
  t.hidden_size = 64;
  t.intermediate_size = 128;
  t.num_hidden_layers = 2;
  t.num_attention_heads = 4;
  t.num_key_value_heads = 2;
  t.head_dim = 16;
  t.vocab_size = 151936;
  t.rms_norm_eps = 1e-6;
  t.rope_theta = 5000000.0;
  t.mrope_section = {4, 2, 2};
  t.max_position_embeddings = 4096;  // bounds --seq-len, as a checkpoint's config does
  qwen3_vl::vision_config& v = cfg.vision;
  v.depth = 2;
  v.hidden_size = 32;
  v.num_heads = 2;
  v.intermediate_size = 64;
  v.in_channels = 3;
  v.patch_size = 16;
  v.temporal_patch_size = 2;
  v.spatial_merge_size = 2;
  v.out_hidden_size = 64;
  v.num_position_embeddings = 64;
  v.deepstack_visual_indexes = {0};
  cfg.tie_word_embeddings = true;
  return cfg;
}

namespace detail {

inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : text) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h;
}

}  // namespace detail

// A weight source that invents every tensor from (seed, name): uniform values scaled like a
// trained network (linear weights ±1/sqrt(fan_in), norms near 1, small biases, unit embeddings;
// the role is the schema row's), rounded to bf16. The same seed and name always give the same
// bytes, on every platform.
inline qwen3_vl::weight_source generated_weight_source(std::uint64_t seed) {
  qwen3_vl::weight_source source;
  source.contains = [](const std::string&) { return true; };
  source.load = [seed](const std::string& name, const std::vector<std::int64_t>& shape) {
    tensor out(shape);
    std::uint64_t state = detail::fnv1a(name) ^ (seed * 0x2545f4914f6cdd1dull);
    const std::optional<qwen3_vl::schema::tensor_ref> ref = qwen3_vl::schema::find_tensor(name);
    if (!ref) throw error("generated weights: " + name + " is not a Qwen3-VL tensor");
    const qwen3_vl::schema::module_spec& module = qwen3_vl::schema::spec(ref->module);
    const bool is_bias = ref->kind == qwen3_vl::schema::tensor_kind::bias;
    const bool is_norm = qwen3_vl::schema::is_norm(module);
    const bool is_embedding = module.kind == qwen3_vl::schema::role::embedding;
    std::int64_t fan_in = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    for (float& x : out.storage()) {
      // 53 random bits -> [-1, 1)
      const double u = static_cast<double>(detail::splitmix64(state) >> 11) * 0x1p-52 - 1.0;
      double value = 0.0;
      if (is_norm && !is_bias) {
        value = 1.0 + 0.1 * u;
      } else if (is_bias || is_norm) {
        value = 0.02 * u;
      } else if (is_embedding) {
        value = u;
      } else {
        value = u * std::sqrt(3.0 / static_cast<double>(fan_in));
      }
      x = round_to_bf16(static_cast<float>(value));
    }
    return out;
  };
  return source;
}

struct generated_model {
  qwen3_vl::config cfg;
  qwen3_vl::text_weights text;
  qwen3_vl::vision_weights vision;
};

inline generated_model make_generated_model(const qwen3_vl::config& cfg, std::uint64_t seed = 0) {
  const qwen3_vl::weight_source source = generated_weight_source(seed);
  return generated_model{cfg, qwen3_vl::load_text_weights(cfg, source), qwen3_vl::load_vision_weights(cfg, source)};
}

}  // namespace aq::autoquant
