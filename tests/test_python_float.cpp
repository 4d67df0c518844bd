// Python float text forms: repr (json.dumps) and the .Ne/.Nf formats of the Markdown report,
// checked against strings produced by CPython itself (known values and a generated table).
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>

#include "aq/report/python_float.hpp"

namespace test_python_float {

using aq::io::python_float_repr;
using aq::io::python_format_e;
using aq::io::python_format_f;
using aq::io::python_json_float;

TEST_CASE("python_float_repr matches repr() of CPython on known values") {
  struct known {
    double value;
    const char* repr;
  };
  const known table[] = {
      {0.0, "0.0"},
      {-0.0, "-0.0"},
      {1.0, "1.0"},
      {0.1, "0.1"},
      {1e-05, "1e-05"},
      {0.0001, "0.0001"},
      {0.00012345, "0.00012345"},
      {1e16, "1e+16"},
      {1.5e16, "1.5e+16"},
      {9999999999999998.0, "9999999999999998.0"},
      {1234567890123456.0, "1234567890123456.0"},
      {123456789012345678.0, "1.2345678901234568e+17"},
      {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {97239040.0, "97239040.0"},
      {8.74530701482171, "8.74530701482171"},
      {8.744307014821711, "8.744307014821711"},
      {60.711156368255615, "60.711156368255615"},
      {206330725.6755753, "206330725.6755753"},
      {1e22, "1e+22"},
      {1e100, "1e+100"},
      {-2.5, "-2.5"},
      {1.0 / 3.0, "0.3333333333333333"},
  };
  for (const known& k : table) {
    CAPTURE(k.repr);
    CHECK(python_float_repr(k.value) == k.repr);
  }
  CHECK(python_float_repr(std::numeric_limits<double>::infinity()) == "inf");
  CHECK(python_float_repr(-std::numeric_limits<double>::infinity()) == "-inf");
  CHECK(python_float_repr(std::nan("")) == "nan");
}

TEST_CASE("python_json_float writes non-finite values as json.dumps does") {
  CHECK(python_json_float(std::numeric_limits<double>::infinity()) == "Infinity");
  CHECK(python_json_float(-std::numeric_limits<double>::infinity()) == "-Infinity");
  CHECK(python_json_float(std::nan("")) == "NaN");
  CHECK(python_json_float(0.5) == "0.5");
}

TEST_CASE("python_format_e and python_format_f match CPython, ties to even on the binary value") {
  CHECK(python_format_e(60.711156368255615, 3) == "6.071e+01");
  CHECK(python_format_e(418.8904, 6) == "4.188904e+02");
  CHECK(python_format_e(0.0, 3) == "0.000e+00");
  CHECK(python_format_e(1.0625, 3) == "1.062e+00");  // exact tie -> even digit
  CHECK(python_format_e(1.0015, 3) == "1.002e+00");  // binary value lies above the tie
  CHECK(python_format_e(1.0025, 3) == "1.002e+00");  // binary value lies below the tie
  CHECK(python_format_e(1e-100, 3) == "1.000e-100");
  CHECK(python_format_f(8.744307014821711, 4) == "8.7443");
  CHECK(python_format_f(0.125, 2) == "0.12");
  CHECK(python_format_f(8.0, 1) == "8.0");
  CHECK(python_format_e(std::nan(""), 3) == "nan");
  CHECK(python_format_e(-std::numeric_limits<double>::infinity(), 3) == "-inf");
}

// Every line of the generated table: IEEE bits, repr, .3e, .6e, .1f, .4f (the last two "-" for
// huge values). Exact string equality: the tolerance is zero.
TEST_CASE("python float forms equal CPython's on 600 generated doubles") {
  std::ifstream file(AQ_TEST_FIXTURES "/reports/python_floats.txt");
  REQUIRE_MESSAGE(file.good(), "missing fixture reports/python_floats.txt (make_python_floats.py makes it)");
  std::string line;
  int count = 0;
  while (std::getline(file, line)) {
    std::istringstream fields(line);
    std::string hex, repr, e3, e6, f1, f4;
    fields >> hex >> repr >> e3 >> e6 >> f1 >> f4;
    const double value = std::bit_cast<double>(static_cast<std::uint64_t>(std::stoull(hex, nullptr, 16)));
    CAPTURE(line);
    CHECK(python_float_repr(value) == repr);
    CHECK(python_format_e(value, 3) == e3);
    CHECK(python_format_e(value, 6) == e6);
    if (f1 != "-") {
      CHECK(python_format_f(value, 1) == f1);
      CHECK(python_format_f(value, 4) == f4);
    }
    ++count;
  }
  CHECK(count == 602);
}

// Independent of CPython: the repr reads back to the same double, and no string with one digit
// fewer does (checked with printf's correctly rounded %.*e on random bit patterns).
TEST_CASE("python_float_repr is the shortest string that round-trips") {
  std::mt19937_64 rng(7);
  int checked = 0;
  while (checked < 20000) {
    const double value = std::bit_cast<double>(rng());
    if (!std::isfinite(value)) continue;
    const std::string repr = python_float_repr(value);
    CAPTURE(repr);
    REQUIRE(std::strtod(repr.c_str(), nullptr) == value);
    // strip the zeros the fixed layout adds ("97239040.0" has 7 significant digits)
    std::string mantissa = repr.substr(0, repr.find('e'));
    std::string significant;
    for (const char c : mantissa) {
      if (c >= '0' && c <= '9') significant += c;
    }
    significant.erase(0, significant.find_first_not_of('0'));
    significant.erase(significant.find_last_not_of('0') + 1);
    const int shortest = static_cast<int>(std::max<std::size_t>(significant.size(), 1));
    if (shortest > 1) {
      char shorter[64];
      std::snprintf(shorter, sizeof shorter, "%.*e", shortest - 2, value);
      CHECK(std::strtod(shorter, nullptr) != value);
    }
    ++checked;
  }
  CHECK(checked == 20000);
}

TEST_CASE("python_float_repr switches to exponent form exactly where CPython does") {
  // decimal exponent e: fixed for -4 <= e < 16
  CHECK(python_float_repr(0.0001) == "0.0001");
  CHECK(python_float_repr(0.00009) == "9e-05");
  CHECK(python_float_repr(1e15) == "1000000000000000.0");
  CHECK(python_float_repr(1e16) == "1e+16");
  CHECK(python_float_repr(-1.25e-7) == "-1.25e-07");
  CHECK(python_float_repr(1.25e123) == "1.25e+123");
}

}  // namespace test_python_float
