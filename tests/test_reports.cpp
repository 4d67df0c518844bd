// Report writers: the JSON emitter against json.dumps(indent=2), byte-identical re-emission of the
// five reference ModelOpt runs (manifest, per-layer-sensitivity.json and .md) from their
// manifests, and a synthetic report read back field by field with simdjson.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <simdjson.h>
#include <unistd.h>

#include "aq/core/error.hpp"
#include "aq/report/json_writer.hpp"
#include "aq/report/quant_manifest.hpp"
#include "aq/report/report_model.hpp"
#include "aq/report/sensitivity_report.hpp"

namespace test_reports {

namespace fs = std::filesystem;
using namespace aq::io;

namespace {

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << file.string());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// "" when equal, else where the bytes first differ with a little context (doctest would
// otherwise print two 150 kB strings).
std::string first_difference(const std::string& got, const std::string& want) {
  if (got == want) return "";
  std::size_t at = 0;
  while (at < got.size() && at < want.size() && got[at] == want[at]) ++at;
  const std::size_t from = at < 80 ? 0 : at - 80;
  std::ostringstream message;
  message << "first difference at byte " << at << " (sizes " << got.size() << " vs " << want.size() << ")\n--- got:\n"
          << got.substr(from, 160) << "\n--- want:\n"
          << want.substr(from, 160);
  return message.str();
}

// A unique scratch directory removed at scope exit.
struct scratch_dir {
  fs::path path = fs::temp_directory_path() / ("aq_test_reports_" + std::to_string(::getpid()));
  scratch_dir() { fs::create_directories(path); }
  ~scratch_dir() { fs::remove_all(path); }
};

std::vector<std::string> object_keys(simdjson::dom::object object) {
  std::vector<std::string> keys;
  for (const auto [key, value] : object) keys.emplace_back(key);
  return keys;
}

// Three candidates per quantizable group; the values make every ordering rule observable:
// importance ties (a, d), first vs largest quantized score (c), a NONE-only group (b).
report_model synthetic_model() {
  report_model m;
  m.scheme = {"w4w8_mix", 6.5, "gradient", 64, "lm_only", 1.0, {"INT4_CFG", "INT8_CFG"}};
  m.model_id = "models/tiny \"quoted\" \xc3\xbc";
  m.layers = {{"model.a", true, "QuantLinear"}, {"model.b", true, "QuantLinear"}, {"model.c", false, "QuantConv3d"}};
  m.autoquant_state = {{"candidate_stats", "best"}, 6.25, 17.5, false};
  const std::string int4 = "INT4_CFG(effective-bits: 4.0)";
  const std::string int8 = "INT8_CFG(effective-bits: 8.0)";
  const std::string none = "NONE(effective-bits: 16.0)";
  m.groups = {
      {"model.a.quant_recipe", {{int4, 5.0, 10.0}, {int8, 2.0, 20.0}, {none, 0.0, 40.0}}},
      {"model.b.quant_recipe", {{none, 0.0, 8.0}}},
      {"model.c.quant_recipe", {{int4, 3.0, 5.0}, {int8, 7.5, 10.0}, {none, 0.0, 20.0}}},
      {"model.d.quant_recipe", {{int4, 5.0, 1e-05}, {int8, 1.0, 1.5e16}, {none, 0.0, 97239040.0}}},
  };
  dataset_info d;
  d.name = "captions";
  d.num_calib_samples = 12;
  d.batch_size = 4;
  m.dataset = d;
  return m;
}

}  // namespace

