// Hugging Face config.json -> aq::qwen3_vl::config: the architecture numbers of a Qwen3-VL
// checkpoint, read once at load time. Accepts the published transformers 4.57 spelling
// (rope_theta + rope_scaling) and the transformers 5 spelling (rope_parameters).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/io/checkpoint/hf_config.hpp"
#include "aq/io/mapped_file.hpp"
#include "aq/model/qwen3_vl/config.hpp"

namespace aq {

namespace detail {

inline void read_rope(const io::json_field& text, qwen3_vl::text_config& out) {
  // transformers 5: rope_parameters {rope_type, rope_theta, mrope_section, mrope_interleaved}.
  // transformers 4.57 (the published checkpoints): rope_theta + rope_scaling {rope_type, mrope_*}.
  const auto parameters = text.find("rope_parameters");
  const auto rope = parameters ? parameters : text.find("rope_scaling");
  // rope_theta lives in rope_parameters (v5) or beside rope_scaling (4.57); accept v5 files that kept it outside.
  const bool theta_inside = parameters && (parameters->find("rope_theta") || !text.find("rope_theta"));
  out.rope_theta = (theta_inside ? *parameters : text)["rope_theta"].positive_number();

  if (!rope) return;  // mrope defaults of the model code: sections [24, 20, 20], interleaved
  std::string type(rope->value_or("rope_type", "", &io::json_field::string));
  if (type.empty()) type = rope->value_or("type", "default", &io::json_field::string);  // older key name
  if (type != "default" && type != "mrope") {  // transformers maps the legacy "mrope" to "default"
    rope->fail("rope_type", "\"" + type + "\" not supported (default)");
  }
  if (const auto section = rope->find("mrope_section")) {
    const std::vector<std::int64_t> values = section->integers();
    if (values.size() != 3) {
      section->fail("needs 3 entries (temporal, height, width), got " + std::to_string(values.size()));
    }
    for (std::size_t i = 0; i < 3; ++i) {
      if (values[i] < 0 || values[i] > max_dimension) {
        section->fail("entry " + std::to_string(values[i]) + " outside 0.." + std::to_string(max_dimension));
      }
      out.mrope_section[i] = values[i];
    }
  }
  out.mrope_interleaved = rope->value_or("mrope_interleaved", out.mrope_interleaved, &io::json_field::boolean);
  if (!out.mrope_interleaved) {
    rope->fail("mrope_interleaved", "false not supported (true: aq implements Qwen3-VL's interleaved M-RoPE only)");
  }
}

// The sizes the config implies must be representable, and its per-layer lists must fit in memory.
inline void check_implied_sizes(const io::json_field& top, const io::json_field& text, const io::json_field& vision,
                                const qwen3_vl::config& c) {
  const qwen3_vl::text_config& t = c.text;
  const qwen3_vl::vision_config& v = c.vision;
  constexpr std::int64_t f32 = 4;  // aq holds converted weights as float32
  const auto tp = [&](std::string_view what, std::initializer_list<size_factor> f) { return checked_product(text, what, f); };
  const auto vp = [&](std::string_view what, std::initializer_list<size_factor> f) { return checked_product(vision, what, f); };

  const std::int64_t embed = tp("embed_tokens.weight bytes", {{"vocab_size", t.vocab_size}, {"hidden_size", t.hidden_size}, {"", f32}});
  const std::int64_t q = tp("q_proj + o_proj bytes", {{"num_attention_heads", t.num_attention_heads}, {"head_dim", t.head_dim},
                                                     {"hidden_size", t.hidden_size}, {"", 2 * f32}});
  const std::int64_t kv = tp("k_proj + v_proj bytes", {{"num_key_value_heads", t.num_key_value_heads}, {"head_dim", t.head_dim},
                                                      {"hidden_size", t.hidden_size}, {"", 2 * f32}});
  const std::int64_t mlp = tp("mlp weights bytes", {{"intermediate_size", t.intermediate_size}, {"hidden_size", t.hidden_size},
                                                   {"", 3 * f32}});
  const std::int64_t norms = tp("norm weights bytes", {{"hidden_size", t.hidden_size}, {"", 2 * f32}}) +
                             tp("q_norm/k_norm bytes", {{"head_dim", t.head_dim}, {"", 2 * f32}});
  const std::int64_t layer = checked_sum(text, "hidden_size", "one decoder layer's bytes", {q, kv, mlp, norms});
  check_list_size(text, "num_hidden_layers", t.num_hidden_layers, 11, "layers");
  const std::int64_t layers = tp("the decoder layers' bytes", {{"num_hidden_layers", t.num_hidden_layers}, {"", layer}});
  const std::int64_t text_bytes = checked_sum(text, "num_hidden_layers", "the text decoder's bytes", {embed, layers, embed});

  const std::int64_t patch = vp("patch_embed.proj.weight bytes",
                                {{"hidden_size", v.hidden_size}, {"in_channels", v.in_channels},
                                 {"temporal_patch_size", v.temporal_patch_size}, {"patch_size", v.patch_size},
                                 {"patch_size", v.patch_size}, {"", f32}});
  const std::int64_t positions =
      vp("pos_embed.weight bytes", {{"num_position_embeddings", v.num_position_embeddings}, {"hidden_size", v.hidden_size}, {"", f32}});
  const std::int64_t attention = vp("attn.qkv + attn.proj bytes", {{"hidden_size", v.hidden_size}, {"hidden_size", v.hidden_size},
                                                                   {"", 4 * f32}});
  const std::int64_t block_mlp = vp("mlp.linear_fc1 + linear_fc2 bytes",
                                    {{"intermediate_size", v.intermediate_size}, {"hidden_size", v.hidden_size}, {"", 2 * f32}});
  const std::int64_t merged = vp("the merger width", {{"hidden_size", v.hidden_size}, {"spatial_merge_size", v.spatial_merge_size},
                                                      {"spatial_merge_size", v.spatial_merge_size}});
  const std::int64_t merger = checked_sum(
      vision, "out_hidden_size", "a merger's bytes",
      {vp("merger.linear_fc1 bytes", {{"hidden_size", merged}, {"hidden_size", merged}, {"", f32}}),
       vp("merger.linear_fc2 bytes", {{"out_hidden_size", v.out_hidden_size}, {"hidden_size", merged}, {"", f32}})});
  const std::int64_t block = checked_sum(vision, "hidden_size", "one vision block's bytes", {attention, block_mlp});
  check_list_size(vision, "depth", v.depth, 12, "blocks");
  const std::int64_t blocks = vp("the vision blocks' bytes", {{"depth", v.depth}, {"", block}});
  const std::int64_t mergers = vp("the mergers' bytes",
                                  {{"deepstack_visual_indexes", static_cast<std::int64_t>(v.deepstack_visual_indexes.size()) + 1},
                                   {"", merger}});
  const std::int64_t vision_bytes =
      checked_sum(vision, "depth", "the vision tower's bytes", {patch, positions, blocks, mergers});
  checked_sum(top, "text_config", "the model's bytes (text decoder + vision tower)", {text_bytes, vision_bytes});
}

}  // namespace detail

// Parses config.json text; `source` names the file in messages.
inline qwen3_vl::config parse_qwen3_vl_config(std::string_view json, const std::string& source) {
  simdjson::dom::parser parser;
  const io::json_field top = io::parse_json_object(parser, json, source);
  using detail::dimension;

  const std::string model_type(top["model_type"].string());
  if (model_type != "qwen3_vl") top.fail("model_type", "\"" + model_type + "\" not supported (qwen3_vl)");

  qwen3_vl::config config;
  const io::json_field text = top["text_config"];
  qwen3_vl::text_config& t = config.text;
  t.vocab_size = dimension(text["vocab_size"]);
  t.hidden_size = dimension(text["hidden_size"]);
  t.intermediate_size = dimension(text["intermediate_size"]);
  t.num_hidden_layers = text["num_hidden_layers"].positive_integer();
  t.num_attention_heads = dimension(text["num_attention_heads"]);
  t.num_key_value_heads = text.value_or("num_key_value_heads", t.num_attention_heads, dimension);
  if (t.num_attention_heads % t.num_key_value_heads != 0) {
    text.fail("num_key_value_heads", std::to_string(t.num_key_value_heads) + " does not divide num_attention_heads " +
                                         std::to_string(t.num_attention_heads));
  }
  if (const auto head_dim = text.find("head_dim")) {
    t.head_dim = dimension(*head_dim);
  } else {
    if (t.hidden_size % t.num_attention_heads != 0) {
      text.fail("head_dim", "missing, and hidden_size " + std::to_string(t.hidden_size) +
                                " is not a multiple of num_attention_heads " + std::to_string(t.num_attention_heads));
    }
    t.head_dim = t.hidden_size / t.num_attention_heads;
  }
  if (t.head_dim % 2 != 0) text.fail("head_dim", "must be even for rotary embeddings, got " + std::to_string(t.head_dim));
  t.rms_norm_eps = text.value_or("rms_norm_eps", 1e-6, &io::json_field::positive_number);
  t.max_position_embeddings = text.value_or("max_position_embeddings", 0, &io::json_field::positive_integer);
  detail::require_string(text, "hidden_act", "silu");
  if (text.value_or("attention_bias", false, &io::json_field::boolean)) {
    text.fail("attention_bias", "true not supported (false: aq's q/k/v/o projections have no bias)");
  }
  detail::read_rope(text, t);
  const std::int64_t sections = t.mrope_section[0] + t.mrope_section[1] + t.mrope_section[2];
  if (sections != t.head_dim / 2) {
    text.fail("mrope_section", "sums to " + std::to_string(sections) + ", expected head_dim/2 = " +
                                   std::to_string(t.head_dim / 2));
  }

  const io::json_field vision = top["vision_config"];
  qwen3_vl::vision_config& v = config.vision;
  v.depth = vision["depth"].positive_integer();
  v.hidden_size = dimension(vision["hidden_size"]);
  v.num_heads = dimension(vision["num_heads"]);
  if (v.hidden_size % v.num_heads != 0) {
    vision.fail("num_heads", std::to_string(v.num_heads) + " does not divide hidden_size " + std::to_string(v.hidden_size));
  }
  v.intermediate_size = dimension(vision["intermediate_size"]);
  v.out_hidden_size = dimension(vision["out_hidden_size"]);
  if (v.out_hidden_size != t.hidden_size) {  // merger outputs replace and add to text embeddings
    vision.fail("out_hidden_size", std::to_string(v.out_hidden_size) + ", expected text_config.hidden_size " +
                                       std::to_string(t.hidden_size));
  }
  v.in_channels = vision.value_or("in_channels", 3, dimension);
  v.patch_size = vision.value_or("patch_size", 16, dimension);
  v.temporal_patch_size = vision.value_or("temporal_patch_size", 2, dimension);
  v.spatial_merge_size = vision.value_or("spatial_merge_size", 2, dimension);
  v.num_position_embeddings = vision.value_or("num_position_embeddings", 2304, dimension);
  detail::require_string(vision, "hidden_act", "gelu_pytorch_tanh");
  // Position embeddings are a G x G grid interpolated to each image (G = sqrt(count)).
  const auto grid = static_cast<std::int64_t>(std::sqrt(static_cast<double>(v.num_position_embeddings)));
  if (grid * grid != v.num_position_embeddings) {
    vision.fail("num_position_embeddings", std::to_string(v.num_position_embeddings) +
                                               " is not a square (the embeddings form a G x G grid)");
  }
  v.deepstack_visual_indexes = vision["deepstack_visual_indexes"].integers();
  for (std::size_t i = 0; i < v.deepstack_visual_indexes.size(); ++i) {
    const std::int64_t index = v.deepstack_visual_indexes[i];
    if (index < 0 || index >= v.depth) {
      vision.fail("deepstack_visual_indexes", "entry " + std::to_string(index) + " outside the blocks 0.." +
                                                  std::to_string(v.depth - 1));
    }
    if (std::count(v.deepstack_visual_indexes.begin(), v.deepstack_visual_indexes.end(), index) > 1) {
      vision.fail("deepstack_visual_indexes", "entry " + std::to_string(index) + " repeated");
    }
  }

  // Tied embeddings: transformers 4.57 reads text_config's flag, 5.x the top-level one; published
  // configs carry both. Absent everywhere means untied (both classes default to false); a
  // disagreement would load differently per version, so it is refused.
  const auto tie = [](const io::json_field& f) -> std::optional<bool> {
    if (const auto value = f.find("tie_word_embeddings")) return value->boolean();
    return std::nullopt;
  };
  const std::optional<bool> tie_top = tie(top), tie_text = tie(text);
  if (tie_top && tie_text && *tie_top != *tie_text) {
    top.fail("tie_word_embeddings", std::string(*tie_top ? "true" : "false") + " disagrees with text_config.tie_word_embeddings " +
                                        (*tie_text ? "true" : "false"));
  }
  config.tie_word_embeddings = tie_top ? *tie_top : tie_text.value_or(false);

  config.image_token_id = top.value_or("image_token_id", 151655, &io::json_field::integer);
  config.video_token_id = top.value_or("video_token_id", 151656, &io::json_field::integer);
  config.vision_start_token_id = top.value_or("vision_start_token_id", 151652, &io::json_field::integer);
  config.vision_end_token_id = top.value_or("vision_end_token_id", 151653, &io::json_field::integer);
  for (const auto& [key, id] : {std::pair<std::string_view, std::int64_t>{"image_token_id", config.image_token_id},
                                {"video_token_id", config.video_token_id},
                                {"vision_start_token_id", config.vision_start_token_id},
                                {"vision_end_token_id", config.vision_end_token_id}}) {
    if (id < 0) top.fail(key, "must be non-negative, got " + std::to_string(id));
  }
  // A checkpoint stored quantized has other weights and other math than the bf16 model aq scores.
  if (top.find("quantization_config") || text.find("quantization_config")) {
    (top.find("quantization_config") ? top : text)
        .fail("quantization_config", "present, not supported (aq reads unquantized BF16/F16/F32 checkpoints)");
  }
  detail::check_implied_sizes(top, text, vision, config);
  return config;
}

// Reads `path`: a config.json file or a model directory containing one.
inline qwen3_vl::config read_qwen3_vl_config(const std::filesystem::path& path) {
  const std::filesystem::path file = config_json_file(path);
  const mapped_file mapped(file);
  return parse_qwen3_vl_config(mapped.nonempty_text(), file.string());
}

}  // namespace aq
