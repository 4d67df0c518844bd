// Typed Qwen3-VL configuration: the numbers of a Hugging Face `config.json` that fix the
// architecture (text decoder, vision tower, special token ids). Parsing lives in
// io/hf_config.hpp; everything downstream reads this struct, never JSON.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace aq::qwen3_vl
