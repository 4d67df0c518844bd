// The evaluation writers: evaluation.json read back with simdjson, every SVG and report.html
// checked for well-formed XML and for the number of points, cells and bars they draw, escaping of
// names with < & " ', byte-identical re-rendering, and validation that refuses bad numbers before
// writing any file. Inputs are the synthetic run of tests/support/synthetic_evaluation.hpp.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include <simdjson.h>
#include <unistd.h>

#include "aq/core/error.hpp"
#include "aq/report/evaluation_files.hpp"
#include "aq/report/evaluation_json.hpp"
#include "aq/report/evaluation_markdown.hpp"
#include "aq/report/html_report.hpp"
#include "aq/report/plots/bits_per_layer_plot.hpp"
#include "aq/report/plots/pareto_plot.hpp"
#include "aq/report/plots/score_heatmap.hpp"
#include "aq/report/svg/svg_scale.hpp"
#include "aq/report/svg/svg_writer.hpp"
#include "support/synthetic_evaluation.hpp"
#include "support/xml_well_formed.hpp"

namespace test_evaluation_report {

namespace fs = std::filesystem;
using namespace aq::io;
using aq::test::check_xml;
using aq::test::xml_check;

namespace {

constexpr int num_groups = 12;
constexpr int num_recipes = 4;  // three recipes and NONE
constexpr int num_mixes = 10;
constexpr int num_front_points = 8;

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << file.string());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct scratch_dir {
  fs::path path = fs::temp_directory_path() / ("aq_test_evaluation_report_" + std::to_string(::getpid()));
  scratch_dir() { fs::create_directories(path); }
  ~scratch_dir() { fs::remove_all(path); }
};

xml_check well_formed_svg(const std::string& text) {
  const xml_check check = check_xml(text);
  INFO(text.substr(0, 300));
  REQUIRE_MESSAGE(check.ok(), check.error);
  CHECK(check.root == "svg");
  CHECK(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  CHECK(text.find("viewBox=\"") != std::string::npos);
  CHECK(check.elements.count("title") == 1);
  return check;
}

int count(const xml_check& check, const std::string& css_class) {
  const auto found = check.classes.find(css_class);
  return found == check.classes.end() ? 0 : found->second;
}

}  // namespace

TEST_CASE("the strict XML checker accepts good markup and refuses broken markup") {
  CHECK(check_xml("<a x=\"1\" y='2'><b/>t &amp; &#39; &#x3c;<!-- c --></a>").ok());
  CHECK(check_xml("<!DOCTYPE html>\n<html><p class=\"a b\">x</p></html>\n").classes.at("b") == 1);
  CHECK_FALSE(check_xml("<a><b></a></b>").ok());
  CHECK_FALSE(check_xml("<a x=1></a>").ok());
  CHECK_FALSE(check_xml("<a x=\"1\" x=\"2\"></a>").ok());
  CHECK_FALSE(check_xml("<a>&nbsp;</a>").ok());
  CHECK_FALSE(check_xml("<a>x & y</a>").ok());
  CHECK_FALSE(check_xml("<a x=\"<\"></a>").ok());
  CHECK_FALSE(check_xml("<a></a><b></b>").ok());
  CHECK_FALSE(check_xml("<a>").ok());
}

TEST_CASE("svg numbers and scales are fixed and nice") {
  CHECK(svg::number(1.0) == "1");
  CHECK(svg::number(-0.001) == "0");
  CHECK(svg::number(12.345) == "12.35");
  CHECK(svg::number(0.5) == "0.5");
  CHECK_THROWS_AS(svg::number(std::numeric_limits<double>::quiet_NaN()), aq::error);
  CHECK(svg::escape("a<&\"'>b") == "a&lt;&amp;&quot;&#39;&gt;b");

  CHECK(svg::tick_label(1000.0) == "1000");
  CHECK(svg::tick_label(0.001) == "0.001");
  CHECK(svg::tick_label(1e-5) == "1e-05");
  CHECK(svg::tick_label(2.5e6) == "2.5e+06");

  const svg::linear_scale x(4.5, 16.0, 0.0, 100.0, 8);
  CHECK(x.lo() == 4.0);
  CHECK(x.hi() == 16.0);
  std::vector<std::string> labels;
  for (const svg::tick& t : x.ticks()) labels.push_back(t.label);
  CHECK(labels == std::vector<std::string>{"4", "6", "8", "10", "12", "14", "16"});
  CHECK(x(4.0) == doctest::Approx(0.0));
  CHECK(x(16.0) == doctest::Approx(100.0));

  // symlog: 0 at the bottom pixel, the smallest positive value one decade-step up, top at a decade.
  const svg::symlog_scale y({0.0, 0.002, 120.0}, 400.0, 0.0);
  CHECK(y.threshold() == doctest::Approx(0.001));
  CHECK(y(0.0) == doctest::Approx(400.0));
  CHECK(y(-1.0) == doctest::Approx(400.0));
  CHECK(y(0.002) < 400.0);
  CHECK(y(120.0) < y(1.0));  // pixels grow downwards
  CHECK(y(120.0) >= 0.0);
  const std::vector<svg::tick> ticks = y.ticks();
  CHECK(ticks.front().label == "0");
  CHECK(ticks[1].label == "0.001");
  CHECK(ticks.back().value == doctest::Approx(1000.0));
}

TEST_CASE("evaluation.json holds every mix, the data, spearman and the candidate scores") {
  const report_model model = aq::test::synthetic_report_model(num_groups);
  evaluation_report evaluation = aq::test::synthetic_evaluation(num_groups);
  const std::string text = render_evaluation_json(model, evaluation);
  CHECK(text.back() == '\n');

  simdjson::dom::parser parser;
  const simdjson::padded_string padded(text);
  simdjson::dom::object root = parser.parse(padded).get_object().value();
  CHECK(std::string_view(root["schema"].get_string().value()) == "aq.evaluation/v1");
  CHECK(std::string_view(root["scheme"]["name"].get_string().value()) == aq::test::tricky_scheme);
  CHECK(root["budget_bits"].get_double().value() == 6.0);
  CHECK(root["effective_bits"].get_double().value() == 5.875);
  simdjson::dom::object data = root["data"].get_object().value();
  CHECK(std::string_view(data["source"].get_string().value()) == "held_out<&>.jsonl");
  CHECK(data["first_sample"].get_int64().value() == 256);
  CHECK(data["samples"].get_int64().value() == 64);
  CHECK(data["skipped_calibration"].get_int64().value() == 3);
  CHECK(data["tokens"].get_int64().value() == 8192);
  CHECK(root["spearman_score_kl"].get_double().value() == *evaluation.spearman_score_kl);

  simdjson::dom::array mixes = root["mixes"].get_array().value();
  REQUIRE(mixes.size() == num_mixes);
  std::size_t i = 0;
  for (simdjson::dom::element element : mixes) {
    const mix_evaluation& want = evaluation.mixes[i++];
    CAPTURE(want.name);
    CHECK(std::string_view(element["name"].get_string().value()) == want.name);
    CHECK(std::string_view(element["kind"].get_string().value()) == to_string(want.kind));
    CHECK(element["effective_bits"].get_double().value() == want.effective_bits);
    CHECK(element["predicted_score"].get_double().value() == want.predicted_score);
    CHECK(element["mean_kl"].get_double().value() == want.mean_kl);
    CHECK(element["perplexity"].get_double().value() == want.perplexity);
    CHECK(element["top1_agreement"].get_double().value() == want.top1_agreement);
    simdjson::dom::object recipes = element["recipes"].get_object().value();
    CHECK(recipes.size() == num_groups);
    for (int g = 0; g < num_groups; ++g) {
      const std::string group = aq::test::synthetic_group_name(g);
      CHECK(std::string_view(recipes[group].get_string().value()) == want.recipes[static_cast<std::size_t>(g)]);
    }
  }

  CHECK(root["pareto_front"].get_array().value().size() == num_front_points);
  simdjson::dom::array groups = root["groups"].get_array().value();
  REQUIRE(groups.size() == num_groups);
  std::size_t g = 0;
  for (simdjson::dom::element group : groups) {
    const group_sensitivity& want = model.groups[g];
    CHECK(std::string_view(group["name"].get_string().value()) == want.name);
    CHECK(std::string_view(group["chosen"].get_string().value()) == (*model.chosen_recipes)[g].format);
    simdjson::dom::array candidates = group["candidates"].get_array().value();
    REQUIRE(candidates.size() == num_recipes);
    std::size_t r = 0;
    for (simdjson::dom::element c : candidates) {
      CHECK(std::string_view(c["recipe"].get_string().value()) == want.candidates[r].format);
      CHECK(c["score"].get_double().value() == want.candidates[r].score);
      CHECK(c["cost"].get_double().value() == want.candidates[r].cost);
      CHECK(c["effective_bits"].get_double().value() == *want.candidates[r].effective_bits);
      ++r;
    }
    ++g;
  }

  SUBCASE("an absent correlation is null") {
    evaluation.spearman_score_kl.reset();
    const simdjson::padded_string again(render_evaluation_json(model, evaluation));
    simdjson::dom::element doc = parser.parse(again).value();
    CHECK(doc["spearman_score_kl"].is_null());
  }
}

TEST_CASE("every plot is well-formed SVG with one mark per point, cell and bar") {
  const report_model model = aq::test::synthetic_report_model(num_groups);
  const evaluation_report evaluation = aq::test::synthetic_evaluation(num_groups);

  const xml_check pareto = well_formed_svg(render_pareto_svg(model, evaluation));
  CHECK(count(pareto, "mix-point") == num_mixes);
  CHECK(count(pareto, "mix-kl-point") == num_mixes);
  CHECK(count(pareto, "front-point") == num_front_points);
  CHECK(count(pareto, "front-line") == 1);
  CHECK(count(pareto, "chosen-marker") == 2);  // its predicted and its measured marker
  CHECK(count(pareto, "mix-label") == 5);      // unquantized, three uniform, chosen
  CHECK(count(pareto, "legend") == 1);
  CHECK(count(pareto, "budget-line") == 1);

  const xml_check heatmap = well_formed_svg(render_score_heatmap_svg(model, evaluation));
  CHECK(count(heatmap, "cell") == num_groups * num_recipes);
  CHECK(count(heatmap, "chosen-cell") == num_groups);
  CHECK(count(heatmap, "colour-bar") == 1);
  CHECK(heatmap.elements.at("title") == 1 + num_groups * num_recipes);  // the plot's, then one per cell

  const xml_check bits = well_formed_svg(render_bits_per_layer_svg(model, evaluation));
  CHECK(count(bits, "bit-bar") == num_groups);
  CHECK(count(bits, "budget-line") == 1);
  CHECK(count(bits, "reached-line") == 1);
}

TEST_CASE("the heatmap of a model with hundreds of groups stays bounded and labels some groups") {
  constexpr int many = 260;
  const report_model model = aq::test::synthetic_report_model(many);
  const evaluation_report evaluation = aq::test::synthetic_evaluation(many);
  const std::string heatmap = render_score_heatmap_svg(model, evaluation);
  const xml_check check = well_formed_svg(heatmap);
  CHECK(count(check, "cell") == many * num_recipes);
  CHECK(count(check, "chosen-cell") == many);
  // Cells shrink to 1000 px of groups in all: 210 (recipe names) + 1000 + 100 (colour bar).
  CHECK(heatmap.find("width=\"1310\"") != std::string::npos);
  const xml_check bits = well_formed_svg(render_bits_per_layer_svg(model, evaluation));
  CHECK(count(bits, "bit-bar") == many);
  CHECK(heatmap.find("one label per 4 groups") != std::string::npos);
}

TEST_CASE("a report without a search result, Pareto front or mixes still renders well-formed files") {
  SUBCASE("no chosen_recipes: the chosen mix's recipes are outlined") {
    report_model model = aq::test::synthetic_report_model(num_groups);
    model.chosen_recipes.reset();
    model.pareto_front.reset();
    const evaluation_report evaluation = aq::test::synthetic_evaluation(num_groups);
    const xml_check heatmap = well_formed_svg(render_score_heatmap_svg(model, evaluation));
    CHECK(count(heatmap, "chosen-cell") == num_groups);
    const xml_check pareto = well_formed_svg(render_pareto_svg(model, evaluation));
    CHECK(count(pareto, "front-point") == 0);
    CHECK(count(pareto, "mix-point") == num_mixes);
    CHECK(count(well_formed_svg(render_bits_per_layer_svg(model, evaluation)), "bit-bar") == num_groups);
  }
  SUBCASE("a chosen mix naming a recipe no group offers") {
    report_model model = aq::test::synthetic_report_model(num_groups);
    model.chosen_recipes.reset();
    evaluation_report evaluation = aq::test::synthetic_evaluation(num_groups);
    for (mix_evaluation& m : evaluation.mixes) {
      if (m.kind == mix_kind::chosen) m.recipes[5] = "W4A8_AWQ_BETA_CFG(effective-bits: 4.25)";
    }
    const std::string bits = render_bits_per_layer_svg(model, evaluation);
    CHECK(count(well_formed_svg(bits), "bit-bar") == num_groups);
    CHECK(bits.find("W4A8_AWQ_BETA_CFG(effective-bits: 4.25)\n4.25 bits") != std::string::npos);
    CHECK(count(well_formed_svg(render_score_heatmap_svg(model, evaluation)), "chosen-cell") == num_groups - 1);
    CHECK(check_xml(render_html_report(model, evaluation)).ok());
  }
  SUBCASE("no groups and no mixes") {
    report_model model;
    model.scheme.name = "empty";
    const evaluation_report evaluation;
    CHECK(count(well_formed_svg(render_pareto_svg(model, evaluation)), "mix-point") == 0);
    CHECK(count(well_formed_svg(render_score_heatmap_svg(model, evaluation)), "cell") == 0);
    CHECK(count(well_formed_svg(render_bits_per_layer_svg(model, evaluation)), "bit-bar") == 0);
    CHECK(check_xml(render_html_report(model, evaluation)).ok());
    const simdjson::padded_string json(render_evaluation_json(model, evaluation));
    simdjson::dom::parser parser;
    CHECK(parser.parse(json).value()["mixes"].get_array().value().size() == 0);
  }
}

TEST_CASE("report.html is self-contained, well-formed, and holds the tables and the three plots") {
  const report_model model = aq::test::synthetic_report_model(num_groups);
  const evaluation_report evaluation = aq::test::synthetic_evaluation(num_groups);
  const std::string html = render_html_report(model, evaluation);
  const xml_check check = check_xml(html);
  REQUIRE_MESSAGE(check.ok(), check.error);
  CHECK(check.root == "html");
  CHECK(count(check, "mix-row") == num_mixes);
  CHECK(count(check, "layer-row") == num_groups);
  CHECK(count(check, "spearman") == 1);
  CHECK(html.find("0.964") != std::string::npos);
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("src=") == std::string::npos);
  CHECK(html.find("href=") == std::string::npos);
  CHECK(html.find("@import") == std::string::npos);
  // The one URL is the SVG namespace name, which no browser fetches.
  std::size_t urls = 0;
  for (std::size_t at = html.find("://"); at != std::string::npos; at = html.find("://", at + 3)) {
    CHECK(html.substr(at - 4, 27) == "http://www.w3.org/2000/svg\"");
    ++urls;
  }
  CHECK(urls == 3);

