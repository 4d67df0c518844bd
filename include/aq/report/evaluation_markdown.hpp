// evaluation.md: the evaluation table in Markdown, for a pull request or a terminal, with the
// Spearman correlation and the three plots as images (the SVG files next to it).
#pragma once

#include <string>
#include <string_view>

#include "aq/report/evaluation_inputs.hpp"
#include "aq/report/evaluation_model.hpp"
#include "aq/report/evaluation_table.hpp"
#include "aq/report/python_float.hpp"
#include "aq/report/report_model.hpp"

namespace aq::io {

// Text safe inside a Markdown table cell: Markdown punctuation backslash-escaped, '|' too (it
// would end the cell), HTML's specials as entities (renderers pass raw HTML through), no newlines.
inline std::string markdown_cell(std::string_view text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\n':
      case '\r': out += ' '; break;
      case '\\': case '|': case '*': case '_': case '`': case '[': case ']':
        out += '\\';
        out += c;
        break;
      default: out += c;
    }
  }
  return out;
}

inline std::string render_evaluation_markdown(const report_model& model, const evaluation_report& evaluation) {
  validate_evaluation_inputs(model, evaluation);
  std::string md = "# Evaluation (" + markdown_cell(model.scheme.name) + ")\n\n";
  md += "- Budget: " + python_float_repr(model.scheme.auto_quantize_bits) + " effective bits; reached " +
        python_float_repr(model.autoquant_state.effective_bits) + "\n";
  md += "- Held-out data: " + markdown_cell(evaluation.data.source) + ", " + std::to_string(evaluation.data.samples) +
        " samples from sample " + std::to_string(evaluation.data.first_sample) + ", " +
        std::to_string(evaluation.data.tokens) + " tokens (" + std::to_string(evaluation.data.skipped_calibration) +
        " skipped: in the calibration set)\n";
  md += "- Spearman rank correlation of predicted score and measured mean KL: " + spearman_text(evaluation) + "\n\n";

  std::string header = "|", rule = "|";
  for (std::size_t i = 0; i < evaluation_table_header.size(); ++i) {
    header += " " + std::string(evaluation_table_header[i]) + " |";
    rule += i < 2 ? " --- |" : " ---: |";
  }
  md += header + "\n" + rule + "\n";
  for (const mix_evaluation& mix : evaluation.mixes) {
    md += "|";
    for (const std::string& cell : evaluation_table_row(mix)) {
      md += ' ';  // appended piecewise: GCC 12 warns (-Wrestrict, falsely) on " " + std::string here
      md += markdown_cell(cell);
      md += " |";
    }
    md += "\n";
  }
  md += "\n## Plots\n\n";
  md += "Predicted score and measured mean KL over effective bits ([pareto.svg](pareto.svg)):\n\n"
        "![Predicted score and measured mean KL over effective bits](pareto.svg)\n\n";
  md += "Score of every recipe for every layer group ([scores_heatmap.svg](scores_heatmap.svg)):\n\n"
        "![Score heatmap](scores_heatmap.svg)\n\n";
  md += "Effective bits of the chosen recipe per layer group ([bits_per_layer.svg](bits_per_layer.svg)):\n\n"
        "![Bits per layer group](bits_per_layer.svg)\n\n";
  md += "The full per-layer table is in [report.html](report.html); the numbers in "
        "[evaluation.json](evaluation.json).\n";
  return md;
}

}  // namespace aq::io
