// Typed Qwen3-VL configuration: the numbers of a Hugging Face `config.json` that fix the
// architecture (text decoder, vision tower, special token ids). Parsing lives in
// model/qwen3_vl/config_json.hpp; everything downstream reads this struct, never JSON.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "aq/core/error.hpp"

namespace aq::qwen3_vl {

struct text_config {
  std::int64_t hidden_size = 0;
  std::int64_t intermediate_size = 0;
  std::int64_t num_hidden_layers = 0;
  std::int64_t num_attention_heads = 0;
  std::int64_t num_key_value_heads = 0;
  std::int64_t head_dim = 0;
  std::int64_t vocab_size = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 5000000.0;
  std::array<std::int64_t, 3> mrope_section{24, 20, 20};  // temporal, height, width (in rotary pairs)
  bool mrope_interleaved = true;
  std::string hidden_act = "silu";
  bool attention_bias = false;
  std::int64_t max_position_embeddings = 0;  // longest sequence the model was made for; 0: not stated
};

struct vision_config {
  std::int64_t depth = 0;
  std::int64_t hidden_size = 0;
  std::int64_t num_heads = 0;
  std::int64_t intermediate_size = 0;
  std::int64_t in_channels = 3;
  std::int64_t patch_size = 16;
  std::int64_t temporal_patch_size = 2;
  std::int64_t spatial_merge_size = 2;
  std::int64_t out_hidden_size = 0;
  std::int64_t num_position_embeddings = 0;
  std::vector<std::int64_t> deepstack_visual_indexes;
  std::string hidden_act = "gelu_pytorch_tanh";
};

struct config {
  text_config text;
  vision_config vision;
  bool tie_word_embeddings = true;
  std::int64_t image_token_id = 151655;
  std::int64_t video_token_id = 151656;
  std::int64_t vision_start_token_id = 151652;
  std::int64_t vision_end_token_id = 151653;
};

// The settings aq's model code implements one value of. config_json.hpp refuses any other value
// in config.json; this guards configs built in code, so that no loader runs a model it would
// silently compute differently.
inline void check_implemented(const config& c) {
  const auto refuse = [](const std::string& field, const std::string& actual, const std::string& implemented) {
    throw error("qwen3_vl config: " + field + ": " + actual + " not supported (" + implemented + ")");
  };
  if (c.text.hidden_act != "silu") refuse("text_config.hidden_act", "\"" + c.text.hidden_act + "\"", "silu");
  if (c.text.attention_bias) refuse("text_config.attention_bias", "true", "false");
  if (!c.text.mrope_interleaved) refuse("text_config.mrope_interleaved", "false", "true");
  if (c.vision.hidden_act != "gelu_pytorch_tanh") {
    refuse("vision_config.hidden_act", "\"" + c.vision.hidden_act + "\"", "gelu_pytorch_tanh");
  }
}

}  // namespace aq::qwen3_vl