TEST_CASE("json_writer lays out documents exactly as json.dumps(indent=2)") {
  json_writer json;
  json.begin_object();
  json.key("a").begin_array().end_array();
  json.key("b").begin_object().end_object();
  json.key("c").begin_array().integer(1).number(2.5);
  json.begin_object().key("d").null().key("e").boolean(true).key("f").boolean(false).end_object();
  json.end_array();
  json.key("g").string("x");
  json.key("h").begin_array().begin_array().end_array().end_array();
  json.key("i").number(-0.0);
  json.key("j").number(std::numeric_limits<double>::infinity());
  json.key("k").integer(-7);
  json.end_object();
  // Output of CPython 3.11 json.dumps for the same dict.
  CHECK(json.str() ==
        "{\n  \"a\": [],\n  \"b\": {},\n  \"c\": [\n    1,\n    2.5,\n    {\n      \"d\": null,\n      \"e\": true,\n"
        "      \"f\": false\n    }\n  ],\n  \"g\": \"x\",\n  \"h\": [\n    []\n  ],\n  \"i\": -0.0,\n"
        "  \"j\": Infinity,\n  \"k\": -7\n}");
}

TEST_CASE("json_quote escapes like json.dumps with ensure_ascii") {
  CHECK(json_quote("plain") == "\"plain\"");
  CHECK(json_quote("quo\"te\\") == "\"quo\\\"te\\\\\"");
  CHECK(json_quote("tab\tnl\ncr\r\b\f") == "\"tab\\tnl\\ncr\\r\\b\\f\"");
  CHECK(json_quote(std::string("\x01\x1f\x7f")) == "\"\\u0001\\u001f\\u007f\"");
  CHECK(json_quote("\xc3\xa9") == "\"\\u00e9\"");
  CHECK(json_quote("\xe2\x82\xac") == "\"\\u20ac\"");
  CHECK(json_quote("\xf0\x9f\x98\x80") == "\"\\ud83d\\ude00\"");
  CHECK_THROWS_AS(json_quote("bad \xff byte"), aq::error);
  CHECK_THROWS_AS(json_quote("truncated \xe2\x82"), aq::error);
  CHECK_THROWS_AS(json_quote("overlong \xc0\xaf"), aq::error);
  CHECK_THROWS_AS(json_quote("surrogate \xed\xa0\x80"), aq::error);
}

TEST_CASE("json_writer refuses malformed documents") {
  json_writer a;
  a.begin_object();
  CHECK_THROWS_AS(a.integer(1), aq::error);  // member without key
  json_writer b;
  b.begin_array();
  CHECK_THROWS_AS(b.key("x"), aq::error);  // key inside an array
  CHECK_THROWS_AS(b.end_object(), aq::error);
  CHECK_THROWS_AS(b.str(), aq::error);  // unclosed
  json_writer c;
  c.begin_object().key("x");
  CHECK_THROWS_AS(c.end_object(), aq::error);  // key without value
}