  const std::vector<std::string> svgs = aq::test::extract_svgs(html);
  REQUIRE(svgs.size() == 3);
  CHECK(svgs[0] + "\n" == render_pareto_svg(model, evaluation));
  CHECK(svgs[1] + "\n" == render_score_heatmap_svg(model, evaluation));
  CHECK(svgs[2] + "\n" == render_bits_per_layer_svg(model, evaluation));
  for (const std::string& svg : svgs) well_formed_svg(svg);
}

TEST_CASE("names with < & \" ' are escaped in every text file") {
  const report_model model = aq::test::synthetic_report_model(num_groups);
  const evaluation_report evaluation = aq::test::synthetic_evaluation(num_groups);
  const std::string raw = "attn<&\"'>";
  const std::string escaped = "attn&lt;&amp;&quot;&#39;&gt;";
  for (const std::string& markup :
       {render_html_report(model, evaluation), render_score_heatmap_svg(model, evaluation),
        render_bits_per_layer_svg(model, evaluation)}) {
    CHECK(markup.find(raw) == std::string::npos);
    CHECK(markup.find(escaped) != std::string::npos);
  }
  const std::string html = render_html_report(model, evaluation);
  CHECK(html.find("mix&lt;&amp;&quot;&#39;&gt;") != std::string::npos);  // the scheme
  CHECK(html.find("held_out&lt;&amp;&gt;.jsonl") != std::string::npos);  // the data source

  const std::string md = render_evaluation_markdown(model, evaluation);
  CHECK(md.find("mix&lt;&amp;\"'&gt;") != std::string::npos);
  CHECK(md.find("mix<") == std::string::npos);
  CHECK(markdown_cell("a|b_c") == "a\\|b\\_c");

  const std::string json = render_evaluation_json(model, evaluation);
  CHECK(json.find("attn<&\\\"'>") != std::string::npos);  // JSON escapes only the quote
}

