// `<scheme>_quant_manifest.json`: ModelOpt's run manifest (scheme, layers, search summary, every
// group's candidate scores and costs, importance ranking), written from an io::report_model and
// read back into one. The last stage of the pipeline; per-layer-sensitivity.* derive from it.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "aq/core/atomic_file.hpp"
#include "aq/io/json_field.hpp"
#include "aq/io/regular_file.hpp"
#include "aq/report/json_writer.hpp"
#include "aq/report/report_model.hpp"

namespace aq::io {

// The effective bits written in a recipe display string, "NAME(effective-bits: 8.0)" -> 8.0;
// nullopt when the marker is absent or the number does not parse. A manifest holds only these
// strings, so reading one back recovers each candidate's bits here.
inline std::optional<double> effective_bits_of(std::string_view format) {
  static constexpr std::string_view marker = "effective-bits:";
  const std::size_t at = format.find(marker);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view number = format.substr(at + marker.size());
  number = number.substr(0, number.find(')'));
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  while (!number.empty() && is_space(number.front())) number.remove_prefix(1);
  while (!number.empty() && is_space(number.back())) number.remove_suffix(1);
  if (!number.empty() && number.front() == '+') number.remove_prefix(1);
  double value = 0.0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (number.empty() || ec != std::errc{} || end != number.data() + number.size()) return std::nullopt;
  return value;
}

// A group's importance: its largest candidate score (0 for a group without candidates).
inline double group_importance(const group_sensitivity& group) {
  const auto most = std::max_element(group.candidates.begin(), group.candidates.end(),
                                     [](const candidate_stat& a, const candidate_stat& b) { return a.score < b.score; });
  return most == group.candidates.end() ? 0.0 : most->score;
}

// Group indices by ascending importance, ties in group order (Python's stable list.sort).
inline std::vector<std::size_t> importance_order(const report_model& model) {
  std::vector<double> importance;
  importance.reserve(model.groups.size());
  for (const group_sensitivity& group : model.groups) importance.push_back(group_importance(group));
  std::vector<std::size_t> order(model.groups.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return importance[a] < importance[b]; });
  return order;
}

inline std::string quant_manifest_filename(const scheme_info& scheme) { return scheme.name + "_quant_manifest.json"; }

namespace detail {

inline void emit_string_list(json_writer& json, const std::vector<std::string>& items) {
  json.begin_array();
  for (const std::string& item : items) json.string(item);
  json.end_array();
}

inline void emit_scheme(json_writer& json, const scheme_info& scheme) {
  json.begin_object();
  json.key("name").string(scheme.name);
  json.key("auto_quantize_bits").number(scheme.auto_quantize_bits);
  json.key("auto_quantize_method").string(scheme.method);
  json.key("auto_quantize_score_size").integer(scheme.score_size);
  json.key("coverage_mode").string(scheme.coverage_mode);
  json.key("coverage_fraction").number(scheme.coverage_fraction);
  json.key("quant_formats");
  emit_string_list(json, scheme.quant_formats);
  json.end_object();
}

inline void emit_model(json_writer& json, const std::optional<std::string>& model_id) {
  json.begin_object();
  if (model_id) json.key("id").string(*model_id);
  json.end_object();
}

inline void emit_autoquant_state(json_writer& json, const autoquant_state_info& state) {
  json.begin_object();
  json.key("keys");
  emit_string_list(json, state.keys);
  json.key("constraints").begin_object().key("effective_bits").number(state.effective_bits).end_object();
  json.key("score").number(state.score);
  json.key("is_satisfied").boolean(state.is_satisfied);
  json.end_object();
}

// dataset_info's fields in file order (text fields first), for the writer and the reader.
template <class T>
using dataset_field = std::pair<std::string_view, std::optional<T> dataset_info::*>;
inline constexpr dataset_field<std::string> dataset_text_fields[] = {
    {"name", &dataset_info::name},
    {"size", &dataset_info::size},
    {"root", &dataset_info::root},
    {"captions_path", &dataset_info::captions_path},
};
inline constexpr dataset_field<std::int64_t> dataset_count_fields[] = {
    {"max_calib_samples", &dataset_info::max_calib_samples},
    {"num_calib_samples", &dataset_info::num_calib_samples},
    {"calib_seq_len", &dataset_info::calib_seq_len},
    {"batch_size", &dataset_info::batch_size},
    {"num_calib_batches", &dataset_info::num_calib_batches},
};

inline void emit_dataset(json_writer& json, const dataset_info& dataset) {
  json.begin_object();
  for (const auto& [key, field] : dataset_text_fields) {
    if (dataset.*field) json.key(key).string(*(dataset.*field));
  }
  for (const auto& [key, field] : dataset_count_fields) {
    if (dataset.*field) json.key(key).integer(*(dataset.*field));
  }
  json.end_object();
}

// aq's fields, written after every ModelOpt field of the manifest and of per-layer-sensitivity.json:
// chosen_recipes (each group as `name` spells it) and pareto_front, each only when present.
template <class Name>
void emit_aq_extensions(json_writer& json, const report_model& model, Name name) {
  if (model.chosen_recipes) {
    json.key("chosen_recipes").begin_object();
    for (const chosen_recipe& pick : *model.chosen_recipes) json.key(name(pick.group)).string(pick.format);
    json.end_object();
  }
  if (!model.pareto_front) return;
  json.key("pareto_front").begin_array();
  for (const pareto_point& point : *model.pareto_front) {
    json.begin_object();
    json.key("effective_bits").number(point.effective_bits);
    json.key("score").number(point.score);
    json.end_object();
  }
  json.end_array();
}

}  // namespace detail

