// The list of every number format aq knows. Conformance tests, generated tables and lookups by
// name iterate over it, so adding a format is one struct plus one entry here.
#pragma once

#include <charconv>
#include <string>
#include <string_view>

#include "aq/formats/e2m1.hpp"
#include "aq/formats/e2m3.hpp"
#include "aq/formats/e3m2.hpp"
#include "aq/formats/e4m3.hpp"
#include "aq/formats/format.hpp"
#include "aq/formats/int4.hpp"
#include "aq/formats/int8.hpp"
#include "aq/formats/none.hpp"

namespace aq::formats {

using all_formats = format_list<int8, int4, e4m3, e3m2, e2m3, e2m1, none>;

// Markdown table of the formats (name, bits, kind, largest value), for docs and --help.
inline std::string format_table() {
  std::string table = "| format | bits | kind | max_bound |\n| :--- | ---: | :--- | ---: |\n";
  all_formats::for_each([&]<class F>() {
    const char* kind = F::is_passthrough ? "pass-through (bf16)" : (F::is_float ? "float" : "signed integer");
    table += "| " + std::string(F::name) + " | " + std::to_string(F::bits) + " | " + kind + " | ";
    char bound[32] = "-";
    if (!F::is_passthrough) *std::to_chars(bound, bound + sizeof(bound) - 1, F::max_bound).ptr = '\0';
    table += bound;
    table += " |\n";
  });
  return table;
}

}  // namespace aq::formats
