// Qwen3 tokenizer: ids must equal Hugging Face tokenizers' exactly (fixtures made by
// tests/fixtures/make_tokenizer_fixture.py), NFC must equal Python's unicodedata, and the
// pre-tokenizer must split as the Qwen2 regex does; unreadable files and a config whose vision
// token ids disagree with the tokenizer are errors.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <simdjson.h>
#include <sys/stat.h>

#include "aq/io/tokenizer/bpe.hpp"
#include "aq/io/tokenizer/nfc.hpp"
#include "aq/io/tokenizer/pretokenizer.hpp"
#include "aq/io/tokenizer/tokenizer.hpp"
#include "aq/io/tokenizer/utf8.hpp"
#include "aq/model/qwen3_vl/special_tokens.hpp"

#include "cli/calib_inputs.hpp"

namespace test_tokenizer {

namespace {

const std::string fixtures = std::string(AQ_TEST_FIXTURES) + "/tokenizer";
const std::string qwen_path = std::string(AQ_DATA_DIR) + "/qwen3-tokenizer/tokenizer.json";
const std::string captions_path = std::string(AQ_DATA_DIR) + "/captions/coco2017_captions.txt";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const aq::io::tokenizer& qwen() {
  static const aq::io::tokenizer t = [] {
    REQUIRE_MESSAGE(std::filesystem::exists(qwen_path), "the Qwen3 tokenizer is required: " << qwen_path);
    return aq::io::tokenizer::from_file(qwen_path);
  }();
  return t;
}

// Named arrays: iterating a temporary simdjson result trips g++'s dangling-pointer warning.
simdjson::dom::array as_array(simdjson::dom::element e) {
  simdjson::dom::array a;
  REQUIRE(e.get(a) == simdjson::SUCCESS);
  return a;
}

std::vector<std::uint32_t> ids_of(simdjson::dom::element element) {
  std::vector<std::uint32_t> ids;
  const simdjson::dom::array array = as_array(element);
  for (const auto v : array) ids.push_back(static_cast<std::uint32_t>(v.get_uint64().value()));
  return ids;
}

// The fixture's hash: FNV-1a 64 over the ids as little-endian uint32.
std::string fnv1a64(const std::vector<std::uint32_t>& ids) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (const std::uint32_t id : ids) {
    for (int k = 0; k < 4; ++k) {
      h ^= (id >> (8 * k)) & 0xFFu;
      h *= 0x100000001B3ull;
    }
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// Checks every {text, ids, decoded, decoded_skip_special} case; returns how many were checked.
std::size_t check_cases(const aq::io::tokenizer& tok, simdjson::dom::array cases) {
  std::size_t count = 0;
  for (const auto c : cases) {
    const std::string text(c["text"].get_string().value());
    const std::vector<std::uint32_t> expected = ids_of(c["ids"].value());
    const std::vector<std::uint32_t> got = tok.encode(text);
    CHECK_MESSAGE(got == expected, "text: \"" << text << "\"");
    CHECK(tok.encode(text, {.use_cache = false}) == expected);
    CHECK_MESSAGE(tok.decode(expected) == c["decoded"].get_string().value(), "decode of \"" << text << "\"");
    CHECK_MESSAGE(tok.decode(expected, true) == c["decoded_skip_special"].get_string().value(),
                  "decode (skip special) of \"" << text << "\"");
    ++count;
  }
  return count;
}

std::vector<std::string> split(std::string_view text) {
  std::vector<aq::io::text_span> spans;
  aq::io::qwen2_pretokenizer::split(text, spans);
  std::vector<std::string> pieces;
  for (const auto& s : spans) pieces.emplace_back(text.substr(s.begin, s.end - s.begin));
  return pieces;
}

using pieces = std::vector<std::string>;

std::string write_temp(const std::string& name, const std::string& content) {
  const auto path = std::filesystem::temp_directory_path() / ("aq_test_tokenizer_" + name);
  std::ofstream(path, std::ios::binary) << content;
  return path.string();
}

std::string error_of(const std::string& json) {
  const std::string path = write_temp("bad.json", json);
  try {
    (void)aq::io::tokenizer::from_file(path);
  } catch (const aq::error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("Qwen3 tokenizer.json loads in well under a second") {
  const auto start = std::chrono::steady_clock::now();
  const auto t = aq::io::tokenizer::from_file(std::filesystem::path(qwen_path).parent_path());  // model dir form
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("load time " << seconds << " s");
  CHECK(seconds < 1.0);
  CHECK(t.merge_count() == 151387);
  CHECK(t.id_bound() == 151669);
  CHECK(t.normalizes_nfc());
  CHECK(t.added_tokens().size() == 26);
  CHECK(t.token_to_id("<|image_pad|>") == 151655u);
  CHECK(t.token_to_id("<|vision_start|>") == 151652u);
  CHECK(t.token_to_id("Ġthe") == 279u);
}

TEST_CASE("Qwen3 encode and decode equal the reference on every fixture string") {
  simdjson::dom::parser parser;
  const simdjson::dom::element doc = parser.load(fixtures + "/qwen3_cases.json").value();
  MESSAGE("reference: tokenizers " << doc["tokenizers_version"].get_string().value());
  const std::size_t count = check_cases(qwen(), as_array(doc["cases"].value()));
  CHECK(count >= 400);
}

TEST_CASE("Qwen3 encode equals the reference on every line of the COCO captions file and on the whole file") {
  simdjson::dom::parser parser;
  const simdjson::dom::element doc = parser.load(fixtures + "/qwen3_captions.json").value();
  const std::string text = read_text(captions_path);
  const simdjson::dom::array lines = as_array(doc["lines"].value());
  std::size_t start = 0, index = 0, mismatches = 0;
  for (const auto expected : lines) {
    const std::size_t end = text.find('\n', start);
    const std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const std::vector<std::uint32_t> ids = qwen().encode(line);
    const bool same = ids.size() == expected.at(0).get_uint64().value() &&
                      fnv1a64(ids) == expected.at(1).get_string().value();
    if (!same && ++mismatches <= 5) FAIL_CHECK("line " << index << ": \"" << line << "\"");
    ++index;
    start = end + 1;
  }
  CHECK(index == 4096);
  CHECK(mismatches == 0);
  const std::vector<std::uint32_t> whole = qwen().encode(text);
  CHECK(whole.size() == doc["whole_file"].at(0).get_uint64().value());
  CHECK(fnv1a64(whole) == doc["whole_file"].at(1).get_string().value());
  CHECK(qwen().decode(whole) == text);
}

TEST_CASE("merges given as [left, right] pairs and as \"left right\" strings load the same BPE") {
  simdjson::dom::parser parser;
  const simdjson::dom::element doc = parser.load(fixtures + "/tiny_cases.json").value();
  for (const char* name : {"tiny_pairs.json", "tiny_strings.json"}) {
    CAPTURE(name);
    const auto tok = aq::io::tokenizer::from_file(fixtures + "/" + name);
    CHECK(tok.merge_count() == 164);
    // lstrip / rstrip / single_word / normalized added tokens, longest match, and plain BPE.
    CHECK(check_cases(tok, as_array(doc["cases"].value())) >= 40);
  }
}

TEST_CASE("added tokens: longest match, single_word, lstrip and rstrip") {
  const auto tok = aq::io::tokenizer::from_file(fixtures + "/tiny_pairs.json");
  const std::uint32_t s = *tok.token_to_id("<|s|>"), sx = *tok.token_to_id("<|s|>x"), l = *tok.token_to_id("[L]"),
                      r = *tok.token_to_id("[R]"), word = *tok.token_to_id("word");
  CHECK(tok.encode("<|s|>x") == std::vector<std::uint32_t>{sx});
  CHECK(tok.encode("<|s|><|s|>") == std::vector<std::uint32_t>{s, s});
  CHECK(tok.encode("  [L]") == std::vector<std::uint32_t>{l});           // swallows the spaces before it
  CHECK(tok.encode("[R]  ") == std::vector<std::uint32_t>{r});           // and after it
  CHECK(tok.encode("word") == std::vector<std::uint32_t>{word});
  CHECK(tok.encode("sword") != std::vector<std::uint32_t>{tok.encode("s")[0], word});  // not a single word
  CHECK(tok.decode(tok.encode("a <|s|> b"), true) == "a  b");
}

TEST_CASE("NFC equals Python's unicodedata on decompositions, reordered marks and Hangul") {
  simdjson::dom::parser parser;
  const simdjson::dom::element doc = parser.load(fixtures + "/nfc_cases.json").value();
  std::size_t count = 0;
  const simdjson::dom::array cases = as_array(doc["cases"].value());
  for (const auto c : cases) {
    const std::string_view in = c.at(0).get_string().value(), expected = c.at(1).get_string().value();
    CHECK_MESSAGE(aq::io::nfc(in) == expected, "input \"" << in << "\"");
    ++count;
  }
  CHECK(count > 800);
  // Independent spot checks (Unicode's own examples).
  CHECK(aq::io::nfc("e\xCC\x81") == "\xC3\xA9");                           // e + acute -> é
  CHECK(aq::io::nfc("a\xCC\x82\xCC\xA3") == "\xE1\xBA\xAD");               // marks reordered, then ậ
  CHECK(aq::io::nfc("\xE2\x84\xAB") == "\xC3\x85");                        // Angstrom sign -> Å (singleton)
  CHECK(aq::io::nfc("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB") == "\xED\x95\x9C");  // jamo -> 한
  CHECK(aq::io::nfc("\xE0\xA4\x95\xE0\xA4\xBC") == "\xE0\xA4\x95\xE0\xA4\xBC");  // excluded: stays
  CHECK(aq::io::nfc("plain ascii") == "plain ascii");
}

TEST_CASE("the Qwen2 split follows the regex's alternation order and backtracking") {
  CHECK(split("Hello world") == pieces{"Hello", " world"});
  CHECK(split("It's") == pieces{"It", "'s"});
  CHECK(split("IT'LL") == pieces{"IT", "'LL"});
  CHECK(split("a  b") == pieces{"a", " ", " b"});           // \s+(?!\S) leaves the last space to " b"
  CHECK(split("a   ") == pieces{"a", "   "});              // at the end the whole run
  CHECK(split("a \n\n b") == pieces{"a", " \n\n", " b"});  // \s*[\r\n]+ stops after the last newline
  CHECK(split("x\t\ty") == pieces{"x", "\t", "\ty"});
  CHECK(split("2024!") == pieces{"2", "0", "2", "4", "!"});
  CHECK(split(" ...\n\nok") == pieces{" ...\n\n", "ok"});
  CHECK(split("$5") == pieces{"$", "5"});
  CHECK(split("\xE4\xB8\xAD\xE6\x96\x87 x") == pieces{"\xE4\xB8\xAD\xE6\x96\x87", " x"});
}

TEST_CASE("byte-level decode replaces broken UTF-8 with U+FFFD and skips special tokens on request") {
  const auto& tok = qwen();
  const std::vector<std::uint32_t> emoji = tok.encode("\xF0\x9F\xA7\x8C");  // U+1F9CC
  REQUIRE(emoji.size() == 2);  // a rare emoji spans two byte-level tokens
  CHECK(tok.decode(std::vector<std::uint32_t>{emoji[0]}).find("\xEF\xBF\xBD") != std::string::npos);
  const std::vector<std::uint32_t> chat = tok.encode("<|im_start|>user\nhi<|im_end|>");
  CHECK(chat.front() == 151644u);
  CHECK(tok.decode(chat, true) == "user\nhi");
  CHECK(aq::io::utf8::decode_lossy("a\xE2\x82z") == "a\xEF\xBF\xBDz");  // truncated 3-byte sequence: one U+FFFD
  CHECK(aq::io::utf8::decode_lossy("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK_THROWS_AS(tok.decode(std::vector<std::uint32_t>{999999}), aq::error);
}

TEST_CASE("invalid input and unsupported tokenizer files raise aq::error naming file and field") {
  CHECK_THROWS_WITH_AS(qwen().encode("ab\xFF"), doctest::Contains("not valid UTF-8 at byte 2"), aq::error);
  const std::string tiny = read_text(fixtures + "/tiny_pairs.json");
  const auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = tiny;
    const auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
  };
  CHECK(error_of("{\"model\": ").find("not valid JSON") != std::string::npos);
  CHECK(error_of("{\"model\": ").find("aq_test_tokenizer_bad.json") != std::string::npos);
  CHECK(error_of(replaced("\"type\":\"BPE\"", "\"type\":\"WordPiece\"")).find("model.type: unsupported \"WordPiece\"") !=
        std::string::npos);
  CHECK(error_of(replaced("\"Isolated\"", "\"Removed\"")).find("pre_tokenizer.pretokenizers[0].behavior") !=
        std::string::npos);
  CHECK(error_of(replaced("\"use_regex\":false", "\"use_regex\":true")).find("pretokenizers[1].use_regex") !=
        std::string::npos);
  CHECK(error_of(replaced("{\"type\":\"NFC\"}", "{\"type\":\"NFKC\"}")).find("normalizer.type") != std::string::npos);
  CHECK(error_of(replaced("\"merges\":[[", "\"merges\":[[\"zz\",\"q\"],[")).find("model.merges[0]") != std::string::npos);
  CHECK(error_of(replaced("\"vocab\":{", "\"vocab\":{\"dup\":0,")).find("model.vocab") != std::string::npos);
  CHECK(error_of("{}").find("pre_tokenizer: missing") != std::string::npos);
  // Ids index dense tables: one id near 2^32 must be refused, not cost 32 GiB of tables.
  CHECK(error_of(replaced("\"vocab\":{", "\"vocab\":{\"far\":4294967000,")).find("model.vocab: id 4294967000 is far beyond") !=
        std::string::npos);
  CHECK_THROWS_WITH_AS(aq::io::tokenizer::from_file(fixtures + "/no_such.json"), doctest::Contains("no_such.json"),
                       aq::error);
}

TEST_CASE("tokenizer.json that is empty or a FIFO is a one-line error, not a hang") {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "aq_test_tokenizer_not_regular";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::filesystem::path file = dir / "tokenizer.json";
  { std::ofstream(file).flush(); }
  CHECK_THROWS_WITH_AS(aq::io::tokenizer::from_file(dir), (file.string() + ": empty file").c_str(), aq::error);
  std::filesystem::remove(file);
  REQUIRE(::mkfifo(file.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(aq::io::tokenizer::from_file(dir), (file.string() + ": not a regular file").c_str(), aq::error);
}

TEST_CASE("config's vision token ids must be the tokenizer's, naming both files") {
  aq::qwen3_vl::config cfg;  // the published ids: 151655, 151652, 151653
  CHECK_NOTHROW(aq::qwen3_vl::check_vision_token_ids(cfg, qwen()));
  cfg.image_token_id = 0;
  CHECK_THROWS_WITH_AS(aq::qwen3_vl::check_vision_token_ids(cfg, qwen(), "m/config.json", "m/tokenizer.json"),
                       "m/config.json: image_token_id 0 disagrees with m/tokenizer.json, where <|image_pad|> is 151655",
                       aq::error);
  // The image-caption batch builder checks before reading the list or any image.
  CHECK_THROWS_WITH_AS(aq::autoquant::make_image_caption_batches(qwen(), "absent.jsonl", 1, 32, cfg),
                       "config.json: image_token_id 0 disagrees with tokenizer.json, where <|image_pad|> is 151655",
                       aq::error);
  cfg.image_token_id = 151655;
  cfg.vision_end_token_id = 151652;
  CHECK_THROWS_WITH_AS(aq::qwen3_vl::check_vision_token_ids(cfg, qwen()),
                       "config.json: vision_end_token_id 151652 disagrees with tokenizer.json, where <|vision_end|> is 151653",
                       aq::error);
}

}  // namespace test_tokenizer
