// The plain data every report is written from: per-group candidate scores and costs, the scheme,
// the search result and the calibration dataset. The search stage fills it; the writers in
// report/quant_manifest.hpp and report/sensitivity_report.hpp turn it into files and know nothing else.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "aq/core/error.hpp"

namespace aq::io {

// One candidate recipe of a group, as ModelOpt's candidate_stats holds it.
struct candidate_stat {
  std::string format;  // display string, e.g. "INT8_DEFAULT_CFG(effective-bits: 8.0)"
  double score = 0.0;  // sensitivity of the model to quantizing this group with this recipe
  double cost = 0.0;   // weight numel x effective bits / 16
  // The recipe's effective bits (the sensitivity tables' Num Bits) as a number. A builder that
  // leaves it unset gets the bits written in `format` (io::candidate_bits); nullopt in both: no bits.
  std::optional<double> effective_bits = std::nullopt;
};

// A group of modules sharing one recipe, named by its hparam handle
// ("model.language_model.layers.0.self_attn.q_proj.quant_recipe"); candidates in search order.
struct group_sensitivity {
  std::string name;
  std::vector<candidate_stat> candidates;
};

// ModelOpt's AutoQuantSchemeConfig, field for field (the manifest's "scheme" object).
struct scheme_info {
  std::string name;
  double auto_quantize_bits = 0.0;  // the effective-bits budget actually searched with
  std::string method = "gradient";
  std::int64_t score_size = 128;
  std::string coverage_mode = "full";
  double coverage_fraction = 1.0;
  std::vector<std::string> quant_formats;
};

// One quantizable module of the model (the manifest's "layers" map), in module order.
struct layer_info {
  std::string name;
  bool quantized = true;
  std::string module_type = "QuantLinear";
};

// Summary of the search result (the manifest's "autoquant_state").
struct autoquant_state_info {
  std::vector<std::string> keys{"candidate_stats", "best", "constraints"};
  double effective_bits = 0.0;  // constraints.effective_bits reached by the selection
  double score = 0.0;           // summed score of the selection
  bool is_satisfied = true;
};

// Calibration data description; absent fields are left out of the files, as Python drops None.
struct dataset_info {
  std::optional<std::string> name;
  std::optional<std::string> size;
  std::optional<std::string> root;
  std::optional<std::string> captions_path;
  std::optional<std::int64_t> max_calib_samples;
  std::optional<std::int64_t> num_calib_samples;
  std::optional<std::int64_t> calib_seq_len;
  std::optional<std::int64_t> batch_size;
  std::optional<std::int64_t> num_calib_batches;
};

// aq extension: the recipe the search chose for a group (ModelOpt keeps this only in a .pt file).
struct chosen_recipe {
  std::string group;   // hparam name, as in group_sensitivity::name
  std::string format;  // one of that group's candidate display strings
};

// aq extension: one point of the budget -> total score trade-off curve.
struct pareto_point {
  double effective_bits = 0.0;
  double score = 0.0;
};

struct report_model {
  scheme_info scheme;
  std::optional<std::string> model_id;  // checkpoint path or hub id; "model": {} when absent
  std::vector<layer_info> layers;
  autoquant_state_info autoquant_state;
  std::vector<group_sensitivity> groups;
  std::optional<dataset_info> dataset;
  // aq extensions: written after every ModelOpt field, and only when present, so that a
  // report rebuilt from a ModelOpt manifest is byte-identical to it.
  std::optional<std::vector<chosen_recipe>> chosen_recipes;
  std::optional<std::vector<pareto_point>> pareto_front;
};

// Refuses what would make a report wrong or unreadable: NaN anywhere (Python would print NaN,
// which no strict JSON reader accepts), duplicate group or layer names (a JSON object cannot
// hold them twice), and chosen recipes that name an unknown group or format.
inline void validate_report_model(const report_model& model) {
  const std::string where = "report '" + model.scheme.name + "'";
  if (std::isnan(model.scheme.auto_quantize_bits)) throw error(where + ": scheme.auto_quantize_bits is NaN");
  if (std::isnan(model.scheme.coverage_fraction)) throw error(where + ": scheme.coverage_fraction is NaN");
  if (std::isnan(model.autoquant_state.effective_bits)) {
    throw error(where + ": autoquant_state.constraints.effective_bits is NaN");
  }
  if (std::isnan(model.autoquant_state.score)) throw error(where + ": autoquant_state.score is NaN");

  std::set<std::string> layer_names;
  for (const layer_info& layer : model.layers) {
    if (!layer_names.insert(layer.name).second) throw error(where + ": layer '" + layer.name + "' listed twice");
  }
  std::map<std::string, const group_sensitivity*> groups_by_name;
  for (const group_sensitivity& group : model.groups) {
    if (!groups_by_name.emplace(group.name, &group).second) {
      throw error(where + ": group '" + group.name + "' listed twice");
    }
    for (const candidate_stat& c : group.candidates) {
      if (std::isnan(c.score)) throw error(where + ": group '" + group.name + "' has a NaN score for " + c.format);
      if (std::isnan(c.cost)) throw error(where + ": group '" + group.name + "' has a NaN cost for " + c.format);
    }
  }
  if (model.chosen_recipes) {
    std::set<std::string> chosen;
    for (const chosen_recipe& pick : *model.chosen_recipes) {
      const auto found = groups_by_name.find(pick.group);
      if (found == groups_by_name.end()) throw error(where + ": chosen recipe for unknown group '" + pick.group + "'");
      if (!chosen.insert(pick.group).second) throw error(where + ": group '" + pick.group + "' chosen twice");
      bool known = false;
      for (const candidate_stat& c : found->second->candidates) known = known || c.format == pick.format;
      if (!known) {
        throw error(where + ": chosen recipe '" + pick.format + "' is not a candidate of group '" + pick.group + "'");
      }
    }
  }
  if (model.pareto_front) {
    for (const pareto_point& point : *model.pareto_front) {
      if (std::isnan(point.effective_bits) || std::isnan(point.score)) {
        throw error(where + ": pareto_front holds a NaN point");
      }
    }
  }
}

}  // namespace aq::io
