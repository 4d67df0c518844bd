// Image decoding and Qwen3-VL preprocessing against references made by transformers 5.17 /
// torchvision 0.26 / Pillow (tests/fixtures/make_image_fixture.py; photos in data/images).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aq/io/image/image.hpp"
#include "aq/io/image/image_preprocess.hpp"

namespace test_image {

namespace {

namespace fs = std::filesystem;
using aq::io::image_backend;
using aq::io::image_rgb8;

const fs::path fixtures = fs::path(AQ_TEST_FIXTURES) / "images";
const fs::path photos = fs::path(AQ_DATA_DIR) / "images";

std::vector<std::uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), p.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string fnv1a64(const std::vector<std::uint8_t>& bytes) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (std::uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001B3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

simdjson::dom::element load_json(simdjson::dom::parser& parser, const fs::path& p) {
  simdjson::dom::element e;
  REQUIRE(parser.load(p.string()).get(e) == simdjson::SUCCESS);
  return e;
}

std::string str(simdjson::dom::element e, const char* key) { return std::string(std::string_view(e[key])); }
int num(simdjson::dom::element e, const char* key) { return static_cast<int>(std::int64_t(e[key])); }

// Byte comparison of a resized image with a stored reference: count of differing bytes, max |diff|.
struct diff_stats {
  std::size_t differing = 0;
  int max_abs = 0;
};
diff_stats compare(const std::vector<std::uint8_t>& a, const std::uint8_t* ref, std::size_t n) {
  diff_stats s;
  for (std::size_t i = 0; i < n; ++i) {
    const int d = std::abs(int(a[i]) - int(ref[i]));
    if (d != 0) ++s.differing;
    s.max_abs = std::max(s.max_abs, d);
  }
  return s;
}

bool is_jpeg(const std::string& name) { return name.ends_with(".jpg"); }

}  // namespace

TEST_CASE("smart_resize matches the float64 formula on a table of sizes") {
  using aq::io::smart_resize;
  struct row { int h, w, eh, ew; };
  // Expected values worked out by hand from transformers' formula (half-to-even rounding,
  // min_pixels 65536, max_pixels 16777216, factor 32), and the processor's outputs for the photos.
  const row table[] = {
      {480, 640, 480, 640},    {224, 224, 256, 256},    {336, 448, 320, 448},  // round(10.5) = 10
      {512, 512, 512, 512},    {1080, 1920, 1088, 1920}, {768, 1024, 768, 1024},
      {4000, 6000, 3328, 4992}, {10, 10, 256, 256},      {400, 600, 384, 608},  // round(12.5) = 12
      {300, 451, 288, 448},    {303, 384, 288, 384},    {328, 400, 320, 384},
      {872, 1000, 864, 992},   {500, 741, 512, 736},    {1411, 1411, 1408, 1408}, {427, 640, 416, 640},
  };
  for (const row& r : table) {
    CAPTURE(r.h);
    CAPTURE(r.w);
    const auto [h, w] = smart_resize(r.h, r.w, 32, 65536, 16777216);
    CHECK(h == r.eh);
    CHECK(w == r.ew);
  }
  // Independent float64 evaluation over a sweep (small budget so both clamps are exercised).
  for (int H = 7; H < 900; H += 37) {
    for (int W = 9; W < 1300; W += 53) {
      const double f = 32, mn = 4096, mx = 40000;
      double hb = std::nearbyint(H / f) * f, wb = std::nearbyint(W / f) * f;
      if (hb * wb > mx) {
        const double beta = std::sqrt(double(H) * W / mx);
        hb = std::max(f, std::floor(H / beta / f) * f);
        wb = std::max(f, std::floor(W / beta / f) * f);
      } else if (hb * wb < mn) {
        const double beta = std::sqrt(mn / (double(H) * W));
        hb = std::ceil(H * beta / f) * f;
        wb = std::ceil(W * beta / f) * f;
      }
      const auto [h, w] = smart_resize(H, W, 32, 4096, 40000);
      CHECK(h == int(hb));
      CHECK(w == int(wb));
      CHECK(h % 32 == 0);
      CHECK(w % 32 == 0);
    }
  }
  CHECK_THROWS_AS(smart_resize(10, 2500, 32, 65536, 16777216), aq::error);  // aspect ratio 250
}

TEST_CASE("decode converts 16-bit, gray and alpha PNGs as PIL and transformers do") {
  simdjson::dom::parser parser;
  const auto meta = load_json(parser, fixtures / "pil_meta.json");
  for (simdjson::dom::element s : meta["synthetic"].get_array()) {
    const std::string name = str(s, "name");
    CAPTURE(name);
    const std::vector<std::uint8_t> bytes = read_bytes(fixtures / name);
    for (const auto mode : {aq::io::alpha_mode::composite_white, aq::io::alpha_mode::drop}) {
      const image_rgb8 img = aq::io::decode_image(bytes, name, mode);
      std::vector<std::uint8_t> expected;
      for (simdjson::dom::element v : s[mode == aq::io::alpha_mode::drop ? "convert_rgb" : "composite_white"].get_array()) {
        expected.push_back(static_cast<std::uint8_t>(std::int64_t(v)));
      }
      CHECK(img.pixels == expected);
    }
  }
  // Every (value, alpha) pair: PIL's integer alpha_composite over white, byte for byte.
  const image_rgb8 grid = aq::io::load_image(fixtures / "alpha_grid.png");
  CHECK(grid.width == 256);
  CHECK(fnv1a64(grid.pixels) == str(meta["alpha_grid"], "composite_fnv"));
  CHECK(fnv1a64(aq::io::load_image(fixtures / "alpha_grid.png", aq::io::alpha_mode::drop).pixels) ==
        str(meta["alpha_grid"], "drop_fnv"));
}

TEST_CASE("missing, empty, non-image, truncated and oversized image files are errors naming the file") {
  CHECK_THROWS_WITH_AS(aq::io::load_image(fixtures / "no_such_image.png"),
                       doctest::Contains("no_such_image.png: cannot open"), aq::error);
  const fs::path empty = fs::temp_directory_path() / "aq_test_image_empty.png";
  { std::ofstream(empty, std::ios::binary); }
  CHECK_THROWS_WITH_AS(aq::io::load_image(empty), doctest::Contains("aq_test_image_empty.png: empty image file"),
                       aq::error);
  fs::remove(empty);
  const fs::path folder = fs::temp_directory_path() / "aq_test_image_folder.png";
  fs::create_directories(folder);
  CHECK_THROWS_WITH_AS(aq::io::load_image(folder), doctest::Contains("aq_test_image_folder.png: not a regular file"),
                       aq::error);
  fs::remove(folder);
  // A FIFO is refused before it is opened for reading (which would wait for a writer forever).
  const fs::path fifo = fs::temp_directory_path() / ("aq_test_image_fifo_" + std::to_string(::getpid()) + ".png");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(aq::io::load_image(fifo), doctest::Contains("not a regular file"), aq::error);
  fs::remove(fifo);
  // A text file (this test's own source) is neither PNG nor JPEG.
  const fs::path text = fs::path(AQ_SOURCE_DIR) / "tests" / "test_image.cpp";
  CHECK_THROWS_WITH_AS(aq::io::load_image(text), doctest::Contains("test_image.cpp: not a readable PNG or JPEG image"),
                       aq::error);
  const std::vector<std::uint8_t> junk = {'n', 'o', 't', ' ', 'p', 'n', 'g'};
  CHECK_THROWS_WITH_AS(aq::io::decode_image(junk, "junk.png"), doctest::Contains("junk.png"), aq::error);
  // PNG cut inside its image data (PIL: "image file is truncated").
  simdjson::dom::parser parser;
  const auto pil = load_json(parser, fixtures / "pil_meta.json");
  CHECK(str(pil, "png_truncated_pil_error").find("truncated") != std::string::npos);
  CHECK_THROWS_WITH_AS(aq::io::load_image(fixtures / "png_truncated.png"),
                       doctest::Contains("png_truncated.png: cannot decode PNG"), aq::error);
  // A JPEG signature followed by garbage, and a JPEG cut inside its header.
  const std::vector<std::uint8_t> bad_jpeg = {0xFF, 0xD8, 0xFF, 0xE0, 'g', 'a', 'r', 'b', 'a', 'g', 'e'};
  CHECK_THROWS_WITH_AS(aq::io::decode_image(bad_jpeg, "bad.jpg"), doctest::Contains("bad.jpg: cannot decode JPEG"),
                       aq::error);
  const std::vector<std::uint8_t> jpeg = read_bytes(fixtures / "jpeg_420.jpg");
  const std::vector<std::uint8_t> head(jpeg.begin(), jpeg.begin() + 100);
  CHECK_THROWS_WITH_AS(aq::io::decode_image(head, "head.jpg"), doctest::Contains("head.jpg: "), aq::error);
  // At most max_image_pixels (Pillow's decompression-bomb threshold) are decoded, checked from the
  // header before any pixel memory is allocated: JPEGs whose SOF0 claims 30000x30000 and
  // 13000x13000, and PNGs whose IHDR claims 20000x20000 (stb checks no CRC), gray and RGBA (stb
  // itself reports the RGBA one as "unknown image type").
  auto patched_jpeg = [&](std::uint16_t side) {
    std::vector<std::uint8_t> out = jpeg;
    for (std::size_t i = 2; i + 9 < out.size(); ++i) {
      if (out[i] == 0xFF && out[i + 1] == 0xC0) {
        out[i + 5] = out[i + 7] = static_cast<std::uint8_t>(side >> 8);  // height, width, big-endian
        out[i + 6] = out[i + 8] = static_cast<std::uint8_t>(side & 0xFF);
        return out;
      }
    }
    FAIL("no SOF0 marker in jpeg_420.jpg");
    return out;
  };
  CHECK(aq::io::max_image_pixels == 178956970);
  CHECK_THROWS_WITH_AS(aq::io::decode_image(patched_jpeg(30000), "huge.jpg"),
                       "huge.jpg: image is 30000 x 30000 pixels; at most 178956970 pixels are decoded", aq::error);
  CHECK_THROWS_WITH_AS(aq::io::decode_image(patched_jpeg(13400), "photo.jpg"),
                       "photo.jpg: image is 13400 x 13400 pixels; at most 178956970 pixels are decoded", aq::error);
  auto patched_png = [&](const char* file, std::uint32_t side) {
    std::vector<std::uint8_t> out = read_bytes(fixtures / file);
    const std::uint8_t be[4] = {static_cast<std::uint8_t>(side >> 24), static_cast<std::uint8_t>(side >> 16),
                                static_cast<std::uint8_t>(side >> 8), static_cast<std::uint8_t>(side)};
    std::copy(be, be + 4, out.begin() + 16);
    std::copy(be, be + 4, out.begin() + 20);
    return out;
  };
  CHECK_THROWS_WITH_AS(aq::io::decode_image(patched_png("gray8.png", 20000), "big.png"),
                       "big.png: image is 20000 x 20000 pixels; at most 178956970 pixels are decoded", aq::error);
  CHECK_THROWS_WITH_AS(aq::io::decode_image(patched_png("alpha_grid.png", 20000), "big_rgba.png"),
                       "big_rgba.png: image is 20000 x 20000 pixels; at most 178956970 pixels are decoded", aq::error);
  // A chunk length past the end of the file is refused before stb sizes a buffer by it (2 GiB).
  std::vector<std::uint8_t> idat = read_bytes(fixtures / "gray8.png");
  std::size_t at = 8;
  while (std::string(reinterpret_cast<const char*>(idat.data() + at + 4), 4) != "IDAT") {
    at += 12 + ((std::size_t{idat[at]} << 24) | (std::size_t{idat[at + 1]} << 16) | (std::size_t{idat[at + 2]} << 8) |
                idat[at + 3]);
  }
  idat[at] = 0x66;
  idat[at + 1] = 0x00;
  idat[at + 2] = 0x00;
  idat[at + 3] = 0x20;
  const std::string long_idat = "long_idat.png: cannot decode PNG: chunk 'IDAT' at byte " + std::to_string(at) +
                                " claims 1711276064 bytes, past the end of the file";
  CHECK_THROWS_WITH_AS(aq::io::decode_image(idat, "long_idat.png"), doctest::Contains(long_idat.c_str()), aq::error);
  // Past stb's own 2^24 side limit too: the header is read before stb sees the file.
  CHECK_THROWS_WITH_AS(aq::io::decode_image(patched_png("rgb16.png", 20000000), "wide.png"),
                       doctest::Contains("wide.png: image is 20000000 x 20000000 pixels"), aq::error);
}

TEST_CASE("a large photo is resized to the processor's max_pixels, so its patch count is bounded") {
  using aq::io::smart_resize;
  // transformers' smart_resize (factor 32, Qwen3-VL-4B's min/max_pixels) on photo-sized inputs.
  struct row { int h, w, eh, ew; };
  const row table[] = {{13000, 13000, 4096, 4096}, {9000, 9000, 4096, 4096}, {20000, 20000, 4096, 4096},
                       {12000, 9000, 4704, 3520},  {4000, 3000, 4000, 3008}, {2048, 2048, 2048, 2048}};
  for (const row& r : table) {
    CAPTURE(r.h);
    CAPTURE(r.w);
    const auto [h, w] = smart_resize(r.h, r.w, 32, 65536, 16777216);
    CHECK(h == r.eh);
    CHECK(w == r.ew);
    CHECK(std::int64_t{h} * w <= 16777216);
  }
  // A generated 1500x2000 image under a small budget: the patches fit max_pixels / patch^2.
  image_rgb8 img;
  img.height = 1500;
  img.width = 2000;
  img.pixels.resize(std::size_t{1500} * 2000 * 3);
  for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<std::uint8_t>((i * 7919) % 251);
  aq::io::qwen3_vl_image_options o;
  o.min_pixels = 4096;
  o.max_pixels = 262144;
  const aq::io::vision_inputs v = aq::io::preprocess_images({img}, o);
  REQUIRE(v.grid_thw.size() == 1);
  const auto [eh, ew] = smart_resize(1500, 2000, 32, 4096, 262144);
  CHECK(v.grid_thw[0][1] == eh / 16);
  CHECK(v.grid_thw[0][2] == ew / 16);
  CHECK(v.rows == std::int64_t{eh} * ew / 256);
  CHECK(v.rows <= o.max_pixels / 256);
  CHECK(v.pixel_values.size() == static_cast<std::size_t>(v.rows * v.cols));
  // With do_resize off, an image above max_pixels is refused with its size instead.
  o.do_resize = false;
  CHECK_THROWS_WITH_AS(aq::io::preprocess_images({img}, o),
                       "image 0: image is 2000 x 1500 pixels, more than max_pixels 262144, and do_resize is off",
                       aq::error);
}

TEST_CASE("PNG and JPEG photos decode byte-identically to PIL") {
  simdjson::dom::parser parser;
  const auto meta = load_json(parser, fixtures / "meta.json");
  int jpegs = 0;
  for (simdjson::dom::element e : meta["images"].get_array()) {
    const std::string name = str(e, "name");
    CAPTURE(name);
    const image_rgb8 img = aq::io::load_image(photos / name, aq::io::alpha_mode::drop);
    CHECK(img.width == num(e, "width"));
    CHECK(img.height == num(e, "height"));
    CHECK(fnv1a64(img.pixels) == str(e, "decode_convert_rgb_fnv"));
    jpegs += is_jpeg(name);
  }
  CHECK(jpegs == 3);
  // The stored 64x64 crops report the size of a difference, should the hashes ever disagree
  // (stb_image's JPEG decoder, used before, was off by up to 2 here). Tolerance 0.
  simdjson::dom::parser p2;
  const auto pil = load_json(p2, fixtures / "pil_meta.json");
  const std::vector<std::uint8_t> crops = read_bytes(fixtures / "jpeg_crops.u8");
  for (simdjson::dom::element c : pil["jpeg_crops"].get_array()) {
    const std::string name = str(c, "name");
    CAPTURE(name);
    const image_rgb8 img = aq::io::load_image(photos / name);
    CHECK(fnv1a64(img.pixels) == str(c, "full_fnv"));
    simdjson::dom::array box = c["box_xywh"].get_array();
    const int x0 = int(std::int64_t(box.at(0))), y0 = int(std::int64_t(box.at(1)));
    const int w = int(std::int64_t(box.at(2))), h = int(std::int64_t(box.at(3)));
    std::vector<std::uint8_t> mine;
    for (int y = y0; y < y0 + h; ++y) {
      for (int x = x0; x < x0 + w; ++x) {
        for (int ch = 0; ch < 3; ++ch) mine.push_back(img.at(y, x, ch));
      }
    }
    const diff_stats s = compare(mine, crops.data() + std::int64_t(c["offset"]), mine.size());
    INFO(name << ": JPEG decode vs PIL: max |diff| " << s.max_abs << ", differing bytes " << s.differing);
    CHECK(s.differing == 0);
  }
}

TEST_CASE("JPEG variants decode as PIL: subsampling, progressive, restart markers, gray, CMYK, YCCK") {
  simdjson::dom::parser parser;
  const auto pil = load_json(parser, fixtures / "pil_meta.json");
  const std::vector<std::uint8_t> blob = read_bytes(fixtures / "jpeg_synthetic.u8");
  int decoded = 0, refused = 0;
  for (simdjson::dom::element e : pil["synthetic_jpeg"].get_array()) {
    const std::string name = str(e, "name");
    CAPTURE(name);
    std::string_view pil_error;
    if (e["pil_error"].get(pil_error) == simdjson::SUCCESS) {
      // PIL refuses cut files (even one missing only its EOI marker): so does aq, naming the file.
      CHECK_THROWS_WITH_AS(aq::io::load_image(fixtures / name), doctest::Contains((name + ": truncated JPEG").c_str()),
                           aq::error);
      ++refused;
      continue;
    }
    for (const auto mode : {aq::io::alpha_mode::composite_white, aq::io::alpha_mode::drop}) {
      const image_rgb8 img = aq::io::load_image(fixtures / name, mode);
      REQUIRE(img.width == num(e, "width"));
      REQUIRE(img.height == num(e, "height"));
      const diff_stats s = compare(img.pixels, blob.data() + std::int64_t(e["offset"]), img.pixels.size());
      INFO(name << ": max |diff| " << s.max_abs << ", differing bytes " << s.differing);
      CHECK(s.differing == 0);  // tolerance 0
      CHECK(fnv1a64(img.pixels) == str(e, "fnv"));
    }
    ++decoded;
  }
  CHECK(decoded == 8);
  CHECK(refused == 3);
}

TEST_CASE("bicubic resize is byte-exact against torchvision and PIL on every photo") {
  simdjson::dom::parser parser;
  const auto meta = load_json(parser, fixtures / "meta.json");
  const std::vector<std::uint8_t> fast = read_bytes(fixtures / "fast_small.u8");
  const std::vector<std::uint8_t> slow = read_bytes(fixtures / "slow_small.u8");
  const std::vector<std::uint8_t> up = read_bytes(fixtures / "fast_upscale.u8");
  aq::io::qwen3_vl_image_options small;
  small.min_pixels = 4096;
  small.max_pixels = 16384;
  for (simdjson::dom::element e : meta["images"].get_array()) {
    const std::string name = str(e, "name");
    CAPTURE(name);
    const image_rgb8 img = aq::io::load_image(photos / name);
    for (const auto backend : {image_backend::torchvision, image_backend::pil}) {
      const bool tv = backend == image_backend::torchvision;
      CAPTURE(tv);
      small.backend = backend;
      const simdjson::dom::element ref = e[tv ? "small_fast" : "small_slow"];
      const image_rgb8 r = aq::io::qwen3_vl_resize(img, small, name);
      REQUIRE(r.height == num(ref, "h"));
      REQUIRE(r.width == num(ref, "w"));
      const auto& blob = tv ? fast : slow;
      const diff_stats s = compare(r.pixels, blob.data() + std::int64_t(ref["offset"]), r.pixels.size());
      INFO(name << " resized: max |diff| " << s.max_abs << ", differing bytes " << s.differing);
      CHECK(s.differing == 0);
      CHECK(fnv1a64(r.pixels) == str(ref, "fnv"));
    }
    // The Qwen3-VL budget (65536..16777216 pixels): exact hash.
    {
      aq::io::qwen3_vl_image_options real;
      const image_rgb8 r = aq::io::qwen3_vl_resize(img, real, name);
      CHECK(r.height == num(e["real_fast"], "h"));
      CHECK(r.width == num(e["real_fast"], "w"));
      CHECK(fnv1a64(r.pixels) == str(e["real_fast"], "fnv"));
      real.backend = image_backend::pil;
      CHECK(fnv1a64(aq::io::qwen3_vl_resize(img, real, name).pixels) == str(e["real_slow"], "fnv"));
    }
    // Upscaling small crops to the 65536-pixel minimum.
    simdjson::dom::element crop;
    if (e["crop"].get(crop) == simdjson::SUCCESS) {
      simdjson::dom::array box = crop["box_xywh"].get_array();
      const int x0 = int(std::int64_t(box.at(0))), y0 = int(std::int64_t(box.at(1)));
      image_rgb8 c;
      c.width = int(std::int64_t(box.at(2)));
      c.height = int(std::int64_t(box.at(3)));
      for (int y = y0; y < y0 + c.height; ++y) {
        for (int x = x0; x < x0 + c.width; ++x) {
          for (int ch = 0; ch < 3; ++ch) c.pixels.push_back(img.at(y, x, ch));
        }
      }
      const image_rgb8 r = aq::io::qwen3_vl_resize(c, {}, name);
      REQUIRE(r.height == num(crop, "h"));
      REQUIRE(r.width == num(crop, "w"));
      CHECK(compare(r.pixels, up.data() + std::int64_t(crop["offset"]), r.pixels.size()).differing == 0);
    }
    // The seeds' VLM runs: qwen-vl-utils resizes with PIL to multiples of 28 first.
    {
      const simdjson::dom::element s = e["seeds_qwen_vl_utils"];
      simdjson::dom::array hw = s["pre_hw"].get_array();
      const image_rgb8 pre = aq::io::resize_bicubic(img, int(std::int64_t(hw.at(0))), int(std::int64_t(hw.at(1))),
                                                    image_backend::pil);
      CHECK(fnv1a64(pre.pixels) == str(s, "pre_fnv"));
      CHECK(fnv1a64(aq::io::qwen3_vl_resize(pre, {}, name).pixels) == str(s, "fnv"));
    }
  }
}

TEST_CASE("PIL-backend resize matches Pillow for up- and down-scaling to odd sizes") {
  simdjson::dom::parser parser;
  const auto pil = load_json(parser, fixtures / "pil_meta.json");
  for (simdjson::dom::element r : pil["pil_resize"].get_array()) {
    const std::string name = str(r, "name");
    CAPTURE(name);
    const image_rgb8 img = aq::io::load_image(photos / name);
    const image_rgb8 out = aq::io::resize_bicubic(img, num(r, "h"), num(r, "w"), image_backend::pil);
    CHECK(fnv1a64(out.pixels) == str(r, "fnv"));
  }
}

TEST_CASE("pixel_values and grid_thw equal the processor's output bit for bit") {
  simdjson::dom::parser parser;
  const auto meta = load_json(parser, fixtures / "meta.json");
  const simdjson::dom::element e = meta["images"].at(0);
  REQUIRE(str(e, "name") == "astronaut.png");
  aq::io::qwen3_vl_image_options o;
  o.min_pixels = 4096;
  o.max_pixels = 16384;
  const aq::io::vision_inputs v = aq::io::preprocess_images({aq::io::load_image(photos / "astronaut.png")}, o);
  REQUIRE(v.grid_thw.size() == 1);
  simdjson::dom::array g = e["small_fast"]["grid_thw"].get_array();
  for (std::size_t i = 0; i < 3; ++i) CHECK(v.grid_thw[0][i] == std::int64_t(g.at(i)));
  CHECK(v.cols == 1536);
  CHECK(v.rows == v.grid_thw[0][1] * v.grid_thw[0][2]);
  CHECK(aq::io::image_token_count(v.grid_thw[0], 2) == v.rows / 4);
  const std::vector<std::uint8_t> raw = read_bytes(fixtures / "pv_small.f32");
  REQUIRE(raw.size() == v.pixel_values.size() * sizeof(float));
  std::vector<float> ref(v.pixel_values.size());
  std::memcpy(ref.data(), raw.data(), raw.size());  // little-endian float32, as written
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) mismatches += ref[i] != v.pixel_values[i];
  CHECK(mismatches == 0);  // tolerance 0: same bytes, same float32 formula

  // Two images concatenate rows and grids in order.
  const aq::io::vision_inputs two =
      aq::io::preprocess_images({aq::io::load_image(photos / "astronaut.png"), aq::io::load_image(photos / "horse.png")}, o);
  CHECK(two.grid_thw.size() == 2);
  CHECK(two.rows == v.rows + two.grid_thw[1][1] * two.grid_thw[1][2]);
  CHECK(std::equal(v.pixel_values.begin(), v.pixel_values.end(), two.pixel_values.begin()));
}

}  // namespace test_image
