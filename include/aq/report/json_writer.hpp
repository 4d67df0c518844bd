// A small streaming JSON emitter whose bytes equal Python's `json.dumps(obj, indent=2)`
// (ensure_ascii, ", "/": " separators, float repr, `[]`/`{}` for empty containers). The report
// writers (report/quant_manifest.hpp, report/sensitivity_report.hpp) build their files with it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/io/tokenizer/utf8.hpp"
#include "aq/report/python_float.hpp"

namespace aq::io {

// Escapes UTF-8 text as json.dumps(ensure_ascii=True) does: \" \\ \n \r \t \b \f, other
// characters outside ' '..'~' as \u00xx (lowercase hex), code points above U+FFFF as a
// surrogate pair. Invalid UTF-8 is refused: Python strings cannot hold it either.
inline std::string json_quote(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  const auto append_u = [&](std::uint32_t unit) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out += hex[(unit >> shift) & 0xfu];
  };
  if (const auto at = utf8::first_invalid_byte(text)) {
    throw error("json string: invalid UTF-8 at byte " + std::to_string(*at) + " of \"" +
                std::string(text.substr(0, 40)) + "\"");
  }
  for (std::size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x80) {
      switch (byte) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (byte < 0x20 || byte == 0x7f) {
            append_u(byte);
          } else {
            out += static_cast<char>(byte);
          }
      }
      ++i;
      continue;
    }
    const std::uint32_t code = utf8::decode_at(text, i);
    if (code > 0xffff) {
      const std::uint32_t v = code - 0x10000;
      append_u(0xd800 + (v >> 10));
      append_u(0xdc00 + (v & 0x3ffu));
    } else {
      append_u(code);
    }
  }
  out += '"';
  return out;
}

// Builds one JSON document front to back. Misuse (a value without a key inside an object,
// unbalanced end_*) throws aq::error, so a writer bug cannot produce malformed output.
class json_writer {
 public:
  explicit json_writer(int indent = 2) : indent_(indent) {}

  json_writer& begin_object() { return open('{', true); }
  json_writer& end_object() { return close('}', true); }
  json_writer& begin_array() { return open('[', false); }
  json_writer& end_array() { return close(']', false); }

  json_writer& key(std::string_view name) {
    if (frames_.empty() || !frames_.back().is_object || frames_.back().has_key) {
      throw error("json_writer: key \"" + std::string(name) + "\" outside an object or after another key");
    }
    start_member();
    out_ += json_quote(name);
    out_ += ": ";
    frames_.back().has_key = true;
    return *this;
  }

  json_writer& string(std::string_view text) { return scalar(json_quote(text)); }
  json_writer& number(double value) { return scalar(python_json_float(value)); }
  json_writer& integer(std::int64_t value) { return scalar(std::to_string(value)); }
  json_writer& boolean(bool value) { return scalar(value ? "true" : "false"); }
  json_writer& null() { return scalar("null"); }

  // The document, with no trailing newline (json.dumps adds none).
  const std::string& str() const {
    if (!frames_.empty()) throw error("json_writer: document read before every object/array was closed");
    return out_;
  }

 private:
  struct frame {
    bool is_object = false;
    bool has_key = false;  // an object member's key was written, its value is due
    std::size_t count = 0;
  };

  // A scalar value, already in its JSON spelling.
  json_writer& scalar(std::string_view json) {
    before_value();
    out_ += json;
    return *this;
  }

  void newline_indent(std::size_t depth) {
    out_ += '\n';
    out_.append(depth * static_cast<std::size_t>(indent_), ' ');
  }

  void start_member() {
    frame& top = frames_.back();
    if (top.count > 0) out_ += ',';
    newline_indent(frames_.size());
    ++top.count;
  }

  void before_value() {
    if (frames_.empty()) {
      if (!out_.empty()) throw error("json_writer: a second top-level value");
      return;
    }
    frame& top = frames_.back();
    if (top.is_object) {
      if (!top.has_key) throw error("json_writer: object member without a key");
      top.has_key = false;
    } else {
      start_member();
    }
  }

  json_writer& open(char bracket, bool is_object) {
    before_value();
    out_ += bracket;
    frames_.push_back(frame{is_object, false, 0});
    return *this;
  }

  json_writer& close(char bracket, bool is_object) {
    if (frames_.empty() || frames_.back().is_object != is_object || frames_.back().has_key) {
      throw error(std::string("json_writer: unbalanced '") + bracket + "'");
    }
    const std::size_t count = frames_.back().count;
    frames_.pop_back();
    if (count > 0) newline_indent(frames_.size());
    out_ += bracket;
    return *this;
  }

  int indent_;
  std::string out_;
  std::vector<frame> frames_;
};

}  // namespace aq::io