// The manifest's bytes: json.dumps(manifest, indent=2) of ModelOpt's build_quant_manifest dict,
// `dataset` appended when known, then aq's chosen_recipes and pareto_front when present.
inline std::string render_quant_manifest(const report_model& model) {
  validate_report_model(model);
  json_writer json;
  json.begin_object();
  json.key("scheme");
  detail::emit_scheme(json, model.scheme);
  json.key("model");
  detail::emit_model(json, model.model_id);
  json.key("num_quantized_layers").integer(static_cast<std::int64_t>(model.layers.size()));
  json.key("layers").begin_object();
  for (const layer_info& layer : model.layers) {
    json.key(layer.name).begin_object();
    json.key("quantized").boolean(layer.quantized);
    json.key("module_type").string(layer.module_type);
    json.end_object();
  }
  json.end_object();
  json.key("autoquant_state");
  detail::emit_autoquant_state(json, model.autoquant_state);

  const std::vector<std::size_t> order = importance_order(model);
  std::vector<std::int64_t> rank(model.groups.size());
  for (std::size_t r = 0; r < order.size(); ++r) rank[order[r]] = static_cast<std::int64_t>(r + 1);

  json.key("layer_sensitivity").begin_object();
  for (std::size_t g = 0; g < model.groups.size(); ++g) {
    const group_sensitivity& group = model.groups[g];
    json.key(group.name).begin_object();
    json.key("formats").begin_array();
    for (const candidate_stat& c : group.candidates) json.string(c.format);
    json.end_array();
    json.key("scores").begin_array();
    for (const candidate_stat& c : group.candidates) json.number(c.score);
    json.end_array();
    json.key("costs").begin_array();
    for (const candidate_stat& c : group.candidates) json.number(c.cost);
    json.end_array();
    json.key("importance").number(group_importance(group));
    json.key("rank").integer(rank[g]);
    json.end_object();
  }
  json.end_object();

  json.key("sensitivity_ranking").begin_array();
  for (const std::size_t g : order) {
    json.begin_object();
    json.key("name").string(model.groups[g].name);
    json.key("importance").number(group_importance(model.groups[g]));
    json.end_object();
  }
  json.end_array();

  if (model.dataset) {
    json.key("dataset");
    detail::emit_dataset(json, *model.dataset);
  }
  detail::emit_aq_extensions(json, model, [](const std::string& group) -> std::string_view { return group; });
  json.end_object();
  return json.str();
}