TEST_CASE("evaluation.md has the table and links the three SVG files") {
  const report_model model = aq::test::synthetic_report_model(num_groups);
  const evaluation_report evaluation = aq::test::synthetic_evaluation(num_groups);
  const std::string md = render_evaluation_markdown(model, evaluation);
  CHECK(md.find("| mix | kind | effective bits | predicted score | mean KL (nats) | perplexity | top-1 agreement |") !=
        std::string::npos);
  int rows = 0;
  for (std::size_t at = md.find("\n| "); at != std::string::npos; at = md.find("\n| ", at + 1)) ++rows;
  CHECK(rows == 2 + num_mixes);  // header, rule and one row per mix
  CHECK(md.find("| chosen | chosen | 5.875 | 1.700e+00 | 3.100e-02 |") != std::string::npos);
  for (const std::string_view svg : {pareto_svg_filename, score_heatmap_svg_filename, bits_per_layer_svg_filename}) {
    CHECK(md.find("](" + std::string(svg) + ")") != std::string::npos);
  }
  CHECK(md.find("Spearman rank correlation of predicted score and measured mean KL: 0.964") != std::string::npos);
}

TEST_CASE("rendering twice gives identical bytes") {
  const report_model model = aq::test::synthetic_report_model(num_groups);
  const evaluation_report evaluation = aq::test::synthetic_evaluation(num_groups);
  CHECK(render_evaluation_json(model, evaluation) == render_evaluation_json(model, evaluation));
  CHECK(render_evaluation_markdown(model, evaluation) == render_evaluation_markdown(model, evaluation));
  CHECK(render_html_report(model, evaluation) == render_html_report(model, evaluation));
  CHECK(render_pareto_svg(model, evaluation) == render_pareto_svg(model, evaluation));
  CHECK(render_score_heatmap_svg(model, evaluation) == render_score_heatmap_svg(model, evaluation));
  CHECK(render_bits_per_layer_svg(model, evaluation) == render_bits_per_layer_svg(model, evaluation));
}

