// The compressed-tensors 0.20 layout (what llm-compressor saves and vLLM / transformers load):
// fp8 and int8-with-activations weights as codes ("float-quantized", "int-quantized"), weight-
// only int8 and int4 packed into int32 words ("pack-quantized"), NVFP4 as e2m1 pairs with e4m3
// block scales under an fp32 global scale ("nvfp4-pack-quantized"), other scales fp32, one
// config group per recipe targeting its exact module names. docs/export.md lists every field.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/core/dtype.hpp"
#include "aq/core/error.hpp"
#include "aq/export/checkpoint_writer.hpp"
#include "aq/export/export_plan.hpp"
#include "aq/export/int4_packing.hpp"
#include "aq/export/weight_codes.hpp"
#include "aq/formats/e2m1.hpp"
#include "aq/formats/e4m3.hpp"
#include "aq/formats/int4.hpp"
#include "aq/formats/int8.hpp"
#include "aq/formats/rounding.hpp"
#include "aq/quant/scaling.hpp"
#include "aq/report/json_writer.hpp"

namespace aq::hf_export {

inline constexpr std::string_view compressed_tensors_version = "0.20.1";

// The config group format of a planned module.
inline std::string_view compressed_tensors_format(const module_export& m) {
  if (m.scheme == weight_scheme::fp8_tensor) return "float-quantized";
  if (m.scheme == weight_scheme::nvfp4_block16) return "nvfp4-pack-quantized";
  if (m.scheme == weight_scheme::int8_channel && m.static_input) return "int-quantized";
  return "pack-quantized";
}

namespace detail {

// The stored scale: the fp32 reciprocal of the forward scale (quant::scale_from_amax, bound /
// amax, what aq's fake quantizer multiplies by; 1 where that is 0: the slot quantizes to 0), so that
// code * stored scale is the fake-quantized value: exactly for e4m3, whose fake quantization
// multiplies by that reciprocal, within an ulp for integers, which divide by the forward scale.
inline float stored_scale(float forward) { return forward == 0.0f ? 1.0f : 1.0f / forward; }

// compressed-tensors' NVFP4 global scale, the reciprocal of ModelOpt's: 448 * 6 / amax (1 where
// that is not finite, as its generate_gparam falls back); block scales are divided by it.
inline float nvfp4_global_scale(float amax) {
  const float scale = formats::e4m3::max_bound * formats::e2m1::max_bound / amax;
  return amax > 0.0f && scale <= 0x1.fffffep127f ? scale : 1.0f;
}

// The integer codes F::quantize(w, bound / amax) of a [rows x cols] weight with one amax per row
// (group = cols) or per `group` consecutive columns of a row, and their stored scales.
template <class F>
std::pair<std::vector<std::int8_t>, std::vector<float>> fake_quantizer_int_codes(std::span<const float> weight,
                                                                               const module_export& m,
                                                                               std::int64_t group) {
  std::vector<float> forward, stored;
  for (const float amax : m.weight_amax) {
    forward.push_back(quant::scale_from_amax<F>(amax));
    stored.push_back(stored_scale(forward.back()));
  }
  std::vector<std::int8_t> codes(weight.size());
  std::int8_t* const out = codes.data();  // raw pointers: a byte store may alias the vectors' own
  const float* const in = weight.data();
  for (std::size_t s = 0; s < forward.size(); ++s) {
    const float scale = forward[s];
    const std::size_t begin = s * static_cast<std::size_t>(group);
    for (std::size_t i = begin; i < begin + static_cast<std::size_t>(group); ++i) {
      out[i] = scale == 0.0f ? 0 : static_cast<std::int8_t>(F::quantize(in[i], scale));
    }
  }
  return {std::move(codes), std::move(stored)};
}

// e4m3 codes of w * (448 / amax), saturating, as aq's fp8 fake quantizer encodes them.
inline std::vector<std::uint8_t> fake_quantizer_fp8_codes(std::span<const float> weight, float forward) {
  std::vector<std::uint8_t> codes(weight.size());
  std::uint8_t* const out = codes.data();
  const float* const in = weight.data();
  for (std::size_t i = 0; i < weight.size(); ++i) {
    out[i] = formats::e4m3::encode(forward == 0.0f ? 0.0f : formats::detail::mul_rn(in[i], forward));
  }
  return codes;
}

}  // namespace detail

// What replaces `<module>.weight` in the compressed-tensors layout: codes (or packed words and
// the weight's shape), weight_scale and, with a static input, input_scale; every scale F32.
inline std::vector<tensor_spec> compressed_tensors_module_specs(const module_export& m) {
  const std::string prefix = m.name + ".";
  std::vector<tensor_spec> specs;
  if (m.scheme == weight_scheme::nvfp4_block16) {
    specs.push_back({prefix + "weight_packed", dtype_u8, {m.rows, m.cols / 2}});
    specs.push_back({prefix + "weight_scale", dtype_f8_e4m3, {m.rows, m.cols / nvfp4_block_size}});
    specs.push_back({prefix + "weight_global_scale", dtype_f32, {1}});
    if (m.static_input) specs.push_back({prefix + "input_global_scale", dtype_f32, {1}});
    return specs;
  }
  if (m.scheme == weight_scheme::fp8_tensor) {
    specs.push_back({prefix + "weight", dtype_f8_e4m3, {m.rows, m.cols}});
    specs.push_back({prefix + "weight_scale", dtype_f32, {1}});
  } else {
    const bool int4 = m.scheme == weight_scheme::int4_block128;
    if (m.static_input) {
      specs.push_back({prefix + "weight", dtype_i8, {m.rows, m.cols}});
    } else {
      specs.push_back({prefix + "weight_packed", dtype_i32, {m.rows, m.cols / (int4 ? 8 : 4)}});
      specs.push_back({prefix + "weight_shape", dtype_i64, {2}});
    }
    specs.push_back({prefix + "weight_scale", dtype_f32, {m.rows, int4 ? m.cols / int4_group_size : 1}});
  }
  if (m.static_input) specs.push_back({prefix + "input_scale", dtype_f32, {1}});
  return specs;
}

// The tensors of compressed_tensors_module_specs with their data. The codes are the ones aq's
// fake quantizer rounds the weight to (the search scored, and aq-logits runs, exactly this
// model), not llm-compressor's w / scale, which lands on the other neighbour at some rounding
// ties; scales are fp32, so a loader that keeps them in fp32 (vLLM, transformers in fp32)
// reproduces aq's weights.
inline std::vector<output_tensor> compressed_tensors_module_tensors(const module_export& m,
                                                                    std::span<const float> weight) {
  std::vector<tensor_spec> specs = compressed_tensors_module_specs(m);
  std::vector<std::vector<std::byte>> payloads;
  if (m.scheme == weight_scheme::nvfp4_block16) {
    // ModelOpt's codes and block scales (those of aq's fake quantization, see the modelopt layout);
    // code * e4m3 scale / global scale dequantizes them.
    const nvfp4_weight q = nvfp4_codes(weight, m.rows, m.cols, m.weight_amax.front());
    payloads.push_back(payload_of(q.packed));
    payloads.push_back(payload_of(q.block_scales));
    payloads.push_back(payload_of(std::vector<float>{detail::nvfp4_global_scale(m.weight_amax.front())}));
    if (m.static_input) payloads.push_back(payload_of(std::vector<float>{detail::nvfp4_global_scale(m.input_amax)}));
    return with_payloads(std::move(specs), std::move(payloads));
  }
  if (m.scheme == weight_scheme::fp8_tensor) {
    const float forward = quant::scale_from_amax<formats::e4m3>(m.weight_amax.front());
    payloads.push_back(payload_of(detail::fake_quantizer_fp8_codes(weight, forward)));
    payloads.push_back(payload_of(std::vector<float>{detail::stored_scale(forward)}));
  } else {
    const bool int4 = m.scheme == weight_scheme::int4_block128;
    const std::int64_t group = int4 ? int4_group_size : m.cols;
    const auto [codes, scales] = int4 ? detail::fake_quantizer_int_codes<formats::int4>(weight, m, group)
                                      : detail::fake_quantizer_int_codes<formats::int8>(weight, m, group);
    if (m.static_input) {
      payloads.push_back(payload_of(codes));
    } else {
      payloads.push_back(payload_of(int4 ? pack_input_words<4>(codes, m.rows, m.cols)
                                              : pack_input_words<8>(codes, m.rows, m.cols)));
      payloads.push_back(payload_of(std::vector<std::int64_t>{m.rows, m.cols}));
    }
    payloads.push_back(payload_of(scales));
  }
  if (m.static_input) {
    const float forward = m.scheme == weight_scheme::fp8_tensor ? quant::scale_from_amax<formats::e4m3>(m.input_amax)
                                                                 : quant::scale_from_amax<formats::int8>(m.input_amax);
    payloads.push_back(payload_of(std::vector<float>{detail::stored_scale(forward)}));
  }
  return with_payloads(std::move(specs), std::move(payloads));
}

namespace detail {

// One QuantizationArgs as compressed-tensors serializes it. `dynamic` is false or "local" (NVFP4
// inputs: block scales from the data under the static global scale); NVFP4 names its e4m3 scales.
inline void write_args(io::json_writer& json, int bits, bool is_float, std::string_view strategy, std::int64_t group,
                       bool dynamic_local = false) {
  json.begin_object().key("num_bits").integer(bits).key("type").string(is_float ? "float" : "int");
  json.key("symmetric").boolean(true).key("strategy").string(strategy).key("group_size");
  if (group > 0) {
    json.integer(group);
  } else {
    json.null();
  }
  json.key("dynamic");
  if (dynamic_local) {
    json.string("local");
  } else {
    json.boolean(false);
  }
  if (strategy == "tensor_group") json.key("scale_dtype").string("torch.float8_e4m3fn");
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
  if (first->scheme == weight_scheme::fp8_tensor) write_args(json, 8, true, "tensor", 0);
  if (first->scheme == weight_scheme::int8_channel) write_args(json, 8, false, "channel", 0);
  if (first->scheme == weight_scheme::int4_block128) write_args(json, 4, false, "group", int4_group_size);
  if (first->scheme == weight_scheme::nvfp4_block16) write_args(json, 4, true, "tensor_group", nvfp4_block_size);
  json.key("input_activations");
  if (first->scheme == weight_scheme::nvfp4_block16 && first->static_input) {
    write_args(json, 4, true, "tensor_group", nvfp4_block_size, true);
  } else if (first->static_input) {
    write_args(json, 8, first->scheme == weight_scheme::fp8_tensor, "tensor", 0);
  } else {
    json.null();
  }
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