// The key proof: everything the three reference files hold follows from the manifest's plain
// data, and aq writes the same bytes. No exceptions were needed: titles, model ids, dataset
// blocks and row orders of all five runs are reproduced from the manifest fields alone.
TEST_CASE("reports rebuilt from reference ModelOpt manifests are byte-identical to the reference files") {
  struct run {
    const char* dir;
    const char* manifest;
    std::size_t groups;
    std::size_t layers;  // the lm_default run searched Qwen3VLModel, which has no lm_head
    bool has_dataset;
  };
  const run runs[] = {
      {"lm-only/wint8_aint4", "wint8_aint4_autoquant_lm_quant_manifest.json", 250, 357, true},
      {"lm-only/wint8_aint8", "wint8_aint8_autoquant_lm_quant_manifest.json", 250, 357, true},
      {"lm-only/wfp8_afp8", "wfp8_afp8_autoquant_lm_quant_manifest.json", 250, 357, false},
      {"lm-only/int8_lm_default_medium", "int8_autoquant_lm_default_quant_manifest.json", 249, 356, false},
      {"all-layers/int8_medium", "int8_autoquant_all_layers_int8_quant_manifest.json", 250, 357, false},
  };
  const fs::path reference = fs::path(AQ_DATA_DIR) / "reference";
  REQUIRE_MESSAGE(fs::is_directory(reference),
                  "reference reports not found at " << reference.string());
  scratch_dir scratch;
  for (const run& r : runs) {
    SUBCASE(r.dir) {
      const fs::path dir = reference / r.dir;
      REQUIRE_MESSAGE(fs::is_directory(dir), "missing reference run " << dir.string());
      const report_model model = read_quant_manifest(dir / r.manifest);
      CHECK(model.groups.size() == r.groups);
      CHECK(model.layers.size() == r.layers);
      CHECK(model.dataset.has_value() == r.has_dataset);
      CHECK(!model.chosen_recipes.has_value());
      CHECK(!model.pareto_front.has_value());
      CHECK(quant_manifest_filename(model.scheme) == r.manifest);

      const std::string manifest_diff = first_difference(render_quant_manifest(model), read_text(dir / r.manifest));
      CHECK_MESSAGE(manifest_diff.empty(), manifest_diff);
      const std::string json_diff =
          first_difference(render_sensitivity_json(model), read_text(dir / "per-layer-sensitivity.json"));
      CHECK_MESSAGE(json_diff.empty(), json_diff);
      const std::string md_diff =
          first_difference(render_sensitivity_md(model), read_text(dir / "per-layer-sensitivity.md"));
      CHECK_MESSAGE(md_diff.empty(), md_diff);

      // The same bytes through the atomic file writers.
      const fs::path out = scratch.path / fs::path(r.dir).filename();
      fs::create_directories(out);
      write_quant_manifest(out / quant_manifest_filename(model.scheme), model);
      write_sensitivity_reports(out, model);
      CHECK(read_text(out / r.manifest) == read_text(dir / r.manifest));
      CHECK(read_text(out / "per-layer-sensitivity.json") == read_text(dir / "per-layer-sensitivity.json"));
      CHECK(read_text(out / "per-layer-sensitivity.md") == read_text(dir / "per-layer-sensitivity.md"));
      std::size_t files = 0;
      for ([[maybe_unused]] const auto& entry : fs::directory_iterator(out)) ++files;
      CHECK(files == 3);  // no temporary leftovers
    }
  }
}

