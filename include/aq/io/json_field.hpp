// One JSON value read from a named source at a dotted path ("text_config.rope_scaling.rope_type",
// "added_tokens[3].id"): typed reads whose errors say "<source>: <path>: <what>" and name the JSON
// type found. The reader of config.json, tokenizer.json and quant manifests.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/io/json_parser.hpp"
#include "aq/io/json_type_name.hpp"

namespace aq::io {

// A view of a value in a parsed document: it lives as long as the simdjson parser that holds it.
class json_field {
 public:
  json_field(std::string source, std::string path, simdjson::dom::element value)
      : source_(std::move(source)), path_(std::move(path)), value_(value) {}

  const std::string& source() const { return source_; }
  simdjson::dom::element element() const { return value_; }  // for checks of the caller's own
  // "<source>: <path>", or the source alone at the root: where an error about this value points.
  std::string where() const { return path_.empty() ? source_ : source_ + ": " + path_; }
  [[noreturn]] void fail(const std::string& what) const { throw error(where() + ": " + what); }
  // An error about member `key`, present or not (a defaulted field, a missing one).
  [[noreturn]] void fail(std::string_view key, const std::string& what) const { member(key, value_).fail(what); }

  // Members and items as fields of their own. Hot loops over large objects or arrays iterate
  // object() or array() instead and build the field only for an error.
  json_field member(std::string_view key, simdjson::dom::element value) const {
    return {source_, path_.empty() ? std::string(key) : path_ + "." + std::string(key), value};
  }
  json_field item(std::size_t index, simdjson::dom::element value) const {
    return {source_, path_ + "[" + std::to_string(index) + "]", value};
  }

  // Member `key`; absent and null read the same, as transformers and tokenizers write null for
  // "the default".
  std::optional<json_field> find(std::string_view key) const {
    simdjson::dom::element value;
    if (object().at_key(key).get(value) || value.is_null()) return std::nullopt;
    return member(key, value);
  }
  json_field operator[](std::string_view key) const {
    simdjson::dom::element value;
    if (object().at_key(key).get(value)) fail(key, "missing");
    return member(key, value);  // a null fails the typed read that follows, naming what it expected
  }
  // Member `key` read by `read` (a member function such as &json_field::boolean, or a checker
  // taking a field), or `fallback` when the member is absent or null.
  template <class Read>
  std::invoke_result_t<Read, const json_field&> value_or(std::string_view key,
                                                         std::invoke_result_t<Read, const json_field&> fallback,
                                                         Read read) const {
    const std::optional<json_field> value = find(key);
    return value ? std::invoke(read, *value) : fallback;
  }

  // Optional boolean member. (Callers use this rather than value_or(&json_field::boolean) inside
  // a lambda: nvcc compiles that lambda for the device and rejects the member pointer there.)
  bool boolean_or(std::string_view key, bool fallback) const { return value_or(key, fallback, &json_field::boolean); }

  simdjson::dom::object object() const { return get<simdjson::dom::object>("an object"); }
  simdjson::dom::array array() const { return get<simdjson::dom::array>("an array"); }
  std::vector<std::pair<std::string_view, json_field>> members() const {
    std::vector<std::pair<std::string_view, json_field>> out;
    for (const auto [key, value] : object()) out.emplace_back(key, member(key, value));
    return out;
  }
  std::vector<json_field> items() const {
    std::vector<json_field> out;
    for (const simdjson::dom::element value : array()) out.push_back(item(out.size(), value));
    return out;
  }

  std::string_view string() const { return get<std::string_view>("a string"); }
  bool boolean() const { return get<bool>("true or false"); }
  double number() const { return get<double>("a number"); }  // simdjson converts integers too
  std::int64_t integer() const {
    if (value_.is_uint64() && !value_.is_int64()) {  // 2^63 .. 2^64-1: an integer, but not an int64
      fail(std::to_string(std::uint64_t(value_.get_uint64())) + " out of range for int64 (at most " +
           std::to_string(std::numeric_limits<std::int64_t>::max()) + ")");
    }
    return get<std::int64_t>("an integer");
  }
  std::int64_t positive_integer() const {
    const std::int64_t value = integer();
    if (value <= 0) fail("must be positive, got " + std::to_string(value));
    return value;
  }
  double positive_number() const {
    const double value = number();
    if (!(value > 0)) fail("must be positive, got " + std::to_string(value));
    return value;
  }

  std::vector<std::string> strings() const { return list<std::string>(&json_field::string); }
  std::vector<double> numbers() const { return list<double>(&json_field::number); }
  std::vector<std::int64_t> integers() const { return list<std::int64_t>(&json_field::integer); }

 private:
  [[noreturn]] void expected(std::string_view what) const {
    fail("is " + std::string(json_type_name(value_.type())) + ", expected " + std::string(what));
  }
  // The value as T, or an error naming the type found and `what` was expected.
  template <class T>
  T get(std::string_view what) const {
    T out{};
    if (value_.get(out)) expected(what);
    return out;
  }
  template <class T, class Read>
  std::vector<T> list(Read read) const {
    std::vector<T> out;
    for (const json_field& value : items()) out.emplace_back(std::invoke(read, value));
    return out;
  }

  std::string source_;
  std::string path_;
  simdjson::dom::element value_;
};

// Parses `text`, named `source` in errors, into `parser`; the root, which must be an object,
// lives as long as the parser.
inline json_field parse_json_object(simdjson::dom::parser& parser, std::string_view text, const std::string& source) {
  if (text.empty()) throw error(source + ": empty file");  // also keeps a null pointer away from the parser
  simdjson::dom::element root;
  if (const auto code = parser.parse(text.data(), text.size()).get(root)) {
    throw error(source + ": not valid JSON: " + simdjson::error_message(code));
  }
  json_field out(source, "", root);
  out.object();
  return out;
}

}  // namespace aq::io
