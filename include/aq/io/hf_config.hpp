// Hugging Face config.json -> aq::qwen3_vl::config: the architecture numbers of a Qwen3-VL
// checkpoint, read once at load time. Accepts the published transformers 4.57 spelling
// (rope_theta + rope_scaling) and the transformers 5 spelling (rope_parameters).
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <simdjson.h>

#include "aq/core/error.hpp"
#include "aq/io/json_type_name.hpp"
#include "aq/io/mapped_file.hpp"
#include "aq/model/qwen3_vl/config.hpp"

namespace aq {

namespace detail {

// Typed access to one JSON object, with errors that name the file and the dotted field path.
class json_fields {
 public:
  json_fields(std::string source, std::string prefix, simdjson::dom::object object)
      : source_(std::move(source)), prefix_(std::move(prefix)), object_(object) {}

  [[noreturn]] void fail(std::string_view key, const std::string& message) const {
    throw error(source_ + ": " + prefix_ + std::string(key) + ": " + message);
  }

  std::optional<simdjson::dom::element> find(std::string_view key) const {
    simdjson::dom::element value;
    if (object_.at_key(key).get(value)) return std::nullopt;
    if (value.is_null()) return std::nullopt;  // transformers writes null for "use the default"
    return value;
  }

  simdjson::dom::element require(std::string_view key) const {
    const auto value = find(key);
    if (!value) fail(key, "missing");
    return *value;
  }

  static std::string_view type_name(simdjson::dom::element value) { return io::json_type_name(value.type()); }

  std::int64_t as_int(std::string_view key, simdjson::dom::element value) const {
    std::int64_t out = 0;
    if (value.get_int64().get(out)) fail(key, "is " + std::string(type_name(value)) + ", expected an integer");
    return out;
  }

  std::int64_t positive_int(std::string_view key) const {
    const std::int64_t value = as_int(key, require(key));
    if (value <= 0) fail(key, "must be positive, got " + std::to_string(value));
    return value;
  }

  std::int64_t positive_int_or(std::string_view key, std::int64_t fallback) const {
    return find(key) ? positive_int(key) : fallback;
  }

  std::int64_t int_or(std::string_view key, std::int64_t fallback) const {
    const auto value = find(key);
    return value ? as_int(key, *value) : fallback;
  }

  double number(std::string_view key, simdjson::dom::element value) const {
    double out = 0;
    if (value.get_double().get(out)) {  // simdjson converts integers too
      fail(key, "is " + std::string(type_name(value)) + ", expected a number");
    }
    return out;
  }

  double positive_number(std::string_view key) const {
    const double value = number(key, require(key));
    if (!(value > 0)) fail(key, "must be positive, got " + std::to_string(value));
    return value;
  }

  double positive_number_or(std::string_view key, double fallback) const {
    return find(key) ? positive_number(key) : fallback;
  }

  std::optional<bool> boolean(std::string_view key) const {
    const auto value = find(key);
    if (!value) return std::nullopt;
    bool out = false;
    if (value->get_bool().get(out)) fail(key, "is " + std::string(type_name(*value)) + ", expected true or false");
    return out;
  }

  std::string string_or(std::string_view key, std::string_view fallback) const {
    const auto value = find(key);
    if (!value) return std::string(fallback);
    std::string_view out;
    if (value->get_string().get(out)) fail(key, "is " + std::string(type_name(*value)) + ", expected a string");
    return std::string(out);
  }

  std::vector<std::int64_t> int_list(std::string_view key, simdjson::dom::element value) const {
    simdjson::dom::array array;
    if (value.get_array().get(array)) fail(key, "is " + std::string(type_name(value)) + ", expected an array of integers");
    std::vector<std::int64_t> out;
    for (const auto item : array) {
      std::int64_t v = 0;
      if (item.get_int64().get(v)) fail(key, "holds " + std::string(type_name(item)) + ", expected integers");
      out.push_back(v);
    }
    return out;
  }