// Writes `file` (conventionally dir / quant_manifest_filename(model.scheme)) atomically.
inline void write_quant_manifest(const std::filesystem::path& file, const report_model& model) {
  write_file_atomic(file, render_quant_manifest(model));
}

// Reads a manifest (ModelOpt's or aq's) into a report_model, keeping file order. Derived fields
// (importance, rank, sensitivity_ranking, num_quantized_layers) are recomputed when writing, so
// they are not read; unknown top-level fields are ignored. `source` names the text in errors.
inline report_model parse_quant_manifest(std::string_view json_text, const std::string& source) {
  simdjson::dom::parser parser;
  const json_field root = parse_json_object(parser, json_text, source);
  report_model model;

  const json_field scheme = root["scheme"];
  model.scheme.name = scheme["name"].string();
  model.scheme.auto_quantize_bits = scheme["auto_quantize_bits"].number();
  model.scheme.method = scheme["auto_quantize_method"].string();
  model.scheme.score_size = scheme["auto_quantize_score_size"].integer();
  model.scheme.coverage_mode = scheme["coverage_mode"].string();
  model.scheme.coverage_fraction = scheme["coverage_fraction"].number();
  model.scheme.quant_formats = scheme["quant_formats"].strings();

  if (const auto id = root["model"].find("id")) model.model_id = id->string();

  for (const auto& [name, layer] : root["layers"].members()) {
    model.layers.push_back(
        layer_info{std::string(name), layer["quantized"].boolean(), std::string(layer["module_type"].string())});
  }
  const json_field num_layers = root["num_quantized_layers"];
  if (num_layers.integer() != static_cast<std::int64_t>(model.layers.size())) {
    num_layers.fail("is " + std::to_string(num_layers.integer()) + " but layers holds " +
                    std::to_string(model.layers.size()));
  }

  const json_field state = root["autoquant_state"];
  model.autoquant_state.keys = state["keys"].strings();
  model.autoquant_state.effective_bits = state["constraints"]["effective_bits"].number();
  model.autoquant_state.score = state["score"].number();
  model.autoquant_state.is_satisfied = state["is_satisfied"].boolean();

  for (const auto& [name, entry] : root["layer_sensitivity"].members()) {
    const std::vector<std::string> formats = entry["formats"].strings();
    const std::vector<double> scores = entry["scores"].numbers();
    const std::vector<double> costs = entry["costs"].numbers();
    if (scores.size() != formats.size() || costs.size() != formats.size()) {
      entry.fail("has " + std::to_string(formats.size()) + " formats, " + std::to_string(scores.size()) +
                 " scores and " + std::to_string(costs.size()) + " costs (expected equal counts)");
    }
    group_sensitivity group{std::string(name), {}};
    for (std::size_t i = 0; i < formats.size(); ++i) {
      group.candidates.push_back({formats[i], scores[i], costs[i], effective_bits_of(formats[i])});
    }
    model.groups.push_back(std::move(group));
  }

  if (const auto dataset = root.find("dataset")) {
    dataset_info& info = model.dataset.emplace();
    for (const auto& [key, field] : detail::dataset_text_fields) {
      if (const auto value = dataset->find(key)) info.*field = value->string();
    }
    for (const auto& [key, field] : detail::dataset_count_fields) {
      if (const auto value = dataset->find(key)) info.*field = value->integer();
    }
  }
  if (const auto chosen = root.find("chosen_recipes")) {
    model.chosen_recipes.emplace();
    for (const auto& [name, format] : chosen->members()) {
      model.chosen_recipes->push_back({std::string(name), std::string(format.string())});
    }
  }
  if (const auto front = root.find("pareto_front")) {
    model.pareto_front.emplace();
    for (const json_field& point : front->items()) {
      model.pareto_front->push_back({point["effective_bits"].number(), point["score"].number()});
    }
  }
  return model;
}

inline report_model read_quant_manifest(const std::filesystem::path& file) {
  return parse_quant_manifest(read_regular_file(file), file.string());  // refuses a FIFO or a directory
}

}  // namespace aq::io
