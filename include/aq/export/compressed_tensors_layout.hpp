// The compressed-tensors 0.20 layout (what llm-compressor saves and vLLM / transformers load):
// fp8 and int8-with-activations weights as codes ("float-quantized", "int-quantized"), weight-
// only int8 and int4 packed into int32 words ("pack-quantized"), NVFP4 as e2m1 pairs with e4m3
// block scales under an fp32 global scale ("nvfp4-pack-quantized"), other scales fp32, one
// config group per recipe targeting its exact module names. docs/export.md lists every field.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/export/checkpoint_writer.hpp"
#include "aq/export/export_plan.hpp"
#include "aq/export/weight_schemes.hpp"
#include "aq/report/json_writer.hpp"

namespace aq::hf_export {

inline constexpr std::string_view compressed_tensors_version = "0.20.1";

// The config group format of a planned module.
inline std::string_view compressed_tensors_format(const module_export& m) {
  return visit_scheme(m.scheme, [&]<class S>(S) { return S::ct_format(m.static_input); });
}

// What replaces `<module>.weight` in the compressed-tensors layout: codes (or packed words and
// the weight's shape), weight_scale and, with a static input, input_scale; every scale F32.
inline std::vector<tensor_spec> compressed_tensors_module_specs(const module_export& m) {
  return visit_scheme(m.scheme, [&]<class S>(S) {
    std::vector<tensor_spec> specs = S::ct_specs(m);
    if (m.static_input) specs.push_back(detail::spec(m, S::ct_input_scale_name, dtype_f32, {1}));
    return specs;
  });
}

// The tensors of compressed_tensors_module_specs with their data. The codes are the ones aq's
// fake quantizer rounds the weight to (the search scored, and aq-logits runs, exactly this
// model), not llm-compressor's w / scale, which lands on the other neighbour at some rounding
// ties; scales are fp32, so a loader that keeps them in fp32 (vLLM, transformers in fp32)
// reproduces aq's weights.
inline std::vector<output_tensor> compressed_tensors_module_tensors(const module_export& m,
                                                                    std::span<const float> weight) {
  payload_list payloads = visit_scheme(m.scheme, [&]<class S>(S) {
    payload_list out = S::ct_payloads(m, weight);
    if (m.static_input) out.push_back(payload_of(std::vector<float>{S::ct_input_scale(m.input_amax)}));
    return out;
  });
  return with_payloads(compressed_tensors_module_specs(m), std::move(payloads));
}

namespace detail {

// One QuantizationArgs as compressed-tensors serializes it; NVFP4 names its e4m3 scales.
inline void write_args(io::json_writer& json, const quantization_args& args) {
  json.begin_object().key("num_bits").integer(args.bits).key("type").string(args.is_float ? "float" : "int");
  json.key("symmetric").boolean(true).key("strategy").string(args.strategy).key("group_size");
  if (args.group > 0) {
    json.integer(args.group);
  } else {
    json.null();
  }
  json.key("dynamic");
  if (args.dynamic_local) {
    json.string("local");
  } else {
    json.boolean(false);
  }
  if (args.strategy == "tensor_group") json.key("scale_dtype").string("torch.float8_e4m3fn");
  json.end_object();
}

inline void write_group(io::json_writer& json, const export_plan& plan, std::string_view recipe) {
  const module_export* first = nullptr;
  json.begin_object();
  for (const module_export& m : plan.quantized) first = first == nullptr && m.recipe == recipe ? &m : first;
  json.key("format").string(compressed_tensors_format(*first));
  json.key("targets").begin_array();
  for (const module_export& m : plan.quantized) {
    if (m.recipe == recipe) json.string(m.name);
  }
  json.end_array().key("weights");
  visit_scheme(first->scheme, [&]<class S>(S) {
    write_args(json, S::ct_weights);
    json.key("input_activations");
    if (first->static_input) {
      write_args(json, S::ct_inputs);
    } else {
      json.null();
    }
  });
  json.key("output_activations").null().end_object();
}

inline std::vector<std::string> recipes_in_order(const export_plan& plan) {
  std::vector<std::string> recipes;
  for (const module_export& m : plan.quantized) {
    if (std::find(recipes.begin(), recipes.end(), m.recipe) == recipes.end()) recipes.push_back(m.recipe);
  }
  return recipes;
}

}  // namespace detail

// config.json's quantization_config: one config group per recipe (group_0, group_1, ... in the
// order the recipes first appear in the model), ignore = every unquantized Linear.
inline void write_compressed_tensors_quantization_config(io::json_writer& json, const export_plan& plan) {
  const std::vector<std::string> recipes = detail::recipes_in_order(plan);
  std::vector<std::string_view> formats;
  for (const module_export& m : plan.quantized) {
    if (std::find(formats.begin(), formats.end(), compressed_tensors_format(m)) == formats.end()) {
      formats.push_back(compressed_tensors_format(m));
    }
  }
  json.begin_object().key("quant_method").string("compressed-tensors");
  json.key("format").string(formats.empty()       ? std::string_view("dense")
                            : formats.size() == 1 ? formats.front()
                                                  : std::string_view("mixed-precision"));
  json.key("quantization_status").string("compressed").key("ignore").begin_array();
  for (const std::string& name : plan.unquantized_linear) json.string(name);
  json.end_array().key("config_groups").begin_object();
  for (std::size_t g = 0; g < recipes.size(); ++g) {
    json.key("group_" + std::to_string(g));
    detail::write_group(json, plan, recipes[g]);
  }
  json.end_object().key("kv_cache_scheme").null().key("global_compression_ratio").null();
  json.key("sparsity_config").begin_object().end_object();
  json.key("version").string(compressed_tensors_version).end_object();
}

}  // namespace aq::hf_export
