// The storage schemes of exported weights, one struct each: everything that tells them apart for
// the plan (amax count, shape refusals, fused amax) and for both layouts (tensors, payloads,
// config fields). The plan and the layouts reach a scheme only through visit_scheme, so a new
// scheme is one struct here, its case there and its recipes in scheme_of (checkpoint_layout.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/export/checkpoint_layout.hpp"
#include "aq/export/checkpoint_writer.hpp"
#include "aq/export/int4_packing.hpp"
#include "aq/export/module_export.hpp"
#include "aq/export/weight_codes.hpp"
#include "aq/formats/e2m1.hpp"
#include "aq/formats/e4m3.hpp"
#include "aq/formats/int4.hpp"
#include "aq/formats/int8.hpp"
#include "aq/quant/scaling.hpp"
#include "aq/report/json_writer.hpp"

namespace aq::hf_export {

using payload_list = std::vector<std::vector<std::byte>>;

// compressed-tensors' QuantizationArgs of one role; ModelOpt's converted config.json spells the
// same facts for the two algorithms it describes.
struct quantization_args {
  int bits = 8;
  bool is_float = false;
  std::string_view strategy = "tensor";
  std::int64_t group = 0;      // group_size; null when 0
  bool dynamic_local = false;  // NVFP4 inputs: block scales from the data under a static global scale
};

// What ModelOpt's preprocess_linear_fusion makes the modules of one fused group (q/k/v, gate/up)
// share: the max of their input amax, and of their weight amax where that is per tensor.
enum class fused_amax { none, input, input_and_weight };

namespace detail {

inline std::vector<std::byte> f32_payload(float value) { return bytes_of(std::span<const float>(&value, 1)); }

// `<module>.<tensor>` of a planned module.
inline tensor_spec spec(const module_export& m, std::string_view tensor, dtype type, std::vector<std::int64_t> shape) {
  return {m.name + "." + std::string(tensor), type, std::move(shape)};
}

// compressed-tensors' integer weights: codes as they are next to a static input ("int-quantized"),
// else packed along the input dim, 32 / Bits codes per int32 word, with the weight's shape.
template <int Bits>
std::vector<tensor_spec> ct_int_specs(const module_export& m, std::int64_t scales_per_row) {
  std::vector<tensor_spec> specs;
  if (m.static_input) {
    specs.push_back(spec(m, "weight", dtype_i8, {m.rows, m.cols}));
  } else {
    specs.push_back(spec(m, "weight_packed", dtype_i32, {m.rows, m.cols / (32 / Bits)}));
    specs.push_back(spec(m, "weight_shape", dtype_i64, {2}));
  }
  specs.push_back(spec(m, "weight_scale", dtype_f32, {m.rows, scales_per_row}));
  return specs;
}

template <class F, int Bits>
payload_list ct_int_payloads(const module_export& m, std::span<const float> weight, std::int64_t group) {
  const auto [codes, scales] = fake_quantizer_int_codes<F>(weight, m.weight_amax, group);
  payload_list payloads;
  if (m.static_input) {
    payloads.push_back(payload_of(codes));
  } else {
    payloads.push_back(payload_of(pack_input_words<Bits>(codes, m.rows, m.cols)));
    payloads.push_back(payload_of(std::vector<std::int64_t>{m.rows, m.cols}));
  }
  payloads.push_back(payload_of(scales));
  return payloads;
}

}  // namespace detail

// fp8_e4m3: e4m3 weight, per-tensor scale, static per-tensor e4m3 input.
struct fp8_tensor_scheme {
  static constexpr weight_scheme id = weight_scheme::fp8_tensor;
  // ModelOpt 0.39 skips fp8 groups (unified_export_hf.py): each keeps its own scales, and serving
  // stacks take the max when they fuse them.
  static constexpr fused_amax fused = fused_amax::none;
  static std::size_t amax_count(std::int64_t, std::int64_t) { return 1; }
  static void check_shape(const module_export&, checkpoint_layout) {}

