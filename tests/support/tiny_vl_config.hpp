// A Qwen3-VL small enough for exact fp32 CPU checks: the built-in model's vision tower over a
// 2-layer, 32-wide decoder with a 97-token vocabulary whose last ids are the special tokens
// (image 90, video 91, vision start 92 / end 93; tests pad with 96).
#pragma once

#include "aq/model/qwen3_vl/config.hpp"

#include "cli/default_model.hpp"

namespace aq::test_support {

inline qwen3_vl::config tiny_vl_config() {
  qwen3_vl::config cfg = autoquant::default_model_config();
  cfg.text.vocab_size = 97;
  cfg.text.hidden_size = 32;
  cfg.text.intermediate_size = 48;
  cfg.text.num_hidden_layers = 2;
  cfg.text.head_dim = 8;
  cfg.text.mrope_section = {2, 1, 1};
  cfg.vision.out_hidden_size = cfg.text.hidden_size;
  cfg.image_token_id = 90;
  cfg.video_token_id = 91;
  cfg.vision_start_token_id = 92;
  cfg.vision_end_token_id = 93;
  return cfg;
}

}  // namespace aq::test_support