TEST_CASE("the manifest holds every field of the report model, derived fields per ModelOpt's rules") {
  const report_model m = synthetic_model();
  const std::string text = render_quant_manifest(m);
  CHECK(text.back() == '}');  // no trailing newline

  simdjson::dom::parser parser;
  const simdjson::padded_string padded_text(text);
  simdjson::dom::object root = parser.parse(padded_text).get_object().value();
  CHECK(object_keys(root) == std::vector<std::string>{"scheme", "model", "num_quantized_layers", "layers",
                                                       "autoquant_state", "layer_sensitivity", "sensitivity_ranking",
                                                       "dataset"});
  simdjson::dom::object scheme = root["scheme"].get_object().value();
  CHECK(object_keys(scheme) == std::vector<std::string>{"name", "auto_quantize_bits", "auto_quantize_method",
                                                         "auto_quantize_score_size", "coverage_mode",
                                                         "coverage_fraction", "quant_formats"});
  CHECK(std::string_view(scheme["name"].get_string().value()) == "w4w8_mix");
  CHECK(scheme["auto_quantize_bits"].get_double().value() == 6.5);
  CHECK(scheme["auto_quantize_score_size"].get_int64().value() == 64);
  CHECK(scheme["quant_formats"].get_array().value().size() == 2);
  CHECK(std::string_view(root["model"]["id"].get_string().value()) == "models/tiny \"quoted\" \xc3\xbc");
  CHECK(text.find("\"id\": \"models/tiny \\\"quoted\\\" \\u00fc\"") != std::string::npos);
  CHECK(root["num_quantized_layers"].get_int64().value() == 3);
  CHECK(root["layers"]["model.c"]["quantized"].get_bool().value() == false);
  CHECK(std::string_view(root["layers"]["model.c"]["module_type"].get_string().value()) == "QuantConv3d");
  CHECK(root["autoquant_state"]["constraints"]["effective_bits"].get_double().value() == 6.25);
  CHECK(root["autoquant_state"]["score"].get_double().value() == 17.5);
  CHECK(root["autoquant_state"]["is_satisfied"].get_bool().value() == false);
  CHECK(root["autoquant_state"]["keys"].get_array().value().size() == 2);

  // importance = max(scores); rank = 1-based position in a stable ascending sort:
  // b (0) -> 1, a (5, earlier) -> 2, d (5) -> 3, c (7.5) -> 4.
  simdjson::dom::object sens = root["layer_sensitivity"].get_object().value();
  CHECK(object_keys(sens) == std::vector<std::string>{"model.a.quant_recipe", "model.b.quant_recipe",
                                                       "model.c.quant_recipe", "model.d.quant_recipe"});
  const std::pair<const char*, std::pair<double, std::int64_t>> expected[] = {
      {"model.a.quant_recipe", {5.0, 2}},
      {"model.b.quant_recipe", {0.0, 1}},
      {"model.c.quant_recipe", {7.5, 4}},
      {"model.d.quant_recipe", {5.0, 3}}};
  for (const auto& [name, want] : expected) {
    CAPTURE(name);
    simdjson::dom::object entry = sens[name].get_object().value();
    CHECK(object_keys(entry) == std::vector<std::string>{"formats", "scores", "costs", "importance", "rank"});
    CHECK(entry["importance"].get_double().value() == want.first);
    CHECK(entry["rank"].get_int64().value() == want.second);
  }
  simdjson::dom::array d_costs = sens["model.d.quant_recipe"]["costs"].get_array().value();
  CHECK(d_costs.at(0).get_double().value() == 1e-05);
  CHECK(d_costs.at(1).get_double().value() == 1.5e16);
  CHECK(text.find("\n        1e-05,\n        1.5e+16,\n        97239040.0\n") != std::string::npos);

  std::vector<std::string> ranking;
  const simdjson::dom::array ranking_array = root["sensitivity_ranking"].get_array().value();
  for (simdjson::dom::element item : ranking_array) {
    ranking.emplace_back(item["name"].get_string().value());
  }
  CHECK(ranking == std::vector<std::string>{"model.b.quant_recipe", "model.a.quant_recipe", "model.d.quant_recipe",
                                            "model.c.quant_recipe"});
  simdjson::dom::object dataset = root["dataset"].get_object().value();
  CHECK(object_keys(dataset) == std::vector<std::string>{"name", "num_calib_samples", "batch_size"});

  // Reading our own manifest back gives the model we wrote.
  const report_model back = parse_quant_manifest(text, "synthetic");
  CHECK(render_quant_manifest(back) == text);
  REQUIRE(back.groups.size() == m.groups.size());
  for (std::size_t g = 0; g < m.groups.size(); ++g) {
    REQUIRE(back.groups[g].candidates.size() == m.groups[g].candidates.size());
    for (std::size_t c = 0; c < m.groups[g].candidates.size(); ++c) {
      CHECK(back.groups[g].candidates[c].format == m.groups[g].candidates[c].format);
      CHECK(back.groups[g].candidates[c].score == m.groups[g].candidates[c].score);
      CHECK(back.groups[g].candidates[c].cost == m.groups[g].candidates[c].cost);
      // The manifest stores display strings only; reading it back recovers the bits they state.
      CHECK(back.groups[g].candidates[c].effective_bits == effective_bits_of(m.groups[g].candidates[c].format));
    }
  }
  CHECK(back.model_id == m.model_id);
  CHECK(back.dataset->batch_size == 4);
  CHECK(!back.dataset->size.has_value());
}

