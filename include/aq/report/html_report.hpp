// report.html: one self-contained page a person opens in a browser to judge a run: the scheme,
// budget and held-out data, the evaluation table, the three plots (inline SVG), the Spearman
// correlation of predicted score and measured KL, and a per-layer table with every candidate's
// score. No scripts and no external resources; the markup is also well-formed XML.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aq/report/evaluation_inputs.hpp"
#include "aq/report/evaluation_model.hpp"
#include "aq/report/evaluation_table.hpp"
#include "aq/report/plots/bits_per_layer_plot.hpp"
#include "aq/report/plots/pareto_plot.hpp"
#include "aq/report/plots/score_heatmap.hpp"
#include "aq/report/python_float.hpp"
#include "aq/report/recipe_grid.hpp"
#include "aq/report/report_model.hpp"
#include "aq/report/sensitivity_report.hpp"
#include "aq/report/svg/svg_writer.hpp"

namespace aq::io {

namespace detail {

inline constexpr std::string_view html_style = R"(
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f2f2f2; } td.text, th.text { text-align: left; }
tr.chosen td { background: #fff3cd; font-weight: bold; }
td.chosen { background: #fde2e2; font-weight: bold; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dl.facts dt { font-weight: bold; } dl.facts dd { margin: 0; }
figure { margin: 16px 0; } figure svg { max-width: 100%; height: auto; } figcaption { font-size: 13px; color: #555; }
)";

inline std::string html_element(std::string_view tag, std::string_view text, std::string_view css_class = {}) {
  std::string open = "<" + std::string(tag);
  if (!css_class.empty()) open += " class=\"" + svg::escape(css_class) + "\"";
  return open + ">" + svg::escape(text) + "</" + std::string(tag) + ">";
}

inline std::string html_facts(const report_model& model, const evaluation_report& evaluation) {
  const evaluation_data_info& d = evaluation.data;
  std::vector<std::pair<std::string, std::string>> facts{
      {"scheme", model.scheme.name},
      {"budget", python_float_repr(model.scheme.auto_quantize_bits) + " effective bits"},
      {"effective bits reached", python_float_repr(model.autoquant_state.effective_bits)},
      {"summed score of the selection", python_format_e(model.autoquant_state.score, 3)},
      {"held-out data", d.source},
      {"samples", std::to_string(d.samples) + " from sample " + std::to_string(d.first_sample) + " (" +
                      std::to_string(d.skipped_calibration) + " skipped: in the calibration set)"},
      {"tokens", std::to_string(d.tokens)},
  };
  if (model.model_id) facts.insert(facts.begin() + 1, {"model", *model.model_id});
  if (model.dataset && model.dataset->name) facts.push_back({"calibration data", *model.dataset->name});
  std::string out = "<dl class=\"facts\">\n";
  for (const auto& [term, value] : facts) out += html_element("dt", term) + html_element("dd", value) + "\n";
  return out + "</dl>\n";
}

inline std::string html_evaluation_table(const evaluation_report& evaluation) {
  std::string out = "<table class=\"evaluation\">\n<thead><tr>";
  for (std::size_t i = 0; i < evaluation_table_header.size(); ++i) {
    out += html_element("th", evaluation_table_header[i], i < 2 ? "text" : "");
  }
  out += "</tr></thead>\n<tbody>\n";
  for (const mix_evaluation& mix : evaluation.mixes) {
    out += mix.kind == mix_kind::chosen ? "<tr class=\"mix-row chosen\">" : "<tr class=\"mix-row\">";
    const auto cells = evaluation_table_row(mix);
    for (std::size_t i = 0; i < cells.size(); ++i) out += html_element("td", cells[i], i < 2 ? "text" : "");
    out += "</tr>\n";
  }
  return out + "</tbody>\n</table>\n";
}

inline std::string html_layer_table(const report_model& model, const evaluation_report& evaluation) {
  const std::vector<std::string> recipes = recipe_columns(model);
  const std::vector<std::optional<std::string>> chosen = chosen_formats(model, evaluation);
  std::string out = "<table class=\"layers\">\n<thead><tr>" + html_element("th", "group", "text") +
                    html_element("th", "chosen recipe", "text") + html_element("th", "bits");
  for (const std::string& r : recipes) out += html_element("th", "score " + recipe_short_name(r));
  out += "</tr></thead>\n<tbody>\n";
  for (std::size_t g = 0; g < model.groups.size(); ++g) {
    const group_sensitivity& group = model.groups[g];
    const candidate_stat* pick = chosen[g] ? find_candidate(group, *chosen[g]) : nullptr;
    std::optional<double> bits = pick ? candidate_bits(*pick) : std::nullopt;
    if (!bits && chosen[g]) bits = effective_bits_of(*chosen[g]);
    out += "<tr class=\"layer-row\">" + html_element("td", layer_display_name(group.name), "text") +
           html_element("td", chosen[g] ? recipe_short_name(*chosen[g]) : "-", "text") +
           html_element("td", bits ? python_float_repr(*bits) : "-");
    for (const std::string& r : recipes) {
      const candidate_stat* c = find_candidate(group, r);
      out += html_element("td", c ? python_format_e(c->score, 3) : "-", c != nullptr && c == pick ? "chosen" : "");
    }
    out += "</tr>\n";
  }
  return out + "</tbody>\n</table>\n";
}

inline std::string html_figure(const std::string& svg_markup, std::string_view caption) {
  return "<figure>\n" + svg_markup + html_element("figcaption", caption) + "\n</figure>\n";
}

}  // namespace detail

inline std::string render_html_report(const report_model& model, const evaluation_report& evaluation) {
  validate_evaluation_inputs(model, evaluation);
  const std::string title = "aq evaluation: " + model.scheme.name;
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n" +
                     detail::html_element("title", title) + "\n<style>" + std::string(detail::html_style) +
                     "</style>\n</head>\n<body>\n" + detail::html_element("h1", title) + "\n";
  html += detail::html_facts(model, evaluation);
  html += "<h2>Evaluated mixes</h2>\n" + detail::html_evaluation_table(evaluation);
  html += "<p class=\"spearman\">Spearman rank correlation of predicted score and measured mean KL " +
          std::string("(quantized mixes): <strong>") + svg::escape(spearman_text(evaluation)) + "</strong></p>\n";
  html += "<h2>Plots</h2>\n";
  html += detail::html_figure(render_pareto_svg(model, evaluation),
                              "Predicted score (left axis) and measured mean KL (right axis) of every evaluated mix "
                              "over its effective bits; grey: the search's Pareto front; ringed: the chosen mix.");
  html += detail::html_figure(render_score_heatmap_svg(model, evaluation),
                              "Score of every recipe (rows) for every layer group (columns, depth order), log colour "
                              "scale; the chosen recipe of each group is outlined in red. Hover a cell for its numbers.");
  html += detail::html_figure(render_bits_per_layer_svg(model, evaluation),
                              "Effective bits of each group's chosen recipe in depth order; dashed: the budget.");
  html += "<h2>Per-layer scores</h2>\n" + detail::html_layer_table(model, evaluation);
  return html + "</body>\n</html>\n";
}

}  // namespace aq::io
