// What the drivers rely on before and after the work: number flags that refuse overflow instead
// of wrapping, output locations checked up front, outputs published as one set (the old folder
// or the new one, never a mix, no temporaries left), and images placed at the ids' placeholder runs.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "aq/model/qwen3_vl/rope_index.hpp"

#include "cli/options.hpp"
#include "cli/output_set.hpp"
#include "cli/outputs.hpp"

namespace test_driver_outputs {

namespace {

namespace fs = std::filesystem;

const fs::path root = fs::temp_directory_path() / "aq_test_driver_outputs";

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

fs::path fresh(const std::string& name) {
  const fs::path dir = root / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST_CASE("integer flags refuse what does not fit instead of wrapping") {
  using aq::autoquant::detail::parse_int;
  CHECK(parse_int("--n", "42", 1) == 42);
  CHECK(parse_int("--n", "9223372036854775807", 0) == 9223372036854775807LL);
  CHECK_THROWS_WITH_AS(parse_int("--n", "9223372036854775808", 0), doctest::Contains("--n: 9223372036854775808 is out of range"),
                       aq::error);
  CHECK_THROWS_WITH_AS(parse_int("--n", "99999999999999999999", 0), doctest::Contains("out of range"), aq::error);
  CHECK_THROWS_WITH_AS(parse_int("--n", "-99999999999999999999", 0), doctest::Contains("out of range"), aq::error);
  CHECK_THROWS_WITH_AS(parse_int("--n", "0", 1), doctest::Contains("--n: 0 is out of range (must be >= 1)"), aq::error);
  CHECK_THROWS_WITH_AS(parse_int("--n", "11", 0, 10), doctest::Contains("(must be in [0, 10])"), aq::error);
  for (const char* bad : {"", " 1", "1 ", "0x10", "1e3", "abc", "+"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(parse_int("--n", bad, 0), doctest::Contains("is not an integer"), aq::error);
  }
  CHECK(aq::autoquant::detail::parse_double("--b", "6.5") == 6.5);
  CHECK_THROWS_WITH_AS(aq::autoquant::detail::parse_double("--b", "1e999"), doctest::Contains("out of range"), aq::error);
  CHECK_THROWS_WITH_AS(aq::autoquant::detail::parse_double("--b", "inf"), doctest::Contains("out of range"), aq::error);
  CHECK_THROWS_WITH_AS(aq::autoquant::detail::parse_double("--b", "nan"), doctest::Contains("not a number"), aq::error);

  // --threads: 2^32 no longer wraps to 0 ("all"), and a pool nobody can start is refused.
  const auto threads = [](const std::string& v) {
    const std::vector<std::string> args = {"--threads", v};
    return aq::autoquant::parse_arguments(args).threads;
  };
  CHECK(threads("8") == 8u);
  CHECK(threads("1024") == 1024u);
  CHECK_THROWS_WITH_AS(threads("4294967296"), doctest::Contains("--threads: 4294967296 is out of range (must be in [0, 1024])"),
                       aq::error);
  CHECK_THROWS_WITH_AS(threads("100000"), doctest::Contains("--threads"), aq::error);
}

TEST_CASE("output locations are checked before any work, naming the flag and the path") {
  const fs::path dir = fresh("check");
  write_text(dir / "file", "x");
  CHECK_NOTHROW(aq::check_output_file("--result-json", dir / "r.json"));
  CHECK_NOTHROW(aq::check_output_file("--result-json", dir / "file"));  // replaced
  CHECK_NOTHROW(aq::check_output_directory("--output-dir", dir / "a" / "b"));
  const std::string under_file = "--result-json " + (dir / "file" / "r.json").string() + ": ";
  CHECK_THROWS_WITH_AS(aq::check_output_file("--result-json", dir / "file" / "r.json"),
                       doctest::Contains(under_file.c_str()), aq::error);
  CHECK_THROWS_WITH_AS(aq::check_output_file("--result-json", dir), doctest::Contains("exists and is a directory"), aq::error);
  CHECK_THROWS_WITH_AS(aq::check_output_file("--result-json", "/proc/aq_probe.json"),
                       doctest::Contains("cannot create files in /proc"), aq::error);
  CHECK_THROWS_WITH_AS(aq::check_output_directory("--output-dir", dir / "file"),
                       doctest::Contains("exists and is a regular file, not a directory"), aq::error);
  const std::string dir_under_file = "--output-dir " + (dir / "file" / "out").string() + ": ";
  CHECK_THROWS_WITH_AS(aq::check_output_directory("--output-dir", dir / "file" / "out"),
                       doctest::Contains(dir_under_file.c_str()), aq::error);
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(aq::check_output_file("--dump-batches", dir / "fifo"), doctest::Contains("exists and is a FIFO"),
                       aq::error);
  CHECK(names_in(dir) == std::vector<std::string>{"fifo", "file"});  // probes removed, nothing created
}

TEST_CASE("an output set publishes the folder and its files together, or nothing") {
  const fs::path dir = fresh("publish");
  const fs::path out = dir / "out";
  const auto write_set = [&](const std::string& version, bool publish) {
    aq::output_set set;
    set.set_directory("--output-dir", out, aq::autoquant::is_report_file);
    set.add_file("--result-json", dir / "result.json");
    set.add_file("--inside", out / "inner.json");
    set.check();
    set.stage();
    aq::write_file(set.directory() / "per-layer-sensitivity.md", version);
    aq::write_file(set.staged(dir / "result.json"), version);
    aq::write_file(set.staged(out / "inner.json"), version);
    if (version == "v1") aq::write_file(set.directory() / "v1_quant_manifest.json", version);
    CHECK_FALSE(read_text(out / "per-layer-sensitivity.md") == version);  // nothing visible before publish
    if (publish) set.publish();
  };
  write_set("v1", true);
  CHECK(names_in(out) == std::vector<std::string>{"inner.json", "per-layer-sensitivity.md", "v1_quant_manifest.json"});
  CHECK(read_text(dir / "result.json") == "v1");

  SUBCASE("a run that fails before publishing changes nothing and leaves no temporary") {
    write_set("v2", false);
    CHECK(read_text(out / "per-layer-sensitivity.md") == "v1");
    CHECK(read_text(dir / "result.json") == "v1");
    CHECK(names_in(dir) == std::vector<std::string>{"out", "result.json"});
  }
  SUBCASE("a re-run replaces the whole folder: files of the old set that the new one lacks are gone") {
    write_set("v2", true);
    CHECK(names_in(out) == std::vector<std::string>{"inner.json", "per-layer-sensitivity.md"});
    CHECK(read_text(out / "per-layer-sensitivity.md") == "v2");
    CHECK(read_text(out / "inner.json") == "v2");
    CHECK(read_text(dir / "result.json") == "v2");
    CHECK(names_in(dir) == std::vector<std::string>{"out", "result.json"});
  }
  SUBCASE("temporaries of a killed run are removed; a folder with foreign files is refused, not deleted") {
    fs::create_directories(dir / "out.tmp.4194301");
    fs::create_directories(dir / "out.old.4194302");
    write_text(dir / "result.json.tmp.4194303", "partial");
    write_set("v3", true);
    CHECK(names_in(dir) == std::vector<std::string>{"out", "result.json"});
    write_text(out / "notes.txt", "keep");
    aq::output_set set;
    set.set_directory("--output-dir", out, aq::autoquant::is_report_file);
    CHECK_THROWS_WITH_AS(set.check(), doctest::Contains("holds notes.txt"), aq::error);
    CHECK(read_text(out / "notes.txt") == "keep");
    fs::remove(out / "notes.txt");
    write_text(out / "draft.tmp.txt", "keep");  // a temporary is "<name>.tmp.<pid>", nothing else
    CHECK_THROWS_WITH_AS(set.check(), doctest::Contains("holds draft.tmp.txt"), aq::error);
  }
  SUBCASE("the working directory, or a folder above it, is never the folder replaced") {
    for (const fs::path& bad : {fs::path("."), fs::current_path().parent_path(), fs::path("/")}) {
      aq::output_set set;
      set.set_directory("--output-dir", bad, aq::autoquant::is_report_file);
      CAPTURE(bad);
      CHECK_THROWS_WITH_AS(set.check(), doctest::Contains("is the working directory or holds it"), aq::error);
    }
  }
}

TEST_CASE("images go where the ids hold their placeholder runs, one run per image") {
  using aq::qwen3_vl::place_image_placeholders;
  const aq::qwen3_vl::image_placeholder_ids t{100, 101, 102};
  const std::vector<aq::qwen3_vl::grid_thw> one = {{1, 4, 6}};  // 1 * 2 * 3 = 6 tokens after the 2x2 merge
  const std::vector<std::int64_t> pads(6, 101);
  const auto run = [&](std::vector<std::int64_t> before, std::vector<std::int64_t> after) {
    before.insert(before.end(), pads.begin(), pads.end());
    before.insert(before.end(), after.begin(), after.end());
    return before;
  };
  // No run: in front, wrapped in vision start/end.
  CHECK(place_image_placeholders({7, 8}, one, 2, t) == run({100}, {102, 7, 8}));
  // One pad inside a chat turn is expanded; a full run is kept.
  CHECK(place_image_placeholders({1, 100, 101, 102, 9}, one, 2, t) == run({1, 100}, {102, 9}));
  CHECK(place_image_placeholders(run({1, 100}, {102, 9}), one, 2, t) == run({1, 100}, {102, 9}));
  // Two images, two runs, in order.
  const std::vector<aq::qwen3_vl::grid_thw> two = {{1, 4, 6}, {1, 2, 2}};
  std::vector<std::int64_t> want = run({100}, {102, 5, 100, 101, 102});
  CHECK(place_image_placeholders({100, 101, 102, 5, 100, 101, 102}, two, 2, t) == want);
  CHECK_THROWS_WITH_AS(place_image_placeholders({101, 5, 101}, one, 2, t),
                       doctest::Contains("2 image placeholder run(s) (id 101) but 1 image(s)"), aq::error);
  CHECK_THROWS_WITH_AS(place_image_placeholders({101, 101, 101}, one, 2, t),
                       doctest::Contains("image 0 (grid 1x4x6) needs 6 placeholder ids (or one, to be expanded), its run "
                                         "at position 0 has 3"),
                       aq::error);
}

}  // namespace test_driver_outputs