TEST_CASE("write_evaluation_reports writes the six files, each equal to its renderer") {
  const report_model model = aq::test::synthetic_report_model(num_groups);
  const evaluation_report evaluation = aq::test::synthetic_evaluation(num_groups);
  const scratch_dir dir;
  write_evaluation_reports(dir.path, model, evaluation);
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.path)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"bits_per_layer.svg", "evaluation.json", "evaluation.md", "pareto.svg",
                                          "report.html", "scores_heatmap.svg"});
  for (const std::string& name : names) CHECK(is_evaluation_file(name));
  CHECK_FALSE(is_evaluation_file("per-layer-sensitivity.json"));
  CHECK_FALSE(is_evaluation_file("report.htm"));
  CHECK(read_text(dir.path / evaluation_json_filename) == render_evaluation_json(model, evaluation));
  CHECK(read_text(dir.path / evaluation_md_filename) == render_evaluation_markdown(model, evaluation));
  CHECK(read_text(dir.path / html_report_filename) == render_html_report(model, evaluation));
  CHECK(read_text(dir.path / pareto_svg_filename) == render_pareto_svg(model, evaluation));
  CHECK(read_text(dir.path / score_heatmap_svg_filename) == render_score_heatmap_svg(model, evaluation));
  CHECK(read_text(dir.path / bits_per_layer_svg_filename) == render_bits_per_layer_svg(model, evaluation));
}

