// Tokenizer throughput: encodes a captions file (every line, as calibration does, and the whole
// file as one text) with the BPE word cache and without it, the naive baseline measured in the
// same run, and prints MB/s, tokens/s and the speed-up, plus the time to load tokenizer.json.
// usage: bench_tokenizer [--tokenizer PATH] [--text FILE] [--passes N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <aq/io/tokenizer/tokenizer.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

struct result {
  double seconds = 0;  // best pass
  std::size_t tokens = 0;
};

// Best of `passes` runs of encoding every text once.
result measure(const aq::io::tokenizer& tok, const std::vector<std::string>& texts, bool cache, int passes) {
  result r;
  r.seconds = 1e300;
  for (int p = 0; p < passes; ++p) {
    std::size_t tokens = 0;
    const auto start = clock_type::now();
    for (const std::string& t : texts) tokens += tok.encode(t, {.use_cache = cache}).size();
    r.seconds = std::min(r.seconds, seconds_since(start));
    r.tokens = tokens;
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string tokenizer_path = AQ_DATA_DIR "/qwen3-tokenizer/tokenizer.json";
    std::string text_path = AQ_DATA_DIR "/captions/coco2017_captions.txt";
    int passes = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string_view arg = argv[i];
      if (arg == "--tokenizer") {
        tokenizer_path = argv[i + 1];
      } else if (arg == "--text") {
        text_path = argv[i + 1];
      } else if (arg == "--passes") {
        passes = std::max(1, std::atoi(argv[i + 1]));
      } else {
        throw aq::error("unknown option " + std::string(arg));
      }
    }
    const auto load_start = clock_type::now();
    const aq::io::tokenizer tok = aq::io::tokenizer::from_file(tokenizer_path);
    const double load_seconds = seconds_since(load_start);

    std::ifstream in(text_path, std::ios::binary);
    if (!in) throw aq::error(text_path + ": cannot open");
    std::ostringstream buffer;
    buffer << in.rdbuf();
    const std::string whole = buffer.str();
    std::vector<std::string> lines;
    std::istringstream split(whole);
    for (std::string line; std::getline(split, line);) lines.push_back(line);
    const double megabytes = static_cast<double>(whole.size()) / 1e6;

    std::printf("tokenizer.json load: %.3f s (%zu merges)\n", load_seconds, tok.merge_count());
    std::printf("text: %s, %.3f MB, %zu lines, best of %d passes\n\n", text_path.c_str(), megabytes, lines.size(), passes);
    std::printf("%-22s %12s %12s %14s %10s\n", "case", "tokens", "MB/s", "tokens/s", "vs naive");
    const std::vector<std::pair<const char*, std::vector<std::string>>> inputs = {
        {"per line", lines}, {"whole file", {whole}}};
    for (const auto& [name, texts] : inputs) {
      const result naive = measure(tok, texts, false, passes);
      const result cached = measure(tok, texts, true, passes);
      if (naive.tokens != cached.tokens) throw aq::error("cache changed the token count");
      for (const auto& [label, r] : {std::pair{"naive (no cache)", naive}, std::pair{"cached", cached}}) {
        std::printf("%-22s %12zu %12.2f %14.0f %9.2fx\n", (std::string(name) + ", " + label).c_str(), r.tokens,
                    megabytes / r.seconds, static_cast<double>(r.tokens) / r.seconds, naive.seconds / r.seconds);
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
}
