// The evaluation stage's output files and the one call that writes them all. Both inputs are
// validated before any file is rendered or written, and each file is replaced atomically, so a
// refused report leaves the folder as it was.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include "aq/core/atomic_file.hpp"
#include "aq/report/evaluation_inputs.hpp"
#include "aq/report/evaluation_json.hpp"
#include "aq/report/evaluation_markdown.hpp"
#include "aq/report/evaluation_model.hpp"
#include "aq/report/html_report.hpp"
#include "aq/report/plots/bits_per_layer_plot.hpp"
#include "aq/report/plots/pareto_plot.hpp"
#include "aq/report/plots/score_heatmap.hpp"
#include "aq/report/report_model.hpp"

namespace aq::io {

inline constexpr std::string_view evaluation_json_filename = "evaluation.json";
inline constexpr std::string_view evaluation_md_filename = "evaluation.md";
inline constexpr std::string_view html_report_filename = "report.html";
inline constexpr std::string_view pareto_svg_filename = "pareto.svg";
inline constexpr std::string_view score_heatmap_svg_filename = "scores_heatmap.svg";
inline constexpr std::string_view bits_per_layer_svg_filename = "bits_per_layer.svg";

inline constexpr std::array<std::string_view, 6> evaluation_filenames = {
    evaluation_json_filename,   evaluation_md_filename,     html_report_filename,
    pareto_svg_filename,        score_heatmap_svg_filename, bits_per_layer_svg_filename};

inline bool is_evaluation_file(std::string_view name) {
  for (const std::string_view known : evaluation_filenames) {
    if (name == known) return true;
  }
  return false;
}

// Renders every file first (so a rendering error also writes nothing), then writes each atomically.
inline void write_evaluation_reports(const std::filesystem::path& dir, const report_model& model,
                                     const evaluation_report& evaluation) {
  validate_evaluation_inputs(model, evaluation);
  const std::array<std::pair<std::string_view, std::string>, 6> files = {{
      {evaluation_json_filename, render_evaluation_json(model, evaluation)},
      {evaluation_md_filename, render_evaluation_markdown(model, evaluation)},
      {html_report_filename, render_html_report(model, evaluation)},
      {pareto_svg_filename, render_pareto_svg(model, evaluation)},
      {score_heatmap_svg_filename, render_score_heatmap_svg(model, evaluation)},
      {bits_per_layer_svg_filename, render_bits_per_layer_svg(model, evaluation)},
  }};
  for (const auto& [name, bytes] : files) write_file_atomic(dir / name, bytes);
}

}  // namespace aq::io
