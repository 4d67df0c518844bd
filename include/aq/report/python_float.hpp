// Python's float text forms, so that reports written by aq are byte-identical to ModelOpt's:
// `repr(x)` (what `json.dumps` writes for a float) and the `f"{x:.Ne}"` / `f"{x:.Nf}"` forms
// used in the Markdown report. Used by report/json_writer.hpp and the report writers.
#pragma once

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <system_error>

#include "aq/core/error.hpp"

namespace aq::io {

// repr(float) in CPython 3 ('r' format, short repr): the shortest digit string that reads back
// to the same double, laid out in fixed notation when the decimal exponent e satisfies
// -4 <= e < 16, otherwise as d[.ddd]e±XX. Non-finite values give "inf", "-inf", "nan".
inline std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";

  // to_chars without a precision yields the shortest round-trip digits (ties resolved to the
  // nearest, like CPython's dtoa mode 0); scientific form makes digits and exponent explicit.
  std::array<char, 64> buffer{};
  const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value,
                                       std::chars_format::scientific);
  if (ec != std::errc{}) throw error("python_float_repr: to_chars failed");
  const std::string_view text(buffer.data(), static_cast<std::size_t>(end - buffer.data()));

  const bool negative = text.front() == '-';
  const std::size_t e_pos = text.find('e');
  std::string digits;
  for (const char c : text.substr(negative ? 1 : 0, e_pos - (negative ? 1 : 0))) {
    if (c != '.') digits.push_back(c);
  }
  int exponent = 0;
  const std::string_view exponent_text = text.substr(e_pos + 1);
  const char* exponent_begin = exponent_text.data() + (exponent_text.front() == '+' ? 1 : 0);
  std::from_chars(exponent_begin, exponent_text.data() + exponent_text.size(), exponent);

  std::string out = negative ? "-" : "";
  const int n = static_cast<int>(digits.size());
  const int decimal_point = exponent + 1;  // value = 0.<digits> * 10^decimal_point
  if (decimal_point <= -4 || decimal_point > 16) {
    out += digits[0];
    if (n > 1) {
      out += '.';
      out.append(digits, 1, std::string::npos);
    }
    out += exponent < 0 ? "e-" : "e+";
    const int magnitude = exponent < 0 ? -exponent : exponent;
    if (magnitude < 10) out += '0';
    out += std::to_string(magnitude);
  } else if (decimal_point <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-decimal_point), '0');
    out += digits;
  } else if (decimal_point < n) {
    out.append(digits, 0, static_cast<std::size_t>(decimal_point));
    out += '.';
    out.append(digits, static_cast<std::size_t>(decimal_point), std::string::npos);
  } else {
    out += digits;
    out.append(static_cast<std::size_t>(decimal_point - n), '0');
    out += ".0";
  }
  return out;
}

// What Python's json module writes for a float (allow_nan=True): repr, except the non-finite
// values, which become the JavaScript literals Infinity, -Infinity and NaN.
inline std::string python_json_float(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value < 0 ? "-Infinity" : "Infinity";
  return python_float_repr(value);
}

namespace detail {

inline std::string printf_double(const char* format, int precision, double value) {
  if (std::isnan(value)) return "nan";  // Python never prints a sign on NaN; glibc may
  std::array<char, 512> buffer{};
  const int written = std::snprintf(buffer.data(), buffer.size(), format, precision, value);
  if (written < 0 || static_cast<std::size_t>(written) >= buffer.size()) {
    throw error("python float formatting: value does not fit the " + std::to_string(buffer.size()) +
                "-byte buffer");
  }
  return std::string(buffer.data(), static_cast<std::size_t>(written));
}

}  // namespace detail

// f"{value:.{precision}e}". glibc's printf rounds the exact binary value half-to-even, as
// CPython's dtoa does, and both print at least two exponent digits; inf/nan read alike.
inline std::string python_format_e(double value, int precision) {
  return detail::printf_double("%.*e", precision, value);
}

// f"{value:.{precision}f}" (same rounding argument as python_format_e).
inline std::string python_format_f(double value, int precision) {
  return detail::printf_double("%.*f", precision, value);
}

}  // namespace aq::io
