// evaluation.json: the closed-loop evaluation as data, standing alone: the scheme and budget, the
// held-out data, every evaluated mix (predicted score next to measured KL, perplexity and top-1
// agreement, and its recipe per group), the rank correlation of prediction and measurement, and
// each group's candidate scores and the Pareto front the plots were drawn from. Bytes are those of
// Python's json.dumps(indent=2), so the file is deterministic. Schema: docs/evaluation.md.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aq/report/evaluation_inputs.hpp"
#include "aq/report/evaluation_model.hpp"
#include "aq/report/json_writer.hpp"
#include "aq/report/quant_manifest.hpp"
#include "aq/report/recipe_grid.hpp"
#include "aq/report/report_model.hpp"
#include "aq/report/sensitivity_report.hpp"

namespace aq::io {

inline constexpr std::string_view evaluation_schema_version = "aq.evaluation/v1";

namespace detail {

inline void emit_evaluation_data(json_writer& json, const evaluation_data_info& data) {
  json.begin_object();
  json.key("source").string(data.source);
  json.key("first_sample").integer(data.first_sample);
  json.key("samples").integer(data.samples);
  json.key("skipped_calibration").integer(data.skipped_calibration);
  json.key("tokens").integer(data.tokens);
  json.end_object();
}

inline void emit_mix(json_writer& json, const report_model& model, const mix_evaluation& mix) {
  json.begin_object();
  json.key("name").string(mix.name);
  json.key("kind").string(to_string(mix.kind));
  json.key("effective_bits").number(mix.effective_bits);
  json.key("predicted_score").number(mix.predicted_score);
  json.key("mean_kl").number(mix.mean_kl);
  json.key("perplexity").number(mix.perplexity);
  json.key("top1_agreement").number(mix.top1_agreement);
  json.key("recipes").begin_object();
  for (std::size_t g = 0; g < model.groups.size(); ++g) json.key(model.groups[g].name).string(mix.recipes[g]);
  json.end_object();
  json.end_object();
}

inline void emit_group(json_writer& json, const group_sensitivity& group, const std::optional<std::string>& chosen) {
  json.begin_object();
  json.key("name").string(group.name);
  json.key("chosen");
  if (chosen) {
    json.string(*chosen);
  } else {
    json.null();
  }
  json.key("candidates").begin_array();
  for (const candidate_stat& c : group.candidates) {
    json.begin_object();
    json.key("recipe").string(c.format);
    json.key("effective_bits");
    if (const std::optional<double> bits = candidate_bits(c)) {
      json.number(*bits);
    } else {
      json.null();
    }
    json.key("score").number(c.score);
    json.key("cost").number(c.cost);
    json.end_object();
  }
  json.end_array();
  json.end_object();
}

}  // namespace detail

inline std::string render_evaluation_json(const report_model& model, const evaluation_report& evaluation) {
  validate_evaluation_inputs(model, evaluation);
  json_writer json;
  json.begin_object();
  json.key("schema").string(evaluation_schema_version);
  json.key("scheme");
  detail::emit_scheme(json, model.scheme);
  json.key("model");
  detail::emit_model(json, model.model_id);
  json.key("budget_bits").number(model.scheme.auto_quantize_bits);
  json.key("effective_bits").number(model.autoquant_state.effective_bits);
  json.key("data");
  detail::emit_evaluation_data(json, evaluation.data);
  json.key("mixes").begin_array();
  for (const mix_evaluation& mix : evaluation.mixes) detail::emit_mix(json, model, mix);
  json.end_array();
  json.key("spearman_score_kl");
  if (evaluation.spearman_score_kl) {
    json.number(*evaluation.spearman_score_kl);
  } else {
    json.null();
  }
  json.key("pareto_front").begin_array();
  for (const pareto_point& p : model.pareto_front.value_or(std::vector<pareto_point>{})) {
    json.begin_object().key("effective_bits").number(p.effective_bits).key("score").number(p.score).end_object();
  }
  json.end_array();
  const std::vector<std::optional<std::string>> chosen = chosen_formats(model, evaluation);
  json.key("groups").begin_array();
  for (std::size_t g = 0; g < model.groups.size(); ++g) detail::emit_group(json, model.groups[g], chosen[g]);
  json.end_array();
  json.end_object();
  return json.str() + "\n";
}

}  // namespace aq::io
