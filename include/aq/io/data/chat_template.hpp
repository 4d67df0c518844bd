// The Qwen3-VL chat prompt for calibration samples: the text the model's chat template renders
// for system/user/assistant turns whose content is text and images, and the expansion of each
// <|image_pad|> into the image's visual-token count. Sits between the datasets and tokenization.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/error.hpp"

namespace aq::io {

inline constexpr std::string_view image_pad_token = "<|image_pad|>";

// One item of a message's content list.
struct chat_content {
  enum class kind { text, image };
  kind type = kind::text;
  std::string text;  // for text items
};

struct chat_message {
  std::string role;  // "system", "user" or "assistant"
  std::vector<chat_content> content;
};

// Renders messages as Qwen3-VL-Instruct's chat template does (no tools, no default system
// prompt, add_vision_id false): each turn is <|im_start|>role\n ... <|im_end|>\n, an image item is
// <|vision_start|><|image_pad|><|vision_end|> at its place (no added space or newline), and
// add_generation_prompt appends <|im_start|>assistant\n. Images are accepted in user turns only,
// as in the template (system/assistant render only their text items).
inline std::string render_qwen3_vl_chat(std::span<const chat_message> messages, bool add_generation_prompt = true) {
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const chat_message& m = messages[i];
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      throw error("chat message " + std::to_string(i) + ": unsupported role \"" + m.role + "\"");
    }
    if (m.role == "system" && i != 0) throw error("chat message " + std::to_string(i) + ": system turn must be first");
    out += "<|im_start|>" + m.role + '\n';
    for (const chat_content& c : m.content) {
      if (c.type == chat_content::kind::text) {
        out += c.text;
      } else if (m.role == "user") {
        out += "<|vision_start|><|image_pad|><|vision_end|>";
      }
    }
    out += "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// The calibration prompt of one image+caption sample: user [image, caption] + generation prompt.
inline std::string qwen3_vl_image_caption_prompt(std::string_view caption) {
  const chat_message m{"user", {{chat_content::kind::image, {}}, {chat_content::kind::text, std::string(caption)}}};
  return render_qwen3_vl_chat(std::span<const chat_message>(&m, 1), true);
}

// Replaces the k-th <|image_pad|> by tokens_per_image[k] copies, as the processor does before
// tokenizing (so ids are identical). The number of pads must equal the number of images.
inline std::string expand_image_pads(std::string_view prompt, std::span<const std::int64_t> tokens_per_image) {
  std::string out;
  std::size_t k = 0, pos = 0;
  for (std::size_t hit = prompt.find(image_pad_token); hit != std::string_view::npos;
       hit = prompt.find(image_pad_token, pos)) {
    if (k >= tokens_per_image.size()) {
      throw error("expand_image_pads: prompt has more <|image_pad|> than the " + std::to_string(tokens_per_image.size()) +
                  " images given");
    }
    out.append(prompt.substr(pos, hit - pos));
    for (std::int64_t j = 0; j < tokens_per_image[k]; ++j) out.append(image_pad_token);
    ++k;
    pos = hit + image_pad_token.size();
  }
  if (k != tokens_per_image.size()) {
    throw error("expand_image_pads: prompt has " + std::to_string(k) + " <|image_pad|> but " +
                std::to_string(tokens_per_image.size()) + " images were given");
  }
  out.append(prompt.substr(pos));
  return out;
}

}  // namespace aq::io