  static std::string_view modelopt_quant_algo(bool) { return "FP8"; }
  static void write_modelopt_fields(io::json_writer&) {}
  static constexpr bool modelopt_config_group = true;  // convert_hf_quant_config_format describes it
  static constexpr float modelopt_input_bound = formats::e4m3::max_bound;
  static std::vector<tensor_spec> modelopt_specs(const module_export& m) {
    return {detail::spec(m, "weight", dtype_f8_e4m3, {m.rows, m.cols}),
            detail::spec(m, "weight_scale", dtype_f32, {})};
  }
  static payload_list modelopt_payloads(const module_export& m, std::span<const float> weight,
                                        division_rounding rounding) {
    const float scale = scale_from_amax(m.weight_amax.front(), formats::e4m3::max_bound);
    // torch casts the 0-d fp32 scale (a GPU tensor in ModelOpt's export) to the weight's dtype
    // before dividing, so a bf16 weight is divided by bf16(scale); the stored scale stays fp32.
    return {payload_of(fp8_codes(weight, round_quotient(scale, rounding), rounding)), detail::f32_payload(scale)};
  }

  static std::string_view ct_format(bool) { return "float-quantized"; }
  static constexpr quantization_args ct_weights{8, true, "tensor"};
  static constexpr quantization_args ct_inputs{8, true, "tensor"};
  static constexpr std::string_view ct_input_scale_name = "input_scale";
  static float ct_input_scale(float amax) { return stored_scale(quant::scale_from_amax<formats::e4m3>(amax)); }
  static std::vector<tensor_spec> ct_specs(const module_export& m) {
    return {detail::spec(m, "weight", dtype_f8_e4m3, {m.rows, m.cols}),
            detail::spec(m, "weight_scale", dtype_f32, {1})};
  }
  static payload_list ct_payloads(const module_export& m, std::span<const float> weight) {
    const float forward = quant::scale_from_amax<formats::e4m3>(m.weight_amax.front());
    return {payload_of(fake_quantizer_fp8_codes(weight, forward)),
            payload_of(std::vector<float>{stored_scale(forward)})};
  }
};

// int8_w8a8 (static per-tensor int8 input) and w8a16 (weight only): a scale per output channel.
struct int8_channel_scheme {
  static constexpr weight_scheme id = weight_scheme::int8_channel;
  static constexpr fused_amax fused = fused_amax::input;
  static std::size_t amax_count(std::int64_t rows, std::int64_t) { return static_cast<std::size_t>(rows); }
  static void check_shape(const module_export& m, checkpoint_layout layout) {
    if (layout == checkpoint_layout::compressed_tensors && !m.static_input && m.cols % 4 != 0) {
      throw error(m.name +
                  ": recipe 'w8a16' in the compressed-tensors layout packs 4 codes per int32 word; its input dim " +
                  std::to_string(m.cols) + " is not a multiple of 4");
    }
  }

  static std::string_view modelopt_quant_algo(bool static_input) {
    return static_input ? "W8A8_SQ_PER_CHANNEL" : "W8A16";
  }
  static void write_modelopt_fields(io::json_writer&) {}
  static constexpr bool modelopt_config_group = false;
  static constexpr float modelopt_input_bound = formats::int8::max_bound;
  static std::vector<tensor_spec> modelopt_specs(const module_export& m) {
    return {detail::spec(m, "weight", dtype_i8, {m.rows, m.cols}),
            detail::spec(m, "weight_scale", dtype_f32, {m.rows})};
  }
  static payload_list modelopt_payloads(const module_export& m, std::span<const float> weight, division_rounding) {
    const std::vector<float> scales = scales_from_amax(m.weight_amax, formats::int8::max_bound);
    return {payload_of(integer_codes(weight, m.rows, m.cols, scales, m.cols, -128, 127, division_rounding::f32)),
            payload_of(scales)};
  }

