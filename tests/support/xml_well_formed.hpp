// A strict XML well-formedness check for the SVG and HTML the report writers emit, written for the
// tests so they need no XML library: names, quoted attributes (no duplicates), the five predefined
// entities and character references only, balanced tags, one root; an optional XML declaration,
// DOCTYPE, comments and CDATA. It also counts elements and class tokens, so tests can assert how
// many points, cells or bars a plot holds.
#pragma once

#include <cctype>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace aq::test {

struct xml_check {
  std::string error;  // empty when well-formed; else what and at which byte
  std::string root;
  std::map<std::string, int> elements;  // element name -> count
  std::map<std::string, int> classes;   // class token -> count of elements carrying it
  bool ok() const { return error.empty(); }
};

namespace detail {

class xml_scanner {
 public:
  explicit xml_scanner(std::string_view text) : s_(text) {}

  xml_check run() {
    try {
      prolog();
      if (at_end() || s_[i_] != '<') fail("no root element");
      element();
      misc();
      if (!at_end()) fail("content after the root element");
    } catch (const std::string& message) {
      result_.error = message + " at byte " + std::to_string(i_);
    }
    return result_;
  }

 private:
  [[noreturn]] void fail(const std::string& message) { throw message; }
  bool at_end() const { return i_ >= s_.size(); }
  bool starts(std::string_view token) const { return s_.substr(i_, token.size()) == token; }
  void skip_space() {
    while (!at_end() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  void expect(std::string_view token) {
    if (!starts(token)) fail("expected '" + std::string(token) + "'");
    i_ += token.size();
  }
  static bool name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
  static bool name_char(char c) {
    return name_start(c) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.';
  }

  std::string name() {
    if (at_end() || !name_start(s_[i_])) fail("expected a name");
    const std::size_t start = i_;
    while (!at_end() && name_char(s_[i_])) ++i_;
    return std::string(s_.substr(start, i_ - start));
  }

  void skip_past(std::string_view terminator, const char* what) {
    const std::size_t end = s_.find(terminator, i_);
    if (end == std::string_view::npos) fail(std::string("unterminated ") + what);
    i_ = end + terminator.size();
  }

  void comment() {
    expect("<!--");
    const std::size_t end = s_.find("--", i_);
    if (end == std::string_view::npos || s_.substr(end, 3) != "-->") fail("'--' inside a comment or unterminated comment");
    i_ = end + 3;
  }

  // Whitespace, comments and processing instructions between top-level parts.
  void misc() {
    for (;;) {
      skip_space();
      if (starts("<!--")) {
        comment();
      } else if (starts("<?")) {
        skip_past("?>", "processing instruction");
      } else {
        return;
      }
    }
  }

  void prolog() {
    if (starts("<?xml")) skip_past("?>", "XML declaration");
    misc();
    if (starts("<!DOCTYPE")) {
      if (s_.substr(i_).find('[') < s_.substr(i_).find('>')) fail("internal DOCTYPE subsets are not supported");
      skip_past(">", "DOCTYPE");
    }
    misc();
  }

  // One entity or character reference after '&'.
  void reference() {
    expect("&");
    const std::size_t end = s_.find(';', i_);
    if (end == std::string_view::npos || end - i_ > 10) fail("unterminated entity");
    const std::string_view body = s_.substr(i_, end - i_);
    static const std::set<std::string_view> predefined{"amp", "lt", "gt", "quot", "apos"};
    bool valid = predefined.count(body) > 0;
    if (!valid && body.size() > 1 && body[0] == '#') {
      const bool hex = body[1] == 'x';
      const std::string_view digits = body.substr(hex ? 2 : 1);
      valid = !digits.empty();
      for (const char c : digits) {
        valid = valid && (hex ? std::isxdigit(static_cast<unsigned char>(c)) : std::isdigit(static_cast<unsigned char>(c)));
      }
    }
    if (!valid) fail("unknown entity '&" + std::string(body) + ";'");
    i_ = end + 1;
  }

  std::string attribute_value() {
    if (at_end() || (s_[i_] != '"' && s_[i_] != '\'')) fail("attribute value not quoted");
    const char quote = s_[i_++];
    std::string value;
    while (!at_end() && s_[i_] != quote) {
      if (s_[i_] == '<') fail("'<' in an attribute value");
      if (s_[i_] == '&') {
        const std::size_t start = i_;
        reference();
        value += s_.substr(start, i_ - start);
      } else {
        value += s_[i_++];
      }
    }
    if (at_end()) fail("unterminated attribute value");
    ++i_;
    return value;
  }

  void count_classes(const std::string& value) {
    std::size_t start = 0;
    while (start < value.size()) {
      const std::size_t end = value.find(' ', start);
      const std::string token = value.substr(start, end == std::string::npos ? std::string::npos : end - start);
      if (!token.empty()) ++result_.classes[token];
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }

  // An element and everything in it.
  void element() {
    expect("<");
    const std::string tag = name();
    if (result_.root.empty()) result_.root = tag;
    ++result_.elements[tag];
    std::set<std::string> seen;
    for (;;) {
      const std::size_t before = i_;
      skip_space();
      if (starts("/>")) {
        i_ += 2;
        return;
      }
      if (starts(">")) {
        ++i_;
        break;
      }
      if (i_ == before) fail("expected whitespace before an attribute");
      const std::string attribute = name();
      if (!seen.insert(attribute).second) fail("attribute '" + attribute + "' given twice");
      skip_space();
      expect("=");
      skip_space();
      const std::string value = attribute_value();
      if (attribute == "class") count_classes(value);
    }
    content(tag);
  }

  void content(const std::string& tag) {
    for (;;) {
      if (at_end()) fail("element <" + tag + "> not closed");
      if (starts("</")) {
        i_ += 2;
        const std::string closing = name();
        if (closing != tag) fail("</" + closing + "> closes <" + tag + ">");
        skip_space();
        expect(">");
        return;
      }
      if (starts("<!--")) {
        comment();
      } else if (starts("<![CDATA[")) {
        skip_past("]]>", "CDATA section");
      } else if (starts("<?")) {
        skip_past("?>", "processing instruction");
      } else if (starts("<")) {
        element();
      } else if (s_[i_] == '&') {
        reference();
      } else {
        if (starts("]]>")) fail("']]>' in text");
        ++i_;
      }
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
  xml_check result_;
};

}  // namespace detail

inline xml_check check_xml(std::string_view text) { return detail::xml_scanner(text).run(); }

// The <svg>...</svg> fragments of an HTML page, in order (SVG elements do not nest in the report).
inline std::vector<std::string> extract_svgs(std::string_view html) {
  std::vector<std::string> out;
  for (std::size_t at = html.find("<svg"); at != std::string_view::npos; at = html.find("<svg", at)) {
    const std::size_t end = html.find("</svg>", at);
    if (end == std::string_view::npos) break;
    out.emplace_back(html.substr(at, end + 6 - at));
    at = end + 6;
  }
  return out;
}

}  // namespace aq::test
