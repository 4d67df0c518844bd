// per-layer-sensitivity.json and per-layer-sensitivity.md: the human-facing views of a run, one
// row per group with its quantized candidates' bits, scores and costs, most sensitive first.
// Written from the same io::report_model as the manifest, byte-compatible with ModelOpt's.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/atomic_file.hpp"
#include "aq/report/json_writer.hpp"
#include "aq/report/python_float.hpp"
#include "aq/report/quant_manifest.hpp"
#include "aq/report/report_model.hpp"

namespace aq::io {

inline constexpr std::string_view sensitivity_json_filename = "per-layer-sensitivity.json";
inline constexpr std::string_view sensitivity_md_filename = "per-layer-sensitivity.md";

// A group's display name: its hparam name with ".quant_recipe" removed (every occurrence,
// as Python's str.replace does).
inline std::string layer_display_name(std::string_view group_name) {
  static constexpr std::string_view suffix = ".quant_recipe";
  std::string out;
  std::size_t start = 0;
  for (std::size_t at = group_name.find(suffix); at != std::string_view::npos; at = group_name.find(suffix, start)) {
    out.append(group_name.substr(start, at - start));
    start = at + suffix.size();
  }
  out.append(group_name.substr(start));
  return out;
}

// A candidate's Num Bits: the number it carries, else the one its display string states.
inline std::optional<double> candidate_bits(const candidate_stat& c) {
  return c.effective_bits ? c.effective_bits : effective_bits_of(c.format);
}

// One table row: the group's quantized candidates (the NONE candidate only when it is the
// group's sole choice, as for disabled groups).
struct sensitivity_row {
  std::string layer;  // display name
  std::vector<const candidate_stat*> candidates;
};

inline bool is_unquantized_format(std::string_view format) { return format.starts_with("NONE("); }

// Rows in group order; groups without candidates have none.
inline std::vector<sensitivity_row> sensitivity_rows(const report_model& model) {
  std::vector<sensitivity_row> rows;
  for (const group_sensitivity& group : model.groups) {
    sensitivity_row row{layer_display_name(group.name), {}};
    for (const candidate_stat& c : group.candidates) {
      if (!is_unquantized_format(c.format)) row.candidates.push_back(&c);
    }
    if (row.candidates.empty()) {
      for (const candidate_stat& c : group.candidates) row.candidates.push_back(&c);
    }
    if (!row.candidates.empty()) rows.push_back(std::move(row));
  }
  return rows;
}

namespace detail {

template <class Key>
void sort_rows_descending(std::vector<sensitivity_row>& rows, Key key) {
  std::stable_sort(rows.begin(), rows.end(),
                   [&](const sensitivity_row& a, const sensitivity_row& b) { return key(a) > key(b); });
}

}  // namespace detail

// per-layer-sensitivity.json: scheme, model, dataset (when known), autoquant_state, then one row
// per group {layer, num_bits, sensitivity, size_cost} of its first quantized candidate, sorted by
// sensitivity descending (stable); then aq's chosen_recipes (by display name) and pareto_front.
inline std::string render_sensitivity_json(const report_model& model) {
  validate_report_model(model);
  std::vector<sensitivity_row> rows = sensitivity_rows(model);
  detail::sort_rows_descending(rows, [](const sensitivity_row& r) { return r.candidates.front()->score; });

  json_writer json;
  json.begin_object();
  json.key("scheme");
  detail::emit_scheme(json, model.scheme);
  json.key("model");
  detail::emit_model(json, model.model_id);
  if (model.dataset) {
    json.key("dataset");
    detail::emit_dataset(json, *model.dataset);
  }
  json.key("autoquant_state");
  detail::emit_autoquant_state(json, model.autoquant_state);
  json.key("layer_sensitivity").begin_array();
  for (const sensitivity_row& row : rows) {
    // num_bits comes from the first candidate that has bits.
    std::optional<double> bits;
    for (const candidate_stat* c : row.candidates) {
      if (!bits) bits = candidate_bits(*c);
    }
    json.begin_object();
    json.key("layer").string(row.layer);
    json.key("num_bits");
    if (bits) {
      json.number(*bits);
    } else {
      json.null();
    }
    json.key("sensitivity").number(row.candidates.front()->score);
    json.key("size_cost").number(row.candidates.front()->cost);
    json.end_object();
  }
  json.end_array();
  detail::emit_aq_extensions(json, model, layer_display_name);
  json.end_object();
  return json.str();
}

// per-layer-sensitivity.md, the layout of ModelOpt's mdutils writer line for line: title with
// '=' underline, scheme/model, optional dataset block, search summary, legend, then a table of
// every group's quantized candidates sorted by their largest score, descending (stable). aq's
// chosen recipes and Pareto front follow as extra sections only when present.
inline std::string render_sensitivity_md(const report_model& model) {
  validate_report_model(model);
  std::string md;
  const auto line = [&](std::string_view text) {
    md += '\n';
    md += text;
  };
  const std::string title = "AutoQuant Layer Sensitivity (" + model.scheme.name + ")";
  md += "\n" + title + "\n" + std::string(title.size(), '=') + "\n";
  line("");
  line("**Scheme:** `" + model.scheme.name + "`");
  if (model.model_id) {
    line("");
    line("**Model:** `" + *model.model_id + "`");
  }

  if (model.dataset) {
    const dataset_info& d = *model.dataset;
    const bool any = d.name || d.size || d.root || d.captions_path || d.max_calib_samples || d.num_calib_samples ||
                     d.calib_seq_len || d.batch_size || d.num_calib_batches;
    if (any) {  // Python skips the block for an empty dict
      const auto count = [](const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : std::string("None"); };
      md += "\n## Dataset\n";
      line("");
      if (d.name) line("- **Name:** `" + *d.name + "`");
      if (d.size) line("- **Size:** `" + *d.size + "`");
      if (d.captions_path) line("- **Captions path:** `" + *d.captions_path + "`");
      if (d.root) line("- **Root:** `" + *d.root + "`");
      if (d.max_calib_samples || d.num_calib_samples) {
        line("- **Calibration samples:** `" + count(d.num_calib_samples) + "` / `" + count(d.max_calib_samples) +
             "` (used / max)");
      }
      if (d.calib_seq_len) line("- **Calibration seq len:** `" + count(d.calib_seq_len) + "`");
      if (d.batch_size) line("- **Batch size:** `" + count(d.batch_size) + "`");
      if (d.num_calib_batches) line("- **Calibration batches:** `" + count(d.num_calib_batches) + "`");
    }
  }

  line("");
  line("**Effective bits (from search):** `" + python_format_f(model.autoquant_state.effective_bits, 4) + "`");
  line("");
  line("**Total AutoQuant score:** `" + python_format_e(model.autoquant_state.score, 6) + "`");
  line("");
  line(std::string("**Constraint satisfied:** `") + (model.autoquant_state.is_satisfied ? "True" : "False") + "`");

  md += "\n## Per-layer sensitivity table\n";
  line("");
  line("- **Layer**: Name of the quant_recipe handle for a group of quantizable modules (e.g., attention or MLP "
       "projections).");
  line("- **Num Bits**: Effective number of bits allocated for the quantized recipe(s) considered at this layer.");
  line("- **Sensitivity**: AutoQuant sensitivity score for the quantized recipe(s). Higher values indicate that "
       "quantizing this layer is more harmful to model quality.");
  line("- **Size Cost**: Approximate compressed weight size contribution of the layer under the corresponding "
       "recipe(s). Higher values indicate more memory usage.");
  line("");
  line("Note: In the JSON manifest, layer keys may end with `.quant_recipe` (e.g., "
       "`language_model.layers.0.mlp.gate_proj.quant_recipe`). This suffix is added by ModelOpt to represent the "
       "AutoQuant hyperparameter attached to that module. In this table we strip the `.quant_recipe` suffix for "
       "readability; the underlying module path is the part before that suffix.");
  line("");

  std::vector<sensitivity_row> rows = sensitivity_rows(model);
  detail::sort_rows_descending(rows, [](const sensitivity_row& r) {
    double largest = r.candidates.front()->score;
    for (const candidate_stat* c : r.candidates) largest = std::max(largest, c->score);
    return largest;
  });
  const auto joined = [](const sensitivity_row& row, auto cell) {
    std::string out;
    for (const candidate_stat* c : row.candidates) {
      const std::optional<std::string> text = cell(*c);
      if (!text) continue;
      if (!out.empty()) out += ", ";
      out += *text;
    }
    return out;
  };
  md += "\n|Layer|Num Bits|Sensitivity|Size Cost|\n| :--- | :--- | :--- | :--- |\n";
  for (const sensitivity_row& row : rows) {
    md += "|" + row.layer + "|";
    md += joined(row, [](const candidate_stat& c) -> std::optional<std::string> {
      const std::optional<double> bits = candidate_bits(c);
      return bits ? std::optional<std::string>(python_format_f(*bits, 1)) : std::nullopt;
    });
    md += "|";
    md += joined(row, [](const candidate_stat& c) -> std::optional<std::string> { return python_format_e(c.score, 3); });
    md += "|";
    md += joined(row, [](const candidate_stat& c) -> std::optional<std::string> { return python_format_e(c.cost, 3); });
    md += "|\n";
  }

  if (model.chosen_recipes) {
    md += "\n## Chosen recipes\n\n|Layer|Recipe|\n| :--- | :--- |\n";
    for (const chosen_recipe& pick : *model.chosen_recipes) {
      md += "|" + layer_display_name(pick.group) + "|" + pick.format + "|\n";
    }
  }
  if (model.pareto_front) {
    md += "\n## Pareto front\n\n|Effective Bits|Total Score|\n| :--- | :--- |\n";
    for (const pareto_point& point : *model.pareto_front) {
      md += "|" + python_format_f(point.effective_bits, 4) + "|" + python_format_e(point.score, 6) + "|\n";
    }
  }
  return md;
}

// Writes per-layer-sensitivity.json and per-layer-sensitivity.md into `directory`, each atomically.
inline void write_sensitivity_reports(const std::filesystem::path& directory, const report_model& model) {
  const std::string json = render_sensitivity_json(model);
  const std::string md = render_sensitivity_md(model);
  write_file_atomic(directory / sensitivity_json_filename, json);
  write_file_atomic(directory / sensitivity_md_filename, md);
}

}  // namespace aq::io