TEST_CASE("per-layer-sensitivity.json keeps the first quantized candidate and sorts by its score, stable") {
  report_model m = synthetic_model();
  m.dataset.reset();
  const std::string text = render_sensitivity_json(m);
  simdjson::dom::parser parser;
  const simdjson::padded_string padded_text(text);
  simdjson::dom::object root = parser.parse(padded_text).get_object().value();
  CHECK(object_keys(root) ==
        std::vector<std::string>{"scheme", "model", "autoquant_state", "layer_sensitivity"});  // no dataset key
  struct row {
    std::string layer;
    double bits, sensitivity, size_cost;
  };
  // first quantized scores: a 5, b (NONE only) 0, c 3, d 5 -> a, d, c, b
  const row want[] = {{"model.a", 4.0, 5.0, 10.0}, {"model.d", 4.0, 5.0, 1e-05}, {"model.c", 4.0, 3.0, 5.0},
                      {"model.b", 16.0, 0.0, 8.0}};
  simdjson::dom::array rows = root["layer_sensitivity"].get_array().value();
  REQUIRE(rows.size() == 4);
  std::size_t i = 0;
  for (simdjson::dom::element item : rows) {
    CAPTURE(i);
    CHECK(object_keys(item.get_object().value()) ==
          std::vector<std::string>{"layer", "num_bits", "sensitivity", "size_cost"});
    CHECK(std::string_view(item["layer"].get_string().value()) == want[i].layer);
    CHECK(item["num_bits"].get_double().value() == want[i].bits);
    CHECK(item["sensitivity"].get_double().value() == want[i].sensitivity);
    CHECK(item["size_cost"].get_double().value() == want[i].size_cost);
    ++i;
  }
}

TEST_CASE("per-layer-sensitivity.md lists every quantized candidate, rows by largest score, stable") {
  const report_model m = synthetic_model();
  const std::string md = render_sensitivity_md(m);
  // Header with the partial dataset block: absent fields are skipped, a missing count prints None.
  CHECK(md.starts_with("\nAutoQuant Layer Sensitivity (w4w8_mix)\n======================================\n\n\n"
                       "**Scheme:** `w4w8_mix`\n\n**Model:** `models/tiny \"quoted\" \xc3\xbc`\n## Dataset\n\n\n"
                       "- **Name:** `captions`\n- **Calibration samples:** `12` / `None` (used / max)\n"
                       "- **Batch size:** `4`\n\n**Effective bits (from search):** `6.2500`\n\n"
                       "**Total AutoQuant score:** `1.750000e+01`\n\n**Constraint satisfied:** `False`\n"
                       "## Per-layer sensitivity table\n"));
  // largest quantized scores: c 7.5, a 5, d 5, b 0 (NONE only)
  CHECK(md.ends_with("|Layer|Num Bits|Sensitivity|Size Cost|\n| :--- | :--- | :--- | :--- |\n"
                     "|model.c|4.0, 8.0|3.000e+00, 7.500e+00|5.000e+00, 1.000e+01|\n"
                     "|model.a|4.0, 8.0|5.000e+00, 2.000e+00|1.000e+01, 2.000e+01|\n"
                     "|model.d|4.0, 8.0|5.000e+00, 1.000e+00|1.000e-05, 1.500e+16|\n"
                     "|model.b|16.0|0.000e+00|8.000e+00|\n"));

  report_model without_model = m;
  without_model.model_id.reset();
  without_model.dataset = dataset_info{};  // empty: Python skips the block
  const std::string bare = render_sensitivity_md(without_model);
  CHECK(bare.find("**Model:**") == std::string::npos);
  CHECK(bare.find("## Dataset") == std::string::npos);
  CHECK(bare.find("**Scheme:** `w4w8_mix`\n\n**Effective bits") != std::string::npos);
  CHECK(render_quant_manifest(without_model).find("\"model\": {},") != std::string::npos);
  CHECK(render_quant_manifest(without_model).ends_with("\"dataset\": {}\n}"));
}

