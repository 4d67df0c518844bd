// Calibration data: caption/JSON-lines readers, Qwen3-VL chat prompt, padding/labels/batching and
// step counts, and the real tokenizer's ids against Hugging Face `tokenizers` 0.23.3
// (tests/fixtures/make_calib_fixture.py).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <simdjson.h>
#include <sys/stat.h>

#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/io/data/chat_template.hpp"
#include "aq/io/image/image.hpp"
#include "aq/io/tokenizer/tokenizer.hpp"

namespace test_calib_data {

namespace {

namespace fs = std::filesystem;
const fs::path data = fs::path(AQ_DATA_DIR);

fs::path write_temp(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / ("aq_test_calib_" + name);
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

// A stand-in tokenizer: one id per byte (id = byte + 1000), so packing is tested alone.
std::vector<std::int32_t> byte_ids(std::string_view s) {
  std::vector<std::int32_t> v;
  for (unsigned char c : s) v.push_back(1000 + c);
  return v;
}

const aq::io::tokenizer& qwen3_tokenizer() {
  static const aq::io::tokenizer t = aq::io::tokenizer::from_file(data / "qwen3-tokenizer" / "tokenizer.json");
  return t;
}

}  // namespace

TEST_CASE("caption lines are stripped like Python, empty lines skipped, universal newlines") {
  const fs::path p = write_temp("caps.txt", "  first caption \r\n\n\t\nsecond\rthird\xC2\xA0\n   \nlast line without newline");
  const auto caps = aq::io::read_caption_lines(p);
  REQUIRE(caps.size() == 4);
  CHECK(caps[0] == "first caption");
  CHECK(caps[1] == "second");
  CHECK(caps[2] == "third");  // U+00A0 is str.isspace() in Python
  CHECK(caps[3] == "last line without newline");
  CHECK(aq::io::read_caption_lines(p, 2).size() == 2);
  CHECK_THROWS_WITH_AS(aq::io::read_caption_lines(write_temp("empty.txt", "\n  \n\t\n")),
                       doctest::Contains("aq_test_calib_empty.txt"), aq::error);
  CHECK_THROWS_WITH_AS(aq::io::read_caption_lines(write_temp("bad.txt", "ok\nbad \xFF byte\n")),
                       doctest::Contains("aq_test_calib_bad.txt:2"), aq::error);
  CHECK_THROWS_AS(aq::io::read_caption_lines(fs::path("/nonexistent/captions.txt")), aq::error);
}

TEST_CASE("the bundled caption subsets are the first 16, 128 and 512 lines of the 4096-caption sample") {
  const auto all = aq::io::read_caption_lines(data / "captions" / "coco2017_captions.txt");
  REQUIRE(all.size() == 4096u);
  for (const auto& [name, lines] : {std::pair{"coco2017_captions_small.txt", 16u}, std::pair{"coco2017_captions_medium.txt", 128u},
                                    std::pair{"coco2017_captions_large.txt", 512u}}) {
    CAPTURE(name);
    const auto subset = aq::io::read_caption_lines(data / "captions" / name);
    CHECK(subset.size() == lines);
    CHECK(std::equal(subset.begin(), subset.end(), all.begin()));
  }
}

TEST_CASE("image-caption JSON lines resolve paths and report file:line errors") {
  const auto samples = aq::io::read_image_caption_jsonl(data / "images" / "captions.jsonl");
  REQUIRE(samples.size() == 10);
  CHECK(samples[0].image.filename() == "astronaut.png");
  CHECK(fs::exists(samples[0].image));
  CHECK(samples[7].caption == "A black silhouette of a horse on a white background.");
  const fs::path bad = write_temp("bad.jsonl", "{\"image\": \"x.png\", \"caption\": \"a\"}\n\n{not json}\n");
  CHECK_THROWS_WITH_AS(aq::io::read_image_caption_jsonl(bad, false), doctest::Contains("aq_test_calib_bad.jsonl:3"),
                       aq::error);
  const fs::path missing_field = write_temp("nofield.jsonl", "{\"image\": \"x.png\"}\n");
  CHECK_THROWS_WITH_AS(aq::io::read_image_caption_jsonl(missing_field, false), doctest::Contains("\"caption\""),
                       aq::error);
  const fs::path missing_image = write_temp("noimage.jsonl", "\n{\"image\": \"no_such.png\", \"caption\": \"c\"}\n");
  CHECK_THROWS_WITH_AS(aq::io::read_image_caption_jsonl(missing_image), doctest::Contains("noimage.jsonl:2"),
                       aq::error);
}

TEST_CASE("Qwen3-VL chat prompt for user [image, caption] with generation prompt") {
  CHECK(aq::io::qwen3_vl_image_caption_prompt("A cat.") ==
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>A cat.<|im_end|>\n<|im_start|>assistant\n");
  const std::vector<aq::io::chat_message> msgs = {
      {"system", {{aq::io::chat_content::kind::text, "Be brief."}}},
      {"user", {{aq::io::chat_content::kind::text, "Hi "}, {aq::io::chat_content::kind::image, {}}}},
      {"assistant", {{aq::io::chat_content::kind::text, "Hello."}}}};
  CHECK(aq::io::render_qwen3_vl_chat(msgs, false) ==
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi <|vision_start|><|image_pad|><|vision_end|>"
        "<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n");
  const std::int64_t counts[] = {3};
  CHECK(aq::io::expand_image_pads("a<|image_pad|>b", counts) == "a<|image_pad|><|image_pad|><|image_pad|>b");
  const std::int64_t two[] = {1, 1};
  CHECK_THROWS_AS(aq::io::expand_image_pads("a<|image_pad|>b", two), aq::error);
}

TEST_CASE("text batches: left padding, masks, -100 labels, truncation, batch split") {
  const std::vector<std::string> caps = {"ab", "abcdef", "", "xyz", "0123456789"};
  aq::io::padding_options o;
  o.max_length = 8;
  const auto batches = aq::io::make_text_calib_batches(caps, byte_ids, 2, o);
  REQUIRE(batches.size() == 3);  // 2 + 2 + 1: last partial batch kept
  CHECK(batches[2].batch_size == 1);
  const auto& b = batches[0];
  CHECK(b.seq_len == 8);
  const std::int32_t P = aq::io::qwen3_pad_token_id;
  CHECK(std::vector<std::int32_t>(b.input_ids.begin(), b.input_ids.begin() + 8) ==
        std::vector<std::int32_t>{P, P, P, P, P, P, 1000 + 'a', 1000 + 'b'});
  CHECK(std::vector<std::int32_t>(b.attention_mask.begin(), b.attention_mask.begin() + 8) ==
        std::vector<std::int32_t>{0, 0, 0, 0, 0, 0, 1, 1});
  CHECK(std::vector<std::int32_t>(b.labels.begin(), b.labels.begin() + 8) ==
        std::vector<std::int32_t>{-100, -100, -100, -100, -100, -100, 1000 + 'a', 1000 + 'b'});
  // truncation keeps the first max_length tokens
  const auto& last = batches[2];
  CHECK(last.input_ids.front() == 1000 + '0');
  CHECK(last.input_ids.back() == 1000 + '7');
  CHECK(std::count(last.attention_mask.begin(), last.attention_mask.end(), 1) == 8);
  // an empty caption is a row of pads
  CHECK(std::count(batches[1].attention_mask.begin(), batches[1].attention_mask.begin() + 8, 1) == 0);
  // a real token equal to the pad id is also ignored, as ignore_index = pad id does
  const auto with_pad = aq::io::make_text_calib_batches(
      {"x"}, [](std::string_view) { return std::vector<std::int32_t>{5, aq::io::qwen3_pad_token_id}; }, 1, o);
  CHECK(with_pad[0].labels[7] == -100);
  CHECK(with_pad[0].attention_mask[7] == 1);
  o.side = aq::io::pad_side::right;
  const auto right = aq::io::make_text_calib_batches({"ab"}, byte_ids, 1, o);
  CHECK(right[0].input_ids[0] == 1000 + 'a');
  CHECK(right[0].input_ids[7] == P);
}

TEST_CASE("score and calib steps follow the reference formula") {
  CHECK(aq::io::num_score_steps(2, 8) == 2);      // small: 16 captions, bs 8
  CHECK(aq::io::num_score_steps(16, 8) == 16);    // medium
  CHECK(aq::io::num_score_steps(64, 8) == 16);    // large: 512 captions
  CHECK(aq::io::num_score_steps(16, 1) == 16);    // VLM small, bs 1
  CHECK(aq::io::num_score_steps(512, 1) == 128);  // VLM large
  CHECK(aq::io::num_score_steps(0, 8) == 1);
  CHECK(aq::io::num_score_steps(10, 256) == 1);
  CHECK(aq::io::num_calib_steps(64) == 64);
}

TEST_CASE("real tokenizer: caption ids and packed batches match Hugging Face tokenizers") {
  simdjson::dom::parser parser;
  simdjson::dom::element ref;
  REQUIRE(parser.load((fs::path(AQ_TEST_FIXTURES) / "calib" / "reference_ids.json").string()).get(ref) ==
          simdjson::SUCCESS);
  const auto& tok = qwen3_tokenizer();
  const auto encode = [&](std::string_view s) { return tok.encode(s); };
  const auto caps = aq::io::read_caption_lines(data / "captions" / "coco2017_captions_small.txt");
  const auto batches = aq::io::make_text_calib_batches(caps, encode, 8);
  REQUIRE(batches.size() == 2);
  std::size_t i = 0;
  for (simdjson::dom::element c : ref["captions"].get_array()) {
    REQUIRE(i < caps.size());
    CHECK(caps[i] == std::string_view(c["text"]));
    std::vector<std::int32_t> ids;
    for (simdjson::dom::element v : c["ids"].get_array()) ids.push_back(static_cast<std::int32_t>(std::int64_t(v)));
    const auto& b = batches[i / 8];
    const std::size_t row = (i % 8) * 512;
    const std::vector<std::int32_t> tail(b.input_ids.begin() + static_cast<std::ptrdiff_t>(row + 512 - ids.size()),
                                         b.input_ids.begin() + static_cast<std::ptrdiff_t>(row + 512));
    CHECK(tail == ids);
    CHECK(b.input_ids[row] == aq::io::qwen3_pad_token_id);
    CHECK(std::count(b.attention_mask.begin() + static_cast<std::ptrdiff_t>(row),
                     b.attention_mask.begin() + static_cast<std::ptrdiff_t>(row + 512), 1) ==
          static_cast<std::ptrdiff_t>(ids.size()));
    ++i;
  }
  CHECK(i == 16);

  // Image+caption: horse.png at the Qwen3-VL budget is 320x384 -> grid (1,20,24) -> 120 pads.
  const auto img = aq::io::load_image(data / "images" / "horse.png");
  const auto b = aq::io::make_image_caption_batch(img, std::string_view(ref["vlm"]["caption"]), encode);
  REQUIRE(b.vision.grid_thw.size() == 1);
  CHECK(b.vision.grid_thw[0] == std::array<std::int64_t, 3>{1, 20, 24});
  std::vector<std::int32_t> ids;
  for (simdjson::dom::element v : ref["vlm"]["ids"].get_array()) ids.push_back(static_cast<std::int32_t>(std::int64_t(v)));
  CHECK(b.seq_len == 512);
  CHECK(b.batch_size == 1);
  CHECK(std::vector<std::int32_t>(b.input_ids.end() - static_cast<std::ptrdiff_t>(ids.size()), b.input_ids.end()) == ids);
  CHECK(std::count(b.input_ids.begin(), b.input_ids.end(), 151655) == 120);
  CHECK(std::count(b.labels.begin(), b.labels.end(), -100) == 512 - static_cast<std::ptrdiff_t>(ids.size()));
}

TEST_CASE("bad calibration inputs: missing and empty files are errors, over-long samples truncate or stay whole") {
  // Captions: a missing file, a zero-byte file, a file of blank lines.
  CHECK_THROWS_WITH_AS(aq::io::read_caption_lines(fs::temp_directory_path() / "aq_test_calib_absent.txt"),
                       doctest::Contains("aq_test_calib_absent.txt: cannot open"), aq::error);
  CHECK_THROWS_WITH_AS(aq::io::read_caption_lines(write_temp("zero.txt", "")),
                       doctest::Contains("aq_test_calib_zero.txt: no non-empty captions"), aq::error);
  // Image-caption JSON lines: missing, zero-byte, blank-only, not an object, caption not a string.
  CHECK_THROWS_WITH_AS(aq::io::read_image_caption_jsonl(fs::temp_directory_path() / "aq_test_calib_absent.jsonl"),
                       doctest::Contains("aq_test_calib_absent.jsonl: cannot open"), aq::error);
  CHECK_THROWS_WITH_AS(aq::io::read_image_caption_jsonl(write_temp("zero.jsonl", "")),
                       doctest::Contains("aq_test_calib_zero.jsonl: no image-caption samples"), aq::error);
  CHECK_THROWS_WITH_AS(aq::io::read_image_caption_jsonl(write_temp("blank.jsonl", "\n  \n")),
                       doctest::Contains("aq_test_calib_blank.jsonl: no image-caption samples"), aq::error);
  CHECK_THROWS_WITH_AS(aq::io::read_image_caption_jsonl(write_temp("array.jsonl", "[1, 2]\n"), false),
                       doctest::Contains("aq_test_calib_array.jsonl:1: expected a JSON object"), aq::error);
  CHECK_THROWS_WITH_AS(
      aq::io::read_image_caption_jsonl(write_temp("number.jsonl", "{\"image\": \"x.png\", \"caption\": 7}\n"), false),
      doctest::Contains("aq_test_calib_number.jsonl:1: field \"caption\" missing or not a string"), aq::error);

  // A caption longer than seq_len: truncated to the first max_length tokens (documented), or an
  // error naming the caption when truncation is off.
  aq::io::padding_options o;
  o.max_length = 4;
  const auto cut = aq::io::make_text_calib_batches({"abcdefgh"}, byte_ids, 1, o);
  CHECK(cut[0].input_ids == std::vector<std::int32_t>{1000 + 'a', 1000 + 'b', 1000 + 'c', 1000 + 'd'});
  o.truncate = false;
  CHECK_THROWS_WITH_AS(aq::io::make_text_calib_batches({"ok", "abcdefgh"}, byte_ids, 1, o),
                       "caption 1: 8 tokens exceed max_length 4 and truncation is off", aq::error);

  // An image+caption prompt longer than seq_len is never cut (that would split the image's pad
  // run): the row is the whole prompt, unpadded, every position attended.
  aq::io::image_rgb8 img;
  img.width = 40;
  img.height = 30;
  img.pixels.assign(40 * 30 * 3, 128);
  aq::io::padding_options vlm;
  vlm.max_length = 16;
  const auto b = aq::io::make_image_caption_batch(img, "A grey square.", byte_ids, {}, vlm);
  const std::int64_t pads = aq::io::image_token_count(b.vision.grid_thw[0], 2);
  const std::string prompt = aq::io::expand_image_pads(aq::io::qwen3_vl_image_caption_prompt("A grey square."),
                                                       std::span<const std::int64_t>(&pads, 1));
  CHECK(b.seq_len == static_cast<std::int64_t>(prompt.size()));
  CHECK(b.seq_len > vlm.max_length);
  CHECK(std::count(b.attention_mask.begin(), b.attention_mask.end(), 1) == b.seq_len);
  CHECK(std::count(b.labels.begin(), b.labels.end(), -100) == 0);
}

TEST_CASE("a FIFO or a directory as a calibration file is refused by name, without blocking") {
  const fs::path dir = fs::temp_directory_path() / "aq_test_calib_not_regular";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path fifo = dir / "captions.txt";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);  // nobody writes: reading it would wait forever
  CHECK_THROWS_WITH_AS(aq::io::read_caption_lines(fifo), (fifo.string() + ": not a regular file (captions file)").c_str(),
                       aq::error);
  CHECK_THROWS_WITH_AS(aq::io::read_image_caption_jsonl(fifo),
                       (fifo.string() + ": not a regular file (image-caption file)").c_str(), aq::error);
  CHECK_THROWS_WITH_AS(aq::io::read_caption_lines(dir), (dir.string() + ": not a regular file (captions file)").c_str(),
                       aq::error);
}

}  // namespace test_calib_data
