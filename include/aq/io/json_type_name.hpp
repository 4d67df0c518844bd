// Human words for a JSON value's type ("an array", "a string"), so that readers of config.json,
// safetensors headers and shard indexes say what they found where they expected something else.
#pragma once

#include <string_view>

#include "aq/io/json_parser.hpp"

namespace aq::io {

inline std::string_view json_type_name(simdjson::dom::element_type type) {
  switch (type) {
    case simdjson::dom::element_type::ARRAY: return "an array";
    case simdjson::dom::element_type::OBJECT: return "an object";
    case simdjson::dom::element_type::INT64:
    case simdjson::dom::element_type::UINT64: return "an integer";
    case simdjson::dom::element_type::DOUBLE: return "a floating-point number";
    case simdjson::dom::element_type::STRING: return "a string";
    case simdjson::dom::element_type::BOOL: return "a boolean";
    case simdjson::dom::element_type::NULL_VALUE: return "null";
  }
  return "an unknown JSON value";
}

}  // namespace aq::io