TEST_CASE("aq's chosen_recipes and pareto_front come after every ModelOpt field and only when present") {
  report_model m = synthetic_model();
  const std::string manifest_before = render_quant_manifest(m);
  const std::string json_before = render_sensitivity_json(m);
  const std::string md_before = render_sensitivity_md(m);

  m.chosen_recipes = std::vector<chosen_recipe>{{"model.a.quant_recipe", "INT8_CFG(effective-bits: 8.0)"},
                                                {"model.b.quant_recipe", "NONE(effective-bits: 16.0)"}};
  m.pareto_front = std::vector<pareto_point>{{4.0, 30.5}, {6.25, 17.5}, {16.0, 0.0}};
  const std::string manifest = render_quant_manifest(m);
  const std::string json = render_sensitivity_json(m);
  const std::string md = render_sensitivity_md(m);

  // The old content is a prefix: old readers see the same fields in the same places.
  CHECK(manifest.starts_with(manifest_before.substr(0, manifest_before.size() - 2)));
  CHECK(json.starts_with(json_before.substr(0, json_before.size() - 2)));
  CHECK(md.starts_with(md_before));

  simdjson::dom::parser parser;
  const simdjson::padded_string padded_manifest(manifest);
  simdjson::dom::object root = parser.parse(padded_manifest).get_object().value();
  const std::vector<std::string> keys = object_keys(root);
  REQUIRE(keys.size() == 10);
  CHECK(keys[8] == "chosen_recipes");
  CHECK(keys[9] == "pareto_front");
  CHECK(std::string_view(root["chosen_recipes"]["model.a.quant_recipe"].get_string().value()) ==
        "INT8_CFG(effective-bits: 8.0)");
  CHECK(root["pareto_front"].get_array().value().size() == 3);
  CHECK(root["pareto_front"].at(1)["effective_bits"].get_double().value() == 6.25);
  CHECK(root["pareto_front"].at(1)["score"].get_double().value() == 17.5);

  simdjson::dom::parser parser2;
  const simdjson::padded_string padded_json(json);
  simdjson::dom::object sroot = parser2.parse(padded_json).get_object().value();
  CHECK(object_keys(sroot).back() == "pareto_front");
  CHECK(std::string_view(sroot["chosen_recipes"]["model.b"].get_string().value()) == "NONE(effective-bits: 16.0)");

  CHECK(md.ends_with("\n## Chosen recipes\n\n|Layer|Recipe|\n| :--- | :--- |\n"
                     "|model.a|INT8_CFG(effective-bits: 8.0)|\n|model.b|NONE(effective-bits: 16.0)|\n"
                     "\n## Pareto front\n\n|Effective Bits|Total Score|\n| :--- | :--- |\n"
                     "|4.0000|3.050000e+01|\n|6.2500|1.750000e+01|\n|16.0000|0.000000e+00|\n"));

  const report_model back = parse_quant_manifest(manifest, "synthetic");
  REQUIRE(back.chosen_recipes.has_value());
  CHECK(back.chosen_recipes->size() == 2);
  CHECK((*back.chosen_recipes)[1].format == "NONE(effective-bits: 16.0)");
  REQUIRE(back.pareto_front.has_value());
  CHECK((*back.pareto_front)[0].score == 30.5);
  CHECK(render_quant_manifest(back) == manifest);
}

TEST_CASE("writers refuse NaN scores naming the group, and inconsistent models") {
  report_model m = synthetic_model();
  m.groups[2].candidates[1].score = std::nan("");
  for (int writer = 0; writer < 3; ++writer) {
    CAPTURE(writer);
    try {
      if (writer == 0) render_quant_manifest(m);
      if (writer == 1) render_sensitivity_json(m);
      if (writer == 2) render_sensitivity_md(m);
      FAIL("a NaN score was written");
    } catch (const aq::error& e) {
      const std::string message = e.what();
      CHECK(message.find("model.c.quant_recipe") != std::string::npos);
      CHECK(message.find("NaN score") != std::string::npos);
    }
  }
  scratch_dir scratch;
  CHECK_THROWS_AS(write_quant_manifest(scratch.path / "x_quant_manifest.json", m), aq::error);
  CHECK_THROWS_AS(write_sensitivity_reports(scratch.path, m), aq::error);
  CHECK(fs::is_empty(scratch.path));  // nothing half-written

  report_model nan_state = synthetic_model();
  nan_state.autoquant_state.score = std::nan("");
  CHECK_THROWS_AS(render_quant_manifest(nan_state), aq::error);

  report_model duplicate = synthetic_model();
  duplicate.groups.push_back(duplicate.groups.front());
  CHECK_THROWS_AS(render_quant_manifest(duplicate), aq::error);

  report_model bad_pick = synthetic_model();
  bad_pick.chosen_recipes = std::vector<chosen_recipe>{{"model.b.quant_recipe", "INT8_CFG(effective-bits: 8.0)"}};
  CHECK_THROWS_AS(render_quant_manifest(bad_pick), aq::error);
  bad_pick.chosen_recipes = std::vector<chosen_recipe>{{"model.zz.quant_recipe", "NONE(effective-bits: 16.0)"}};
  CHECK_THROWS_AS(render_quant_manifest(bad_pick), aq::error);

  // Infinity is legal for Python's json and kept (a diverged score is information).
  report_model inf = synthetic_model();
  inf.groups[0].candidates[0].score = std::numeric_limits<double>::infinity();
  CHECK(render_quant_manifest(inf).find("\"importance\": Infinity") != std::string::npos);
}

