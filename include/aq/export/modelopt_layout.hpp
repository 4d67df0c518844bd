// The ModelOpt 0.39 export_hf_checkpoint layout (modelopt/torch/export/unified_export_hf.py and
// quant_utils.py): per quantized Linear `weight` as codes, `weight_scale` (and `input_scale` for
// static activations) in fp32; hf_quant_config.json as process_layer_quant_config builds it;
// config.json's quantization_config as convert_hf_quant_config_format converts it. docs/export.md
// lists every field.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aq/export/checkpoint_writer.hpp"
#include "aq/export/export_plan.hpp"
#include "aq/export/weight_schemes.hpp"
#include "aq/model/qwen3_vl/schema.hpp"
#include "aq/report/json_writer.hpp"

namespace aq::hf_export {

inline constexpr std::string_view modelopt_version = "0.39.0";

// ModelOpt's per-layer quant_algo label of a planned module.
inline std::string_view modelopt_quant_algo(const module_export& m) {
  return visit_scheme(m.scheme, [&]<class S>(S) { return S::modelopt_quant_algo(m.static_input); });
}

// What replaces `<module>.weight` in ModelOpt's layout: weight codes, weight_scale(s) and, with
// a static input, input_scale (names, dtypes and shapes as export_hf_checkpoint writes them).
inline std::vector<tensor_spec> modelopt_module_specs(const module_export& m) {
  std::vector<tensor_spec> specs = visit_scheme(m.scheme, [&]<class S>(S) { return S::modelopt_specs(m); });
  if (m.static_input) specs.push_back({m.name + ".input_scale", dtype_f32, {}});
  return specs;
}

// The tensors of modelopt_module_specs with their data. `weight` holds the checkpoint's values as
// float; `rounding` is the weight dtype's (torch divides a bf16 weight by the 0-d fp32 fp8 scale
// in bf16: both operands in bf16, the quotient rounded to bf16).
inline std::vector<output_tensor> modelopt_module_tensors(const module_export& m, std::span<const float> weight,
                                                          division_rounding rounding) {
  payload_list payloads = visit_scheme(m.scheme, [&]<class S>(S) {
    payload_list out = S::modelopt_payloads(m, weight, rounding);
    if (m.static_input) out.push_back(detail::f32_payload(scale_from_amax(m.input_amax, S::modelopt_input_bound)));
    return out;
  });
  return with_payloads(modelopt_module_specs(m), std::move(payloads));
}

namespace detail {

// The per-layer config: quant_algo, then the scheme's own fields (group size and the like).
inline void write_layer_config(io::json_writer& json, const module_export& m) {
  json.key("quant_algo").string(modelopt_quant_algo(m));
  visit_scheme(m.scheme, [&]<class S>(S) { S::write_modelopt_fields(json); });
}

// _prefix_wildcard_summarize_exclude_modules: the unquantized layers as few prefix wildcards
// ("a.b*", or "a.b" + "a.b.*") as match no quantized layer.
inline std::set<std::string> summarize_excluded(const std::vector<std::string>& unquantized,
                                                const std::vector<std::string>& quantized) {
  std::set<std::string> negative;
  for (const std::string& layer : quantized) {
    negative.insert(layer);
    for (std::size_t i = 0; i <= layer.size(); ++i) negative.insert(layer.substr(0, i) + "*");
  }
  std::set<std::string> summary;
  for (const std::string& layer : unquantized) {
    std::vector<std::vector<std::string>> options;
    for (std::size_t i = 0; i < layer.size(); ++i) {
      if (layer[i] != '.') continue;
      options.push_back({layer.substr(0, i) + "*"});
      options.push_back({layer.substr(0, i), layer.substr(0, i) + ".*"});
    }
    options.push_back({layer});
    std::vector<std::string> chosen;
    for (const std::vector<std::string>& wildcards : options) {
      const auto blocked = [&](const std::string& w) { return negative.count(w) > 0; };
      const auto covered = [&](const std::string& w) { return summary.count(w) > 0; };
      if (std::any_of(wildcards.begin(), wildcards.end(), blocked)) continue;
      if (std::all_of(wildcards.begin(), wildcards.end(), covered)) {
        chosen.clear();
        break;
      }
      chosen = wildcards;
      break;
    }
    summary.insert(chosen.begin(), chosen.end());
  }
  return summary;
}

// The distinct per-layer configs (ModelOpt compares str(layer_config)).
inline std::set<std::string> distinct_layer_configs(const export_plan& plan) {
  std::set<std::string> distinct;
  for (const module_export& m : plan.quantized) {
    io::json_writer json(0);
    json.begin_object();
    write_layer_config(json, m);
    json.end_object();
    distinct.insert(json.str());
  }
  return distinct;
}

inline std::vector<std::string> quantized_names(const export_plan& plan) {
  std::vector<std::string> names;
  for (const module_export& m : plan.quantized) names.push_back(m.name);
  return names;
}

inline void write_producer(io::json_writer& json) {
  json.key("producer").begin_object().key("name").string("modelopt").key("version").string(modelopt_version);
  json.end_object();
}

inline void write_quantized_layers(io::json_writer& json, const export_plan& plan) {
  json.key("quantized_layers").begin_object();
  for (const module_export& m : plan.quantized) {
    json.key(m.name).begin_object();
    write_layer_config(json, m);
    json.end_object();
  }
  json.end_object();
}

template <class Strings>
void write_string_list(io::json_writer& json, const Strings& items) {
  json.begin_array();
  for (const std::string& item : items) json.string(item);
  json.end_array();
}

}  // namespace detail

namespace detail {

// exclude_modules (and config.json's ignore): ModelOpt appends "lm_head" whenever any layer is
// quantized (_export_hf_checkpoint), to the summarized list of a single algorithm or as the only
// entry of a mixed export.
inline std::vector<std::string> exclude_modules(const export_plan& plan, std::size_t distinct_configs) {
  std::vector<std::string> out;
  if (distinct_configs == 1) {
    const std::set<std::string> summary = summarize_excluded(plan.unquantized, quantized_names(plan));
    out.assign(summary.begin(), summary.end());
  }
  if (!plan.quantized.empty()) out.emplace_back(qwen3_vl::schema::lm_head_name);
  return out;
}

// config.json's config_groups for the algorithms convert_hf_quant_config_format describes: one
// group of every Linear, the inputs quantized as the weights.
inline void write_config_group(io::json_writer& json, const quantization_args& args) {
  json.key("config_groups").begin_object().key("group_0").begin_object();
  for (const char* role : {"input_activations", "weights"}) {
    json.key(role).begin_object().key("dynamic").boolean(false).key("num_bits").integer(args.bits);
    json.key("type").string(args.is_float ? "float" : "int");
    if (args.group > 0) json.key("group_size").integer(args.group);
    json.end_object();
  }
  json.key("targets").begin_array().string("Linear").end_array();
  json.end_object().end_object();
}

}  // namespace detail

// hf_quant_config.json (json.dump indent 4, no trailing newline): one quant_algo when every
// quantized layer has the same config (then exclude_modules summarizes the others), else
// MIXED_PRECISION with quantized_layers; kv_cache_quant_algo null (no KV-cache quantization).
inline std::string modelopt_hf_quant_config(const export_plan& plan) {
  const std::set<std::string> distinct = detail::distinct_layer_configs(plan);
  io::json_writer json(4);
  json.begin_object();
  detail::write_producer(json);
  json.key("quantization").begin_object();
  if (distinct.size() > 1) {
    json.key("quant_algo").string("MIXED_PRECISION").key("kv_cache_quant_algo").null();
    detail::write_quantized_layers(json, plan);
    json.key("exclude_modules");
    detail::write_string_list(json, detail::exclude_modules(plan, distinct.size()));
  } else if (distinct.size() == 1) {
    const module_export& m = plan.quantized.back();
    json.key("quant_algo").string(modelopt_quant_algo(m));
    json.key("kv_cache_quant_algo").null();
    visit_scheme(m.scheme, [&]<class S>(S) { S::write_modelopt_fields(json); });
    json.key("exclude_modules");
    detail::write_string_list(json, detail::exclude_modules(plan, distinct.size()));
  } else {
    json.key("quant_algo").null().key("kv_cache_quant_algo").null();
    json.key("quantized_layers").begin_object().end_object();
  }
  json.end_object().end_object();
  return json.str();
}

// config.json's quantization_config as convert_hf_quant_config_format writes it: a mixed export's
// per-layer algorithms stay in hf_quant_config.json only (docs/export.md: serving a mix).
inline void write_modelopt_quantization_config(io::json_writer& json, const export_plan& plan) {
  const std::set<std::string> distinct = detail::distinct_layer_configs(plan);
  const bool mixed = distinct.size() > 1;
  json.begin_object();
  if (distinct.size() == 1) {
    visit_scheme(plan.quantized.back().scheme, [&]<class S>(S) {
      if constexpr (S::modelopt_config_group) detail::write_config_group(json, S::ct_weights);
    });
  }
  json.key("ignore");
  detail::write_string_list(json, detail::exclude_modules(plan, distinct.size()));
  if (mixed) {
    json.key("quant_algo").string("MIXED_PRECISION");
  } else if (distinct.size() == 1) {
    json.key("quant_algo").string(modelopt_quant_algo(plan.quantized.back()));
  }
  detail::write_producer(json);
  json.key("quant_method").string("modelopt");
  json.end_object();
}

}  // namespace aq::hf_export