  static std::string_view ct_format(bool static_input) { return static_input ? "int-quantized" : "pack-quantized"; }
  static constexpr quantization_args ct_weights{8, false, "channel"};
  static constexpr quantization_args ct_inputs{8, false, "tensor"};
  static constexpr std::string_view ct_input_scale_name = "input_scale";
  static float ct_input_scale(float amax) { return stored_scale(quant::scale_from_amax<formats::int8>(amax)); }
  static std::vector<tensor_spec> ct_specs(const module_export& m) { return detail::ct_int_specs<8>(m, 1); }
  static payload_list ct_payloads(const module_export& m, std::span<const float> weight) {
    return detail::ct_int_payloads<formats::int8, 8>(m, weight, m.cols);
  }
};

// w4a16: int4 weight in blocks of 128 input columns, weight only.
struct int4_block128_scheme {
  static constexpr weight_scheme id = weight_scheme::int4_block128;
  static constexpr std::int64_t group_size = 128;
  static constexpr fused_amax fused = fused_amax::input;
  static std::size_t amax_count(std::int64_t rows, std::int64_t cols) {
    return static_cast<std::size_t>(rows * (cols / group_size));
  }
  static void check_shape(const module_export& m, checkpoint_layout layout) {
    if (m.cols % group_size != 0) {
      throw error(m.name + ": recipe 'w4a16' needs an input dim that is a multiple of 128, it has " +
                  std::to_string(m.cols));
    }
    if (layout == checkpoint_layout::modelopt && m.rows % 2 != 0) {
      throw error(m.name + ": recipe 'w4a16' in the modelopt layout packs two output rows per byte; it has " +
                  std::to_string(m.rows) + " rows");
    }
  }

  static std::string_view modelopt_quant_algo(bool) { return "W4A16_AWQ"; }
  static void write_modelopt_fields(io::json_writer& json) {
    json.key("group_size").integer(group_size).key("has_zero_point").boolean(false);
    json.key("pre_quant_scale").boolean(true);
  }
  static constexpr bool modelopt_config_group = false;
  static constexpr float modelopt_input_bound = formats::int8::max_bound;
  static std::vector<tensor_spec> modelopt_specs(const module_export& m) {
    return {detail::spec(m, "weight", dtype_u8, {m.rows / 2, m.cols}),
            detail::spec(m, "weight_scale", dtype_f32, {m.rows, m.cols / group_size})};
  }
  static payload_list modelopt_payloads(const module_export& m, std::span<const float> weight, division_rounding) {
    const std::vector<float> scales = scales_from_amax(m.weight_amax, formats::int4::max_bound);
    const std::vector<std::int8_t> codes =
        integer_codes(weight, m.rows, m.cols, scales, group_size, -8, 7, division_rounding::f32);
    return {payload_of(pack_int4_output_pairs(codes, m.rows, m.cols)), payload_of(scales)};
  }

  static std::string_view ct_format(bool) { return "pack-quantized"; }
  static constexpr quantization_args ct_weights{4, false, "group", group_size};
  static constexpr quantization_args ct_inputs{8, false, "tensor"};
  static constexpr std::string_view ct_input_scale_name = "input_scale";
  static float ct_input_scale(float amax) { return stored_scale(quant::scale_from_amax<formats::int8>(amax)); }
  static std::vector<tensor_spec> ct_specs(const module_export& m) {
    return detail::ct_int_specs<4>(m, m.cols / group_size);
  }
  static payload_list ct_payloads(const module_export& m, std::span<const float> weight) {
    return detail::ct_int_payloads<formats::int4, 4>(m, weight, group_size);
  }
};

// nvfp4: e2m1 weight, e4m3 scales per 16 inputs, fp32 global scale; e4m3-scaled e2m1 input. Both
// layouts store ModelOpt's codes and block scales (those of aq's fake quantization).
struct nvfp4_block16_scheme {
  static constexpr weight_scheme id = weight_scheme::nvfp4_block16;
  static constexpr std::int64_t block_size = 16;
  static constexpr fused_amax fused = fused_amax::input_and_weight;
  static std::size_t amax_count(std::int64_t, std::int64_t) { return 1; }
  static void check_shape(const module_export& m, checkpoint_layout) {
    if (m.cols % block_size != 0) {
      throw error(m.name + ": recipe 'nvfp4' needs an input dim that is a multiple of 16, it has " +
                  std::to_string(m.cols));
    }
  }

