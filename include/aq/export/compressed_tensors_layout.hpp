// The compressed-tensors 0.20 layout (what llm-compressor saves and vLLM / transformers load):
// fp8 and int8-with-activations weights as codes ("float-quantized", "int-quantized"), weight-
// only int8 and int4 packed into int32 words ("pack-quantized"), scales in the weight's dtype,
// one config group per recipe targeting its exact module names. docs/export.md lists every field.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/bf16.hpp"
#include "aq/core/dtype.hpp"
#include "aq/core/error.hpp"
#include "aq/export/checkpoint_writer.hpp"
#include "aq/export/export_plan.hpp"
#include "aq/export/int4_packing.hpp"
#include "aq/export/weight_codes.hpp"
#include "aq/formats/e4m3.hpp"
#include "aq/formats/int4.hpp"
#include "aq/formats/int8.hpp"
#include "aq/report/json_writer.hpp"

namespace aq::hf_export {

inline constexpr std::string_view compressed_tensors_version = "0.20.1";

// The config group format of a planned module.
inline std::string_view compressed_tensors_format(const module_export& m) {
  if (m.scheme == weight_scheme::fp8_tensor) return "float-quantized";
  if (m.scheme == weight_scheme::int8_channel && m.static_input) return "int-quantized";
  return "pack-quantized";
}

namespace detail {

// A scale stored in the weight's dtype; the value the codes are computed with is the stored one,
// so that code * stored scale is the dequantized weight.
inline float stored_scale(float scale, division_rounding storage) { return round_quotient(scale, storage); }

inline dtype storage_dtype(division_rounding storage) {
  return storage == division_rounding::bf16 ? dtype_bf16 : storage == division_rounding::f16 ? dtype_f16 : dtype_f32;
}

inline output_tensor scale_tensor(std::string name, std::vector<std::int64_t> shape, std::span<const float> values,
                                  division_rounding storage) {
  std::vector<std::byte> bytes;
  visit_dtype(storage_dtype(storage), [&](auto tag) {
    using Stored = decltype(tag);
    std::vector<Stored> stored;
    for (const float v : values) stored.push_back(convert_element<Stored>(v));
    bytes = bytes_of(std::span<const Stored>(stored));
  });
  return {std::move(name), storage_dtype(storage), std::move(shape), std::move(bytes)};
}

inline std::vector<float> stored_scales(std::span<const float> amax, float bound, division_rounding storage) {
  std::vector<float> scales;
  for (const float a : amax) scales.push_back(stored_scale(scale_from_amax(a, bound), storage));
  return scales;
}

}  // namespace detail

// The tensors replacing `<module>.weight`. `storage` is the weight's dtype: scales are stored in
// it (bf16 for a bf16 model, as llm-compressor stores them), and the codes are computed with the
// stored scale, w / scale in fp32, so that code * stored scale is what every loader dequantizes.
// (llm-compressor divides in bf16; fp32 keeps the codes nearest to w / scale.)
inline std::vector<output_tensor> compressed_tensors_module_tensors(const module_export& m,
                                                                    std::span<const float> weight,
                                                                    division_rounding storage) {
  if (m.scheme == weight_scheme::nvfp4_block16) throw error(m.name + ": nvfp4 has no compressed-tensors export");
  std::vector<output_tensor> out;
  const std::string prefix = m.name + ".";
  const std::vector<std::int64_t> shape{m.rows, m.cols};
  if (m.scheme == weight_scheme::fp8_tensor) {
    const float scale = detail::stored_scale(scale_from_amax(m.weight_amax.front(), formats::e4m3::max_bound), storage);
    const std::vector<std::uint8_t> codes = fp8_codes(weight, scale, division_rounding::f32);
    out.push_back({prefix + "weight", dtype_f8_e4m3, shape, bytes_of(std::span<const std::uint8_t>(codes))});
    out.push_back(detail::scale_tensor(prefix + "weight_scale", {1}, std::span<const float>(&scale, 1), storage));
  } else {
    const bool int4 = m.scheme == weight_scheme::int4_block128;
    const float bound = int4 ? formats::int4::max_bound : formats::int8::max_bound;
    const std::vector<float> scales = detail::stored_scales(m.weight_amax, bound, storage);
    const std::int64_t group = int4 ? int4_group_size : m.cols;
    const std::vector<std::int8_t> codes =
        integer_codes(weight, m.rows, m.cols, scales, group, int4 ? -8 : -128, int4 ? 7 : 127, division_rounding::f32);
    if (m.static_input) {
      out.push_back({prefix + "weight", dtype_i8, shape, bytes_of(std::span<const std::int8_t>(codes))});
    } else {
      const std::vector<std::int32_t> packed =
          int4 ? pack_input_words<4>(codes, m.rows, m.cols) : pack_input_words<8>(codes, m.rows, m.cols);
      const std::int64_t words = m.cols / (int4 ? 8 : 4);
      out.push_back(
          {prefix + "weight_packed", dtype_i32, {m.rows, words}, bytes_of(std::span<const std::int32_t>(packed))});
      out.push_back({prefix + "weight_shape", dtype_i64, {2}, bytes_of(std::span<const std::int64_t>(shape))});
    }
    out.push_back(detail::scale_tensor(prefix + "weight_scale", {m.rows, m.cols / group}, scales, storage));
  }
  if (m.static_input) {
    const float bound = m.scheme == weight_scheme::fp8_tensor ? formats::e4m3::max_bound : formats::int8::max_bound;
    const float scale = detail::stored_scale(scale_from_amax(m.input_amax, bound), storage);
    out.push_back(detail::scale_tensor(prefix + "input_scale", {1}, std::span<const float>(&scale, 1), storage));
  }
  return out;
}

namespace detail {

inline void write_args(io::json_writer& json, int bits, bool is_float, std::string_view strategy, std::int64_t group) {
  json.begin_object().key("num_bits").integer(bits).key("type").string(is_float ? "float" : "int");
  json.key("symmetric").boolean(true).key("strategy").string(strategy).key("group_size");
  if (group > 0) {
    json.integer(group);
  } else {
    json.null();
  }
  json.key("dynamic").boolean(false).end_object();
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
  json.key("input_activations");
  if (first->static_input) {
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