  json_fields object(std::string_view key) const {
    const simdjson::dom::element value = require(key);
    simdjson::dom::object sub;
    if (value.get_object().get(sub)) fail(key, "is " + std::string(type_name(value)) + ", expected an object");
    return json_fields(source_, prefix_ + std::string(key) + ".", sub);
  }

  std::optional<json_fields> object_if_present(std::string_view key) const {
    if (!find(key)) return std::nullopt;
    return object(key);
  }

  const std::string& source() const { return source_; }
  const std::string& prefix() const { return prefix_; }

 private:
  std::string source_;
  std::string prefix_;
  simdjson::dom::object object_;
};

inline void read_rope(const detail::json_fields& text, qwen3_vl::text_config& out) {
  // transformers 5: rope_parameters {rope_type, rope_theta, mrope_section, mrope_interleaved}.
  // transformers 4.57 (the published checkpoints): rope_theta + rope_scaling {rope_type, mrope_*}.
  const auto parameters = text.object_if_present("rope_parameters");
  const auto scaling = parameters ? std::optional<json_fields>() : text.object_if_present("rope_scaling");
  // rope_theta lives in rope_parameters (v5) or beside rope_scaling (4.57); accept v5 files that kept it outside.
  const bool theta_inside = parameters && (parameters->find("rope_theta") || !text.find("rope_theta"));
  out.rope_theta = (theta_inside ? *parameters : text).positive_number("rope_theta");

  const json_fields* rope = parameters ? &*parameters : (scaling ? &*scaling : nullptr);
  if (rope == nullptr) return;  // mrope defaults of the model code: sections [24, 20, 20], interleaved
  std::string type = rope->string_or("rope_type", "");
  if (type.empty()) type = rope->string_or("type", "default");  // older key name
  if (type != "default" && type != "mrope") {  // transformers maps the legacy "mrope" to "default"
    rope->fail("rope_type", "\"" + type + "\" not supported (default)");
  }
  if (const auto section = rope->find("mrope_section")) {
    const std::vector<std::int64_t> values = rope->int_list("mrope_section", *section);
    if (values.size() != 3) {
      rope->fail("mrope_section", "needs 3 entries (temporal, height, width), got " + std::to_string(values.size()));
    }
    for (std::size_t i = 0; i < 3; ++i) {
      if (values[i] < 0) rope->fail("mrope_section", "entries must be non-negative");
      out.mrope_section[i] = values[i];
    }
  }
  if (const auto interleaved = rope->boolean("mrope_interleaved")) out.mrope_interleaved = *interleaved;
}

}  // namespace detail

// Parses config.json text; `source` names the file in messages.
inline qwen3_vl::config parse_qwen3_vl_config(std::string_view json, const std::string& source) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (const auto code = parser.parse(json.data(), json.size()).get(root)) {
    throw error(source + ": not valid JSON: " + simdjson::error_message(code));
  }
  simdjson::dom::object root_object;
  if (root.get_object().get(root_object)) throw error(source + ": expected a JSON object");
  const detail::json_fields top(source, "", root_object);

  const std::string model_type = top.string_or("model_type", "");
  if (model_type.empty()) top.fail("model_type", "missing");
  if (model_type != "qwen3_vl") top.fail("model_type", "\"" + model_type + "\" not supported (qwen3_vl)");