  static std::string_view modelopt_quant_algo(bool) { return "NVFP4"; }
  static void write_modelopt_fields(io::json_writer& json) { json.key("group_size").integer(block_size); }
  static constexpr bool modelopt_config_group = true;  // convert_hf_quant_config_format describes it
  // The input amax is divided by 6 * 448: ModelOpt's global scale.
  static constexpr float modelopt_input_bound = formats::e2m1::max_bound * formats::e4m3::max_bound;
  static std::vector<tensor_spec> modelopt_specs(const module_export& m) {
    return {detail::spec(m, "weight", dtype_u8, {m.rows, m.cols / 2}),
            detail::spec(m, "weight_scale", dtype_f8_e4m3, {m.rows, m.cols / block_size}),
            detail::spec(m, "weight_scale_2", dtype_f32, {})};
  }
  static payload_list modelopt_payloads(const module_export& m, std::span<const float> weight, division_rounding) {
    const nvfp4_weight q = nvfp4_codes(weight, m.rows, m.cols, m.weight_amax.front());
    return {payload_of(q.packed), payload_of(q.block_scales), detail::f32_payload(q.global_scale)};
  }

  static std::string_view ct_format(bool) { return "nvfp4-pack-quantized"; }
  static constexpr quantization_args ct_weights{4, true, "tensor_group", block_size};
  static constexpr quantization_args ct_inputs{4, true, "tensor_group", block_size, true};
  static constexpr std::string_view ct_input_scale_name = "input_global_scale";
  // compressed-tensors' global scale, the reciprocal of ModelOpt's: 448 * 6 / amax (1 where that
  // is not finite, as its generate_gparam falls back); block scales are divided by it.
  static float ct_global_scale(float amax) {
    const float scale = formats::e4m3::max_bound * formats::e2m1::max_bound / amax;
    return amax > 0.0f && scale <= 0x1.fffffep127f ? scale : 1.0f;
  }
  static float ct_input_scale(float amax) { return ct_global_scale(amax); }
  static std::vector<tensor_spec> ct_specs(const module_export& m) {
    return {detail::spec(m, "weight_packed", dtype_u8, {m.rows, m.cols / 2}),
            detail::spec(m, "weight_scale", dtype_f8_e4m3, {m.rows, m.cols / block_size}),
            detail::spec(m, "weight_global_scale", dtype_f32, {1})};
  }
  // code * e4m3 scale / global scale dequantizes them.
  static payload_list ct_payloads(const module_export& m, std::span<const float> weight) {
    const nvfp4_weight q = nvfp4_codes(weight, m.rows, m.cols, m.weight_amax.front());
    return {payload_of(q.packed), payload_of(q.block_scales),
            payload_of(std::vector<float>{ct_global_scale(m.weight_amax.front())})};
  }
};

// Calls fn(S{}) with the struct whose id is `scheme`: the one place the enum is switched on.
template <class Fn>
decltype(auto) visit_scheme(weight_scheme scheme, Fn&& fn) {
  switch (scheme) {
    case fp8_tensor_scheme::id: return fn(fp8_tensor_scheme{});
    case int8_channel_scheme::id: return fn(int8_channel_scheme{});
    case int4_block128_scheme::id: return fn(int4_block128_scheme{});
    case nvfp4_block16_scheme::id: return fn(nvfp4_block16_scheme{});
  }
  throw error("export: weight scheme " + std::to_string(static_cast<int>(scheme)) + " is unknown");
}

}  // namespace aq::hf_export
