// The vision special tokens a Qwen3-VL config and its tokenizer must agree on. The chat template
// writes <|vision_start|><|image_pad|>...<|vision_end|> as text, the tokenizer turns them into ids,
// and the model finds the image rows by config.image_token_id: a disagreement would only surface
// deep in the forward pass ("0 image tokens but visual embeds ..."), so it is checked up front.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "aq/core/error.hpp"
#include "aq/io/tokenizer/tokenizer.hpp"
#include "aq/model/qwen3_vl/config.hpp"

namespace aq::qwen3_vl {

// Throws naming both files when config's image_token_id, vision_start_token_id or
// vision_end_token_id is not the tokenizer's id of <|image_pad|>, <|vision_start|>, <|vision_end|>.
inline void check_vision_token_ids(const config& cfg, const io::tokenizer& tok, std::string_view config_source = "config.json",
                                   std::string_view tokenizer_source = "tokenizer.json") {
  struct pairing {
    std::string_view field;
    std::int64_t id;
    std::string_view token;
  };
  for (const pairing& p : {pairing{"image_token_id", cfg.image_token_id, "<|image_pad|>"},
                           pairing{"vision_start_token_id", cfg.vision_start_token_id, "<|vision_start|>"},
                           pairing{"vision_end_token_id", cfg.vision_end_token_id, "<|vision_end|>"}}) {
    const auto id = tok.token_to_id(p.token);
    const std::string head = std::string(config_source) + ": " + std::string(p.field) + " " + std::to_string(p.id);
    if (!id) throw error(head + ", but " + std::string(tokenizer_source) + " has no " + std::string(p.token) + " token");
    if (static_cast<std::int64_t>(*id) != p.id) {
      throw error(head + " disagrees with " + std::string(tokenizer_source) + ", where " + std::string(p.token) + " is " +
                  std::to_string(*id));
    }
  }
}

}  // namespace aq::qwen3_vl