TEST_CASE("manifest reader names the file and field it cannot use") {
  const auto message_of = [](const std::string& text) {
    try {
      parse_quant_manifest(text, "broken.json");
    } catch (const aq::error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message_of("{").find("broken.json: not valid JSON") == 0);
  CHECK(message_of("{}") == "broken.json: scheme: missing");
  const std::string valid = render_quant_manifest(synthetic_model());
  std::string wrong_count = valid;
  wrong_count.replace(wrong_count.find("\"num_quantized_layers\": 3"), 25, "\"num_quantized_layers\": 4");
  CHECK(message_of(wrong_count).find("broken.json: num_quantized_layers: is 4 but layers holds 3") != std::string::npos);
  std::string wrong_type = valid;
  wrong_type.replace(wrong_type.find("\"auto_quantize_score_size\": 64"), 30, "\"auto_quantize_score_size\": \"x\"");
  CHECK(message_of(wrong_type) == "broken.json: scheme.auto_quantize_score_size: is a string, expected an integer");
  CHECK_THROWS_AS(read_quant_manifest("no/such/file_quant_manifest.json"), aq::error);
}

TEST_CASE("the sensitivity tables show the bits a candidate carries as a number") {
  const report_model stated = synthetic_model();
  report_model carried = stated;
  for (group_sensitivity& group : carried.groups) {
    for (candidate_stat& c : group.candidates) c.effective_bits = effective_bits_of(c.format);
  }
  CHECK(render_sensitivity_json(carried) == render_sensitivity_json(stated));
  CHECK(render_sensitivity_md(carried) == render_sensitivity_md(stated));

  // A display string that states no bits (a custom name) still gets the carried number.
  report_model custom = carried;
  for (candidate_stat& c : custom.groups[0].candidates) {
    if (!is_unquantized_format(c.format)) c.format = c.format.substr(0, c.format.find('('));
  }
  CHECK(render_sensitivity_md(custom).find("|model.a|4.0, 8.0|") != std::string::npos);
  CHECK(render_sensitivity_json(custom).find("\"layer\": \"model.a\",\n      \"num_bits\": 4.0,") != std::string::npos);
}

TEST_CASE("display names and effective bits are read from hparam names and recipe strings") {
  CHECK(layer_display_name("model.layers.0.mlp.gate_proj.quant_recipe") == "model.layers.0.mlp.gate_proj");
  CHECK(layer_display_name("lm_head") == "lm_head");
  CHECK(layer_display_name("a.quant_recipe.b.quant_recipe") == "a.b");  // every occurrence, like str.replace
  CHECK(effective_bits_of("CUSTOM_0(effective-bits: 4.0)") == 4.0);
  CHECK(effective_bits_of("X(effective-bits:4.25 )") == 4.25);
  CHECK(!effective_bits_of("INT8").has_value());
  CHECK(!effective_bits_of("X(effective-bits: eight)").has_value());
}

}  // namespace test_reports
