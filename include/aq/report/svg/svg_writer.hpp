// A small SVG emitter for the evaluation plots: escaped text and attributes, numbers in one fixed
// short form (so a plot's bytes depend only on its data), and the handful of elements the plots
// draw. Elements carry a class so that tests and style sheets can find them.
#pragma once

#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"

namespace aq::io::svg {

// Escapes text for XML content and for double-quoted attributes alike (both contexts accept
// the same five entities, so one function serves both and nothing is escaped twice).
inline std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        // Control characters other than tab/newline are not allowed in XML 1.0 at all.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

// A coordinate or length: two decimals, trailing zeros dropped, never "-0" and never an
// exponent, so that output is short and identical on every platform.
inline std::string number(double value) {
  if (!std::isfinite(value)) throw error("svg: a coordinate is not finite");
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.2f", value);
  std::string text(buffer);
  while (text.back() == '0') text.pop_back();
  if (text.back() == '.') text.pop_back();
  if (text == "-0") text = "0";
  return text;
}

// name="value" pairs of one element; values are escaped when written.
using attributes = std::vector<std::pair<std::string, std::string>>;

// Builds one SVG document (or a fragment of one) front to back.
class writer {
 public:
  // Opens the root <svg> with its size, viewBox, a <title> and the shared style sheet.
  writer(double width, double height, std::string_view title, std::string_view css_class) {
    out_ += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + number(width) + "\" height=\"" + number(height) +
            "\" viewBox=\"0 0 " + number(width) + " " + number(height) + "\" class=\"" + escape(css_class) +
            "\" role=\"img\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n";
    out_ += "<title>" + escape(title) + "</title>\n";
    out_ += "<rect class=\"background\" x=\"0\" y=\"0\" width=\"" + number(width) + "\" height=\"" + number(height) +
            "\" fill=\"#ffffff\"/>\n";
  }

  // <name attrs.../> or, with a tooltip, <name attrs...><title>tooltip</title></name>.
  writer& element(std::string_view name, const attributes& attrs, std::string_view tooltip = {}) {
    open_tag(name, attrs);
    if (tooltip.empty()) {
      out_ += "/>\n";
    } else {
      out_ += "><title>" + escape(tooltip) + "</title></" + std::string(name) + ">\n";
    }
    return *this;
  }

  writer& text(const attributes& attrs, std::string_view content) {
    open_tag("text", attrs);
    out_ += ">" + escape(content) + "</text>\n";
    return *this;
  }

  writer& begin_group(const attributes& attrs) {
    open_tag("g", attrs);
    out_ += ">\n";
    ++open_groups_;
    return *this;
  }

  writer& end_group() {
    if (open_groups_ == 0) throw error("svg: </g> without <g>");
    --open_groups_;
    out_ += "</g>\n";
    return *this;
  }

  // Raw markup written by another svg::writer-aware helper (e.g. a <defs> block); it must be
  // well-formed already.
  writer& raw(std::string_view markup) {
    out_ += markup;
    return *this;
  }

  // The closed document.
  std::string finish() {
    if (open_groups_ != 0) throw error("svg: document finished with an open <g>");
    out_ += "</svg>\n";
    return std::move(out_);
  }

 private:
  void open_tag(std::string_view name, const attributes& attrs) {
    out_ += '<';
    out_ += name;
    for (const auto& [key, value] : attrs) out_ += " " + key + "=\"" + escape(value) + "\"";
  }

  std::string out_;
  int open_groups_ = 0;
};

// Points of a polyline/path as "x1,y1 x2,y2 ...".
inline std::string points(const std::vector<std::pair<double, double>>& xy) {
  std::string out;
  for (const auto& [x, y] : xy) {
    if (!out.empty()) out += ' ';
    out += number(x) + "," + number(y);
  }
  return out;
}

}  // namespace aq::io::svg