  qwen3_vl::config config;
  const detail::json_fields text = top.object("text_config");
  qwen3_vl::text_config& t = config.text;
  t.vocab_size = text.positive_int("vocab_size");
  t.hidden_size = text.positive_int("hidden_size");
  t.intermediate_size = text.positive_int("intermediate_size");
  t.num_hidden_layers = text.positive_int("num_hidden_layers");
  t.num_attention_heads = text.positive_int("num_attention_heads");
  t.num_key_value_heads = text.positive_int_or("num_key_value_heads", t.num_attention_heads);
  if (t.num_attention_heads % t.num_key_value_heads != 0) {
    text.fail("num_key_value_heads", std::to_string(t.num_key_value_heads) + " does not divide num_attention_heads " +
                                         std::to_string(t.num_attention_heads));
  }
  if (text.find("head_dim")) {
    t.head_dim = text.positive_int("head_dim");
  } else {
    if (t.hidden_size % t.num_attention_heads != 0) {
      text.fail("head_dim", "missing, and hidden_size " + std::to_string(t.hidden_size) +
                                " is not a multiple of num_attention_heads " + std::to_string(t.num_attention_heads));
    }
    t.head_dim = t.hidden_size / t.num_attention_heads;
  }
  if (t.head_dim % 2 != 0) text.fail("head_dim", "must be even for rotary embeddings, got " + std::to_string(t.head_dim));
  t.rms_norm_eps = text.positive_number_or("rms_norm_eps", 1e-6);
  t.hidden_act = text.string_or("hidden_act", "silu");
  t.attention_bias = text.boolean("attention_bias").value_or(false);
  detail::read_rope(text, t);
  const std::int64_t sections = t.mrope_section[0] + t.mrope_section[1] + t.mrope_section[2];
  if (sections != t.head_dim / 2) {
    text.fail("mrope_section", "sums to " + std::to_string(sections) + ", expected head_dim/2 = " +
                                   std::to_string(t.head_dim / 2));
  }

  const detail::json_fields vision = top.object("vision_config");
  qwen3_vl::vision_config& v = config.vision;
  v.depth = vision.positive_int("depth");
  v.hidden_size = vision.positive_int("hidden_size");
  v.num_heads = vision.positive_int("num_heads");
  if (v.hidden_size % v.num_heads != 0) {
    vision.fail("num_heads", std::to_string(v.num_heads) + " does not divide hidden_size " + std::to_string(v.hidden_size));
  }
  v.intermediate_size = vision.positive_int("intermediate_size");
  v.out_hidden_size = vision.positive_int("out_hidden_size");
  v.in_channels = vision.positive_int_or("in_channels", 3);
  v.patch_size = vision.positive_int_or("patch_size", 16);
  v.temporal_patch_size = vision.positive_int_or("temporal_patch_size", 2);
  v.spatial_merge_size = vision.positive_int_or("spatial_merge_size", 2);
  v.num_position_embeddings = vision.positive_int_or("num_position_embeddings", 2304);
  v.hidden_act = vision.string_or("hidden_act", "gelu_pytorch_tanh");
  v.deepstack_visual_indexes = vision.int_list("deepstack_visual_indexes", vision.require("deepstack_visual_indexes"));
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
  const auto tie_top = top.boolean("tie_word_embeddings");
  const auto tie_text = text.boolean("tie_word_embeddings");
  if (tie_top && tie_text && *tie_top != *tie_text) {
    top.fail("tie_word_embeddings", std::string(*tie_top ? "true" : "false") + " disagrees with text_config.tie_word_embeddings " +
                                        (*tie_text ? "true" : "false"));
  }
  config.tie_word_embeddings = tie_top ? *tie_top : tie_text.value_or(false);

  config.image_token_id = top.int_or("image_token_id", 151655);
  config.video_token_id = top.int_or("video_token_id", 151656);
  config.vision_start_token_id = top.int_or("vision_start_token_id", 151652);
  config.vision_end_token_id = top.int_or("vision_end_token_id", 151653);
  return config;
}

// Reads `path`: a config.json file or a model directory containing one.
inline qwen3_vl::config read_qwen3_vl_config(const std::filesystem::path& path) {
  std::error_code ec;
  const std::filesystem::path file = std::filesystem::is_directory(path, ec) ? path / "config.json" : path;
  const mapped_file mapped(file);
  const auto bytes = mapped.bytes();
  return parse_qwen3_vl_config(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                               file.string());
}

}  // namespace aq
