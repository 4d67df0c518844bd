// Calibration data readers: captions text files (one caption per line, as the reference drivers
// read them) and JSON-lines image+caption lists. First step of calibration: file -> samples ->
// chat/tokenize (chat_template.hpp) -> padded batches (calib_batches.hpp).
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/io/json_parser.hpp"
#include "aq/io/regular_file.hpp"
#include "aq/io/tokenizer/utf8.hpp"

namespace aq::io {

namespace detail {

// Through read_regular_file: a FIFO or a directory is refused ("PATH: not a regular file").
inline std::string read_text_file(const std::filesystem::path& path, const char* what) {
  try {
    return read_regular_file(path);
  } catch (const error& e) {
    throw error(std::string(e.what()) + " (" + what + ")");
  }
}

// Python's str.isspace() for one code point (what str.strip() removes).
inline bool python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.strip() on valid UTF-8.
inline std::string_view python_strip(std::string_view s) {
  const auto space_at = [&](std::size_t i) { return python_space(utf8::decode_at(s, i)); };
  std::size_t begin = 0;
  while (begin < s.size()) {
    const std::size_t n = utf8::valid_sequence_length(s, begin);
    if (n == 0 || !space_at(begin)) break;
    begin += n;
  }
  std::size_t end = s.size();
  while (end > begin) {
    const std::size_t start = utf8::previous_char_start(s, end);
    if (utf8::valid_sequence_length(s, start) != end - start || !space_at(start)) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

// Splits text into lines the way Python's text-mode file iteration does (universal newlines:
// \n, \r\n and a lone \r all end a line). Calls f(line, 1-based line number).
template <class F>
void for_each_line(std::string_view text, F&& f) {
  std::size_t line_no = 1, start = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' || text[i] == '\r') {
      f(text.substr(start, i - start), line_no++);
      if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < text.size()) f(text.substr(start), line_no);  // a last line without a newline
}

inline void check_utf8(std::string_view line, const std::filesystem::path& path, std::size_t line_no) {
  if (const auto at = utf8::first_invalid_byte(line)) {
    throw error(path.string() + ":" + std::to_string(line_no) + ": invalid UTF-8 at byte " + std::to_string(*at));
  }
}

}  // namespace detail

// Captions of a text file, one per line, as the reference's CocoCaptionsDataset reads them:
// UTF-8, universal newlines, each line str.strip()ed, empty lines skipped, at most `max_samples`.
inline std::vector<std::string> read_caption_lines(const std::filesystem::path& path,
                                                   std::optional<std::size_t> max_samples = std::nullopt) {
  const std::string text = detail::read_text_file(path, "captions file");
  std::vector<std::string> out;
  detail::for_each_line(text, [&](std::string_view line, std::size_t line_no) {
    if (max_samples && out.size() >= *max_samples) return;
    detail::check_utf8(line, path, line_no);
    const std::string_view s = detail::python_strip(line);
    if (!s.empty()) out.emplace_back(s);
  });
  if (out.empty()) throw error(path.string() + ": no non-empty captions (calibration needs at least one line)");
  return out;
}

// One image+caption calibration sample.
struct image_caption {
  std::filesystem::path image;  // resolved: relative paths are taken from the JSON-lines file's folder
  std::string caption;
  std::size_t line = 0;         // 1-based line in the source file, for error messages
};

// Reads JSON lines {"image": path, "caption": text}; blank lines are skipped. Errors name the file
// and line: bad JSON, a missing or non-string field, and (when check_images) a missing image file.
inline std::vector<image_caption> read_image_caption_jsonl(const std::filesystem::path& path,
                                                           bool check_images = true,
                                                           std::optional<std::size_t> max_samples = std::nullopt) {
  const std::string text = detail::read_text_file(path, "image-caption file");
  const std::filesystem::path dir = path.parent_path();
  std::vector<image_caption> out;
  simdjson::dom::parser parser;
  detail::for_each_line(text, [&](std::string_view line, std::size_t line_no) {
    if (max_samples && out.size() >= *max_samples) return;
    detail::check_utf8(line, path, line_no);
    if (detail::python_strip(line).empty()) return;
    const std::string where = path.string() + ":" + std::to_string(line_no);
    simdjson::dom::element obj;
    if (const auto err = parser.parse(simdjson::padded_string(line)).get(obj); err != simdjson::SUCCESS) {
      throw error(where + ": invalid JSON: " + simdjson::error_message(err));
    }
    if (!obj.is_object()) throw error(where + ": expected a JSON object {\"image\": ..., \"caption\": ...}");
    const auto field = [&](const char* key) {
      std::string_view v;
      if (obj[key].get(v) != simdjson::SUCCESS) throw error(where + ": field \"" + key + "\" missing or not a string");
      return std::string(v);
    };
    image_caption s;
    s.image = field("image");
    s.caption = field("caption");
    s.line = line_no;
    if (s.image.is_relative()) s.image = dir / s.image;
    if (check_images && !std::filesystem::is_regular_file(s.image)) {
      throw error(where + ": image file not found: " + s.image.string());
    }
    out.push_back(std::move(s));
  });
  if (out.empty()) throw error(path.string() + ": no image-caption samples");
  return out;
}

}  // namespace aq::io