TEST_CASE("validation refuses non-finite numbers and mismatched mixes, and then writes nothing") {
  const report_model good_model = aq::test::synthetic_report_model(num_groups);
  const evaluation_report good = aq::test::synthetic_evaluation(num_groups);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();

  const auto refused = [](const report_model& model, const evaluation_report& evaluation) {
    CHECK_THROWS_AS(render_evaluation_json(model, evaluation), aq::error);
    CHECK_THROWS_AS(render_html_report(model, evaluation), aq::error);
    CHECK_THROWS_AS(render_evaluation_markdown(model, evaluation), aq::error);
    const scratch_dir dir;
    CHECK_THROWS_AS(write_evaluation_reports(dir.path, model, evaluation), aq::error);
    CHECK(fs::is_empty(dir.path));
  };

  SUBCASE("a NaN mean KL") {
    evaluation_report bad = good;
    bad.mixes[4].mean_kl = nan;
    refused(good_model, bad);
  }
  SUBCASE("an infinite perplexity") {
    evaluation_report bad = good;
    bad.mixes[2].perplexity = inf;
    refused(good_model, bad);
  }
  SUBCASE("a NaN correlation") {
    evaluation_report bad = good;
    bad.spearman_score_kl = nan;
    refused(good_model, bad);
  }
  SUBCASE("a mix with one recipe too few") {
    evaluation_report bad = good;
    bad.mixes[7].recipes.pop_back();
    refused(good_model, bad);
  }
  SUBCASE("an infinite candidate score") {
    report_model bad = good_model;
    bad.groups[3].candidates[2].score = inf;
    refused(bad, good);
  }
  SUBCASE("a NaN Pareto point") {
    report_model bad = good_model;
    (*bad.pareto_front)[2].score = nan;
    refused(bad, good);
  }
}

}  // namespace test_evaluation_report
