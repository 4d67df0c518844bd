// aq-tokenize: encodes a whole file (or standard input) as one text with the Qwen3 tokenizer and
// prints the ids on one line, separated by single spaces. Special tokens written in the text
// (<|im_start|>, <|image_pad|>, ...) are recognized; nothing is added around the text.
#include <cstdio>
#include <exception>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <aq/io/regular_file.hpp>
#include <aq/io/tokenizer/tokenizer.hpp>
#include <aq/io/tokenizer/utf8.hpp>

namespace {

constexpr const char* usage = "usage: aq-tokenize --tokenizer <tokenizer.json|model dir> [FILE]\n";

std::string read_all(std::istream& in, const std::string& name) {
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw aq::error(name + ": read failed");
  return buffer.str();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string tokenizer_path, input_path;
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::fputs(usage, stdout);
        return 0;
      }
      if (arg == "--tokenizer") {
        if (i + 1 >= argc) throw aq::error("--tokenizer: missing path");
        tokenizer_path = argv[++i];
      } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
        throw aq::error("unknown option " + std::string(arg));
      } else if (input_path.empty()) {
        input_path = arg;
      } else {
        throw aq::error("more than one input file given");
      }
    }
    if (tokenizer_path.empty()) throw aq::error("--tokenizer is required");
    const aq::io::tokenizer tok = aq::io::tokenizer::from_file(tokenizer_path);
    std::string text;
    if (input_path.empty() || input_path == "-") {
      text = read_all(std::cin, "standard input");
    } else {
      text = aq::read_regular_file(input_path);  // a FIFO or a directory is refused, not waited on
    }
    aq::io::utf8::validate(text, input_path.empty() || input_path == "-" ? "standard input" : input_path);
    const std::vector<std::uint32_t> ids = tok.encode(text);
    std::string line;
    line.reserve(ids.size() * 7 + 1);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i != 0) line.push_back(' ');
      line += std::to_string(ids[i]);
    }
    line.push_back('\n');
    std::fwrite(line.data(), 1, line.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aq-tokenize: %s\n", e.what());
    return 1;
  }
}
