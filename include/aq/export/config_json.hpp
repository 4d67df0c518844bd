// config.json of an exported checkpoint: the model's own config re-emitted as Python's json.dump
// writes a loaded dict (key order kept, ensure_ascii, float repr), with `quantization_config`
// set (replaced in place if present, appended otherwise) by the layout's writer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "aq/core/error.hpp"
#include "aq/io/json_field.hpp"
#include "aq/io/json_parser.hpp"
#include "aq/report/json_writer.hpp"

namespace aq::hf_export {

using json_value_writer = std::function<void(io::json_writer&)>;

namespace detail {

inline void emit_json(io::json_writer& json, simdjson::dom::element value) {
  switch (value.type()) {
    case simdjson::dom::element_type::OBJECT:
      json.begin_object();
      for (const auto field : simdjson::dom::object(value)) {
        json.key(field.key);
        emit_json(json, field.value);
      }
      json.end_object();
      break;
    case simdjson::dom::element_type::ARRAY:
      json.begin_array();
      for (const simdjson::dom::element item : simdjson::dom::array(value)) emit_json(json, item);
      json.end_array();
      break;
    case simdjson::dom::element_type::STRING:
      json.string(std::string_view(value));
      break;
    case simdjson::dom::element_type::INT64:
      json.integer(std::int64_t(value));
      break;
    case simdjson::dom::element_type::UINT64:  // no config field is that large
      throw error("config.json: an integer beyond int64 (" + std::to_string(std::uint64_t(value)) + ")");
    case simdjson::dom::element_type::DOUBLE:
      json.number(double(value));
      break;
    case simdjson::dom::element_type::BOOL:
      json.boolean(bool(value));
      break;
    case simdjson::dom::element_type::NULL_VALUE:
      json.null();
      break;
  }
}

}  // namespace detail

// The config text `text` (named `source` in errors) with quantization_config written by
// `write_quantization_config`, indented by `indent`, a newline at the end when `trailing_newline`.
inline std::string config_with_quantization(std::string_view text, const std::string& source, int indent,
                                            bool trailing_newline, const json_value_writer& write_quantization_config) {
  simdjson::dom::parser parser;
  const io::json_field root = io::parse_json_object(parser, text, source);
  io::json_writer json(indent);
  json.begin_object();
  bool replaced = false;
  for (const auto field : root.object()) {
    json.key(field.key);
    if (field.key == "quantization_config") {
      write_quantization_config(json);
      replaced = true;
    } else {
      detail::emit_json(json, field.value);
    }
  }
  if (!replaced) {
    json.key("quantization_config");
    write_quantization_config(json);
  }
  json.end_object();
  return json.str() + (trailing_newline ? "\n" : "");
}

}  // namespace aq::hf_export
